"""What a reader hands to ingest: rows for a table, and the records it could not parse.

Every reader returns ``list[Part]``. Ingest conforms ``data`` to the target table's schema,
quarantines records that fail validation (reported with ``row_numbers``) and the reader's
``rejects``, and logs rows read = accepted + quarantined for each part.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class Reject:
    """A source record the reader could not turn into a row."""

    row_number: int  # 1-based record number in the file (a line for text formats)
    reason: str  # one sentence, e.g. "has 5 fields, expected 21"
    record_text: str | None = None  # the raw record, to repair and reload
    field: str | None = None
    value: str | None = None


@dataclass
class Part:
    """Rows for one target table, with columns named as that table's (types not yet cast)."""

    table: str
    data: pa.Table
    row_numbers: np.ndarray | None = None  # 1-based source record number per row; None: 1..n
    rejects: list[Reject] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return self.data.num_rows + len(self.rejects)

    def source_row_numbers(self) -> np.ndarray:
        if self.row_numbers is None:
            return np.arange(1, self.data.num_rows + 1)
        return np.asarray(self.row_numbers)
