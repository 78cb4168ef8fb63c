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


@dataclass(frozen=True)
class MappingNote:
    """What a counter dictionary did to the rows of a Part, which ingest reports with the file:
    read = accepted + quarantined + folded - derived + dropped."""

    folded: int = 0  # source values that went only into sum/expr rows
    derived: int = 0  # rows the sum/expr entries computed
    dropped: dict[str, int] = field(default_factory=dict)  # counter -> values left out (keep_unmapped: false)

    def __add__(self, other: MappingNote) -> MappingNote:
        dropped = dict(self.dropped)
        for name, n in other.dropped.items():
            dropped[name] = dropped.get(name, 0) + n
        return MappingNote(self.folded + other.folded, self.derived + other.derived, dropped)


@dataclass
class Part:
    """Rows for one target table, with columns named as that table's (types not yet cast)."""

    table: str
    data: pa.Table
    row_numbers: np.ndarray | None = None  # 1-based source record number per row; None: 1..n
    rejects: list[Reject] = field(default_factory=list)
    # Records (PM: values) the reader read, kept or rejected, before a dictionary turned them
    # into rows; None: one row per record, so rows + rejects.
    values_read: int | None = None
    mapping: MappingNote | None = None  # set when a counter dictionary mapped the rows

    @property
    def rows_read(self) -> int:
        """Records read from the file: ``values_read`` when given, else rows + rejects."""
        return self.values_read if self.values_read is not None else self.data.num_rows + len(self.rejects)

    def source_row_numbers(self) -> np.ndarray:
        if self.row_numbers is None:
            return np.arange(1, self.data.num_rows + 1)
        return np.asarray(self.row_numbers)
