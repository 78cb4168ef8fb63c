"""PM files in the stream: read with the very readers and vendor counter dictionaries
``opencem ingest`` uses (``ingest/load.py``'s ``read_parts``, ``ingest/vendors.py``'s choice,
the cells inventory's keying, ``ingest/validate.py``'s ``conform``), so that a PM file
streamed gives the ``pm_counters`` rows its batch load gives.

A file is known by its load key (content digest and dictionary digest, as ingest's): a file
whose key was taken before (a re-sent PM file: same bytes) is not read again, and its rows
count as duplicates. The rows then enter the state like any other table's records: record id
``object_dn|period_start|counter_name``, lateness on ``period_start``, one transaction.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ..ingest.cells import CellInventory
from ..ingest.dictionary import DictionaryError
from ..ingest.load import SourceFile, discover, load_key, read_parts
from ..ingest.pm_xml_rows import PMFileError
from ..ingest.validate import IngestError, conform
from ..ingest.vendors import choose_dictionary
from ..specfile import SpecError
from .sources import PMFile

PM = "pm_counters"
UNREADABLE = (IngestError, PMFileError, DictionaryError, SpecError, pa.ArrowException, OSError, ValueError,
              UnicodeError, OverflowError)


@dataclass
class PMRead:
    """What became of one PM file: its rows (None: a copy taken before, or unreadable), the
    rows of the earlier copy it repeats, the rows rejected, and why it could not be read."""

    rows: pa.Table | None = None
    duplicates: int = 0
    rejected: int = 0
    error: str | None = None


def read_pm_files(state, files: list[PMFile], cells: pa.Table | None, dictionaries: Path | None) -> list[PMRead]:
    """``files`` (in arrival order) as conformed ``pm_counters`` rows, one result per file,
    object DNs keyed to ``cells`` as ingest keys them. A file taken before is counted as
    duplicates; rows that fail validation and files that cannot be read go to the state's
    ``rejected_records`` (nothing is dropped silently)."""
    spec = state.tables[PM]
    inventory = CellInventory()
    if cells is not None:
        inventory.add(cells)
    out: list[PMRead] = []
    with tempfile.TemporaryDirectory(prefix="opencem-pm-") as tmp:
        for f in files:
            label = f"pm/{f.vendor}/{f.name}"
            # Under pm/<vendor>/, so that ingest's discovery names the vendor and the reader.
            path = Path(tmp) / "pm" / f.vendor / Path(f.name).name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f.data)
            try:
                (src,), _ = discover([path], state.tables)
                if src.table != PM:
                    raise IngestError(f"{label}: not a PM file (.xml, .xml.gz or .csv under pm/<vendor>/)")
                choice = choose_dictionary(src, dictionaries)
                key = load_key(hashlib.sha256(f.data).hexdigest(), dictionary=choice.key)
                known = state.pm_file(key)
                if known is not None:  # the same content again: counted once
                    state.count(PM, delivered=known, duplicates=known)
                    state.pm_file_taken(key, label, known)
                    out.append(PMRead(duplicates=known))
                    continue
                rows, rejected = _rows(src, choice, state.tables, inventory, spec, label, state)
            except UNREADABLE as err:
                inventory.file_done(loaded=False)
                reason = f"{label}: cannot be read ({str(err).splitlines()[0]})"
                state.reject(PM, label, [None], [reason], [None])
                out.append(PMRead(error=reason))
                continue
            inventory.file_done(loaded=True)
            state.pm_file_taken(key, label, rows.num_rows)
            out.append(PMRead(rows=rows, rejected=rejected))
    return out


def _rows(src: SourceFile, choice, tables, inventory: CellInventory, spec, label: str, state) -> tuple[pa.Table, int]:
    parts, rejected = [], 0
    for part in read_parts(src, choice=choice, tables=tables):
        if part.table != PM:
            continue
        c = conform(inventory.key_cells(part.data), spec, label)
        state.reject(PM, label, [r.row_number for r in part.rejects], [r.reason for r in part.rejects],
                     [r.record_text for r in part.rejects])
        state.reject(PM, label, part.source_row_numbers()[c.rejected_rows].tolist(), c.reasons, c.records_json)
        rejected += len(part.rejects) + len(c.reasons)
        parts.append(c.accepted)
    return (pa.concat_tables(parts) if parts else spec.schema.empty_table()), rejected
