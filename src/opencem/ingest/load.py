"""``opencem ingest``: find source files, read them into parts, conform, commit at once.

Every file is fingerprinted by content: the same content twice adds nothing; new content at
a path loaded before replaces the rows the old content loaded (operators re-deliver
corrected PM and xDR files under the same name). A file that cannot be read at all is
copied to the workspace's rejected area with a note of why; the rest of the batch goes on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..schema import Table
from ..schema.ops import INGEST_LOG, QUARANTINE
from ..specfile import SpecError
from .dictionary import DictionaryError
from .lake import Lake, Transaction
from .parts import Part
from .pm_xml import PMFileError
from .validate import IngestError, conform

Progress = Callable[[str, int, int], None]  # (file, rows read, files in the call) after each file
TABULAR = (".csv", ".csv.gz", ".jsonl", ".ndjson", ".json", ".parquet")


@dataclass(frozen=True)
class SourceFile:
    path: Path
    table: str | None  # target table when the file's name or place says; None for mapped files
    kind: str  # parquet, tabular, pm_xml, pm_csv, mapped, drive_test_zip
    vendor: str | None = None


@dataclass
class FileResult:
    source: SourceFile
    table: str | None
    status: str  # loaded, replaced, duplicate, rejected
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    message: str = ""
    fingerprint: str | None = None


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)

    def rows(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            if f.status in ("loaded", "replaced") and f.table:
                out[f.table] = out.get(f.table, 0) + f.rows_accepted
        return out

    @property
    def quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)

    def count(self, status: str) -> int:
        """Source files with this status (a file feeding several tables counts once)."""
        return len({f.source.path for f in self.files if f.status == status})


def discover(paths: list[Path], tables: dict[str, Table], mapping: Path | None = None
             ) -> tuple[list[SourceFile], date | None]:
    """Source files under ``paths`` and the as-of date a simulator run declares, if any."""
    found: list[SourceFile] = []
    as_of = None
    for root in map(Path, paths):
        if not root.exists():
            raise IngestError(f"{root}: no such file or folder")
        if root.is_file():
            found.append(_classify(root, tables, mapping))
            continue
        manifest = root / "manifest.json"
        if manifest.exists():
            config = json.loads(manifest.read_text()).get("config", {})
            if "start_date" in config:
                as_of = date.fromisoformat(config["start_date"])
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.name != "manifest.json" and not _hidden(path, root):
                found.append(_classify(path, tables, mapping))
    return found, as_of


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _classify(path: Path, tables: dict[str, Table], mapping: Path | None) -> SourceFile:
    name = path.name.lower()
    parts = [p.lower() for p in path.parts]
    if mapping is not None:
        return SourceFile(path, None, "mapped")
    if name.endswith((".xml", ".xml.gz")):
        return SourceFile(path, "pm_counters", "pm_xml", _vendor_from_path(parts))
    if name.endswith(".csv") and "pm" in parts[:-1]:
        return SourceFile(path, "pm_counters", "pm_csv", _vendor_from_path(parts))
    if name.endswith(".zip"):
        return SourceFile(path, "drive_tests", "drive_test_zip")
    if name.endswith(TABULAR):
        table = table_of(name, tables) or (path.parent.name if path.parent.name in tables else None)
        if table:
            return SourceFile(path, table, "parquet" if name.endswith(".parquet") else "tabular")
    return SourceFile(path, None, "unknown")


def table_of(file_name: str, tables: dict[str, Table]) -> str | None:
    """The table a file's name starts with: xdr_voice.csv, xdr_voice_20261123T0015.csv.gz."""
    stem = file_name.split(".")[0]
    for name in sorted(tables, key=len, reverse=True):
        if stem == name or (stem.startswith(name) and stem[len(name)] in "_-"):
            return name
    return None


def _vendor_from_path(parts: list[str]) -> str | None:
    if "pm" in parts and parts.index("pm") + 1 < len(parts) - 1:
        return parts[parts.index("pm") + 1]
    return None


def fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dictionary_path(vendor: str | None, folder: Path | None = None) -> Path | None:
    """The vendor's counter dictionary file: the workspace's own first, then the bundled one."""
    from .dictionary import DICTIONARY_DIR

    if vendor is None:
        return None
    for base in filter(None, (folder, DICTIONARY_DIR)):
        path = Path(base) / f"{vendor}.yaml"
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=32)
def _load_dictionary(path: Path, mtime_ns: int):
    from .dictionary import load_dictionary

    return load_dictionary(path)


def _dictionary(vendor: str | None, folder: Path | None = None):
    """The vendor's counter dictionary, or None where 3GPP names need no mapping."""
    path = dictionary_path(vendor, folder)
    return None if path is None else _load_dictionary(path, path.stat().st_mtime_ns)


def read_parts(src: SourceFile, mapping=None, options: dict | None = None,
               tables: dict[str, Table] | None = None) -> Iterable[Part]:
    """Read one source file with the reader its kind calls for. ``mapping`` is a loaded
    Mapping for mapped sources; ``options`` may carry ``dictionaries`` (the workspace's
    counter dictionary folder) and ``as_of``; ``tables`` is the lake's table registry."""
    options = options or {}
    folder = options.get("dictionaries")
    if src.kind == "parquet":
        return [Part(src.table, pq.read_table(src.path))]
    if src.kind == "pm_xml":
        from .pm_xml import iter_pm_xml_parts

        return iter_pm_xml_parts(src.path, vendor=_dictionary(src.vendor, folder))
    if src.kind == "pm_csv":
        from .pm_csv import read_vendor_csv

        dictionary = _dictionary(src.vendor, folder)
        if dictionary is None:
            raise IngestError(f"{src.path}: no counter dictionary for vendor {src.vendor!r}; put "
                              "the export under pm/<vendor>/ and add <workspace>/dictionaries/<vendor>.yaml")
        return [Part("pm_counters", read_vendor_csv(src.path, dictionary))]
    if src.kind == "tabular":
        from .tabular import read_tabular

        return read_tabular(src.path, src.table, tables)
    if src.kind == "mapped":
        from .tabular import read_mapped

        return read_mapped(src.path, mapping, options, tables)
    if src.kind == "drive_test_zip":
        from .drive_test import read_drive_test_zip

        return read_drive_test_zip(src.path)
    raise IngestError(f"{src.path}: unsupported source kind {src.kind}")


def ingest(lake: Lake, paths: list[Path], as_of: date | None = None, progress: Progress | None = None,
           mapping: Path | None = None, rejected_dir: Path | None = None,
           dictionaries: Path | None = None) -> IngestReport:
    """Load every file under ``paths`` into ``lake`` in one atomic batch. ``rejected_dir``
    keeps copies of unreadable files; ``dictionaries`` holds the workspace's own vendor
    counter dictionaries (they win over the bundled ones)."""
    sources, declared = discover(paths, lake.tables, mapping)
    if mapping is not None:  # a bad mapping fails the whole call, before anything is read
        from .mapping import load_mapping

        mapping = load_mapping(mapping, lake.tables)
    as_of = as_of or declared or datetime.now(UTC).date()
    options = {"as_of": as_of, "dictionaries": dictionaries}
    report = IngestReport()
    with lake.transaction() as txn:
        inventory = _cell_inventory(lake, txn)
        for src in sources:
            results = _ingest_file(txn, lake, src, as_of, mapping, options, inventory)
            report.files += results
            if rejected_dir is not None and results[0].status == "rejected":
                _set_aside(src.path, results[0].message, rejected_dir / txn.batch)
            if progress:
                progress(str(src.path), sum(r.rows_read for r in results), len(sources))
        _write_log(txn, lake, report)
    return report


def _ingest_file(txn: Transaction, lake: Lake, src: SourceFile, as_of: date, mapping,
                 options: dict, inventory: set[str]) -> list[FileResult]:
    """Read, conform and stage one file, part by part; all of it or (rejected) none of it."""
    digest = fingerprint(src.path)
    key = str(src.path.resolve())
    if src.kind == "unknown":
        return [FileResult(src, None, "rejected", fingerprint=digest, message=(
            f"{src.path}: cannot tell which table this file belongs to; name it after a table "
            "(e.g. xdr_voice.csv), give a --mapping file, or put PM files under pm/<vendor>/"))]
    if txn.seen(digest):
        return [FileResult(src, src.table, "duplicate", message="same content already loaded",
                           fingerprint=digest)]
    previous = txn.previous_fingerprint(key)
    status = "replaced" if previous and previous != digest else "loaded"
    note = f"replaces the content loaded in batch {txn.seen(previous)['batch']}" \
        if status == "replaced" and txn.seen(previous) else ""
    results: dict[str, FileResult] = {}
    pm_cells: set[str] = set()
    mark = txn.savepoint()
    try:
        for part in read_parts(src, mapping, options, lake.tables):
            if part.table not in lake.tables:
                raise IngestError(f"{src.path}: table {part.table!r} is not a canonical table nor one "
                                  "defined in the workspace's sources/")
            c = conform(part.data, lake.tables[part.table], str(src.path))
            txn.append(lake.tables[part.table], c.accepted, snapshot_date=as_of, source=digest)
            _quarantine(txn, src, part, part.source_row_numbers()[c.rejected_rows], c)
            if part.table == "cells":
                inventory.update(c.accepted.column("cell_id").to_pylist())
            if part.table == "pm_counters":
                pm_cells.update(pc.unique(c.accepted.column("cell_id").drop_null()).to_pylist())
            r = results.setdefault(part.table, FileResult(src, part.table, status, message=note,
                                                          fingerprint=digest))
            r.rows_read += part.rows_read
            r.rows_accepted += c.accepted.num_rows
            r.rows_quarantined += c.n_quarantined + len(part.rejects)
    except (IngestError, PMFileError, DictionaryError, SpecError) as err:
        txn.rollback_to(mark)
        return [FileResult(src, src.table, "rejected", message=str(err), fingerprint=digest)]
    except (pa.ArrowException, OSError, ValueError, UnicodeError) as err:
        txn.rollback_to(mark)
        return [FileResult(src, src.table, "rejected", fingerprint=digest,
                           message=f"{src.path}: cannot be read ({str(err).splitlines()[0]})")]
    if "pm_counters" in results:
        unknown = _unknown_cells(pm_cells, inventory)
        results["pm_counters"].message = "; ".join(filter(None, [note, unknown]))
    txn.record_source(digest, key, {"tables": sorted(results),
                                    "rows": sum(r.rows_read for r in results.values())})
    return list(results.values()) or [FileResult(src, src.table, status, message="no records",
                                                 fingerprint=digest)]


def _cell_inventory(lake: Lake, txn: Transaction) -> set[str]:
    """Cell ids of the committed cells snapshot (to join PM object DNs to cells)."""
    ids: set[str] = set()
    for path in lake.paths(lake.files("cells", txn.manifest)):
        ids.update(pq.read_table(path, columns=["cell_id"]).column(0).to_pylist())
    return ids


def _unknown_cells(cells: set[str], inventory: set[str]) -> str:
    unknown = sorted(cells - inventory)
    if not cells or not unknown or not inventory:
        return ""
    return (f"{len(unknown)} of {len(cells)} cells are not in the cells inventory "
            f"(e.g. {unknown[0]}); their counters are kept")


def _set_aside(path: Path, reason: str, folder: Path) -> None:
    """Keep a copy of a rejected file with the reason next to it (the original stays put)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, folder / path.name)
    (folder / (path.name + ".reason.txt")).write_text(reason + "\n")


def _now_ms(n: int) -> pa.Array:
    now = int(datetime.now(UTC).timestamp() * 1000)
    return pa.array(np.full(n, now, np.int64)).cast(pa.timestamp("ms", tz="UTC"))


def _quarantine(txn: Transaction, src: SourceFile, part: Part, rows: np.ndarray, c) -> None:
    """Validation failures and the reader's unparseable records, one row each."""
    n_bad, rejects = c.n_quarantined, part.rejects
    n = n_bad + len(rejects)
    if n == 0:
        return
    txn.append(QUARANTINE, pa.table({
        "ingested_at": _now_ms(n),
        "batch_id": [txn.batch] * n,
        "source_path": [str(src.path)] * n,
        "table_name": [part.table] * n,
        "row_number": np.r_[np.asarray(rows, np.int64), [r.row_number for r in rejects]].astype(np.int64),
        "field": c.fields + [r.field for r in rejects],
        "value": c.values + [r.value for r in rejects],
        "reason": c.reasons + [r.reason for r in rejects],
        "record_json": c.records_json + [r.record_text for r in rejects],
    }, schema=QUARANTINE.schema))


def _write_log(txn: Transaction, lake: Lake, report: IngestReport) -> None:
    files = report.files
    if not files:
        return
    txn.append(INGEST_LOG, pa.table({
        "ingested_at": _now_ms(len(files)),
        "batch_id": [txn.batch] * len(files),
        "source_path": [str(f.source.path) for f in files],
        "fingerprint": [f.fingerprint for f in files],
        "table_name": [f.table or "?" for f in files],
        "status": [f.status for f in files],
        "rows_read": [f.rows_read for f in files],
        "rows_accepted": [f.rows_accepted for f in files],
        "rows_quarantined": [f.rows_quarantined for f in files],
        "message": [f.message or None for f in files],
    }, schema=INGEST_LOG.schema))
