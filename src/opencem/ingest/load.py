"""``opencem ingest``: find source files, conform them, and commit them to the lake at once.

Understands the simulator's output folder (canonical Parquet tables plus vendor PM files)
and single canonical files named after their table (``xdr_voice.parquet``). Each file is
fingerprinted by content, so loading the same file twice adds nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..schema import TABLES
from ..schema.ops import INGEST_LOG, QUARANTINE
from .dictionary import DictionaryError
from .lake import Lake, Transaction
from .pm_xml import PMFileError
from .validate import IngestError, conform

Progress = Callable[[str, int], None]  # (file description, rows) after each file


@dataclass(frozen=True)
class SourceFile:
    path: Path
    table: str
    kind: str  # parquet, pm_xml, pm_csv
    vendor: str | None = None


@dataclass
class FileResult:
    source: SourceFile
    status: str  # loaded, duplicate, rejected
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    message: str = ""
    fingerprint: str | None = None


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)

    def rows(self, status: str = "loaded") -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            if f.status == status:
                out[f.source.table] = out.get(f.source.table, 0) + f.rows_accepted
        return out

    @property
    def quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)


def discover(paths: list[Path]) -> tuple[list[SourceFile], date | None]:
    """Source files under ``paths`` and the as-of date a simulator run declares, if any."""
    found: list[SourceFile] = []
    as_of = None
    for root in map(Path, paths):
        if not root.exists():
            raise IngestError(f"{root}: no such file or folder")
        if root.is_file():
            found.append(_classify(root))
            continue
        manifest = root / "manifest.json"
        if manifest.exists():
            config = json.loads(manifest.read_text()).get("config", {})
            if "start_date" in config:
                as_of = date.fromisoformat(config["start_date"])
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.name != "manifest.json" and not path.name.startswith("."):
                found.append(_classify(path))
    return found, as_of


def _classify(path: Path) -> SourceFile:
    name = path.name.lower()
    if name.endswith((".xml", ".xml.gz")):
        return SourceFile(path, "pm_counters", "pm_xml", _vendor_from_path(path))
    if name.endswith(".csv") and "pm" in {p.lower() for p in path.parts}:
        return SourceFile(path, "pm_counters", "pm_csv", _vendor_from_path(path))
    if name.endswith(".parquet"):
        # tables/<table>.parquet or tables/<table>/<date>.parquet
        table = path.stem if path.stem in TABLES else path.parent.name
        if table in TABLES:
            return SourceFile(path, table, "parquet")
    raise IngestError(f"{path}: cannot tell which table this file belongs to; name it after a "
                      f"canonical table (e.g. xdr_voice.parquet) or put PM files under pm/<vendor>/")


def _vendor_from_path(path: Path) -> str | None:
    parts = [p.lower() for p in path.parts]
    if "pm" in parts and parts.index("pm") + 1 < len(parts) - 1:
        return parts[parts.index("pm") + 1]
    return None


def fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=32)
def _dictionary(vendor: str | None):
    """The vendor's counter dictionary, or None where 3GPP names need no mapping."""
    from .dictionary import DICTIONARY_DIR, load_dictionary

    if vendor is None or not (DICTIONARY_DIR / f"{vendor}.yaml").exists():
        return None
    return load_dictionary(vendor)


def _read(src: SourceFile) -> pa.Table:
    if src.kind == "parquet":
        return pq.read_table(src.path)
    if src.kind == "pm_xml":
        from .pm_xml import read_meascollec

        return read_meascollec(src.path, vendor=_dictionary(src.vendor))
    if src.kind == "pm_csv":
        from .pm_csv import read_vendor_csv

        dictionary = _dictionary(src.vendor)
        if dictionary is None:
            raise IngestError(f"{src.path}: no counter dictionary for vendor {src.vendor!r}; put "
                              "the export under pm/<vendor>/ and add dictionaries/<vendor>.yaml")
        return read_vendor_csv(src.path, dictionary)
    raise IngestError(f"{src.path}: unsupported source kind {src.kind}")


def ingest(lake: Lake, paths: list[Path], as_of: date | None = None,
           progress: Progress | None = None) -> IngestReport:
    """Load every file under ``paths`` into ``lake`` in one atomic batch."""
    sources, declared = discover(paths)
    as_of = as_of or declared or datetime.now(UTC).date()
    report = IngestReport()
    with lake.transaction() as txn:
        for src in sources:
            result = _ingest_file(txn, src, as_of)
            report.files.append(result)
            if progress:
                progress(str(src.path), result.rows_read)
        _write_log(txn, report)
    return report


def _ingest_file(txn: Transaction, src: SourceFile, as_of: date) -> FileResult:
    digest = fingerprint(src.path)
    if txn.seen(digest):
        return FileResult(src, "duplicate", message="same content already loaded", fingerprint=digest)
    spec = TABLES[src.table]
    try:
        raw = _read(src)
        conformed = conform(raw, spec, str(src.path))
    except (IngestError, PMFileError, DictionaryError) as err:
        return FileResult(src, "rejected", message=str(err), fingerprint=digest)
    except (pa.ArrowException, OSError, ValueError) as err:
        return FileResult(src, "rejected", message=f"{src.path}: cannot be read ({err})",
                          fingerprint=digest)
    txn.append(spec, conformed.accepted, snapshot_date=as_of)
    if conformed.n_quarantined:
        _quarantine(txn, src, conformed)
    txn.record_source(digest, {"path": str(src.path), "table": src.table, "rows": raw.num_rows})
    return FileResult(src, "loaded", raw.num_rows, conformed.accepted.num_rows, conformed.n_quarantined,
                      fingerprint=digest)


def _now_ms(n: int) -> pa.Array:
    now = int(datetime.now(UTC).timestamp() * 1000)
    return pa.array(np.full(n, now, np.int64)).cast(pa.timestamp("ms", tz="UTC"))


def _quarantine(txn: Transaction, src: SourceFile, c) -> None:
    n = c.n_quarantined
    txn.append(QUARANTINE, pa.table({
        "ingested_at": _now_ms(n),
        "batch_id": [txn.batch] * n,
        "source_path": [str(src.path)] * n,
        "table_name": [src.table] * n,
        "row_number": c.rejected_rows + 1,
        "field": c.fields,
        "value": c.values,
        "reason": c.reasons,
        "record_json": c.records_json,
    }, schema=QUARANTINE.schema))


def _write_log(txn: Transaction, report: IngestReport) -> None:
    files = report.files
    if not files:
        return
    txn.append(INGEST_LOG, pa.table({
        "ingested_at": _now_ms(len(files)),
        "batch_id": [txn.batch] * len(files),
        "source_path": [str(f.source.path) for f in files],
        "fingerprint": [f.fingerprint for f in files],
        "table_name": [f.source.table for f in files],
        "status": [f.status for f in files],
        "rows_read": [f.rows_read for f in files],
        "rows_accepted": [f.rows_accepted for f in files],
        "rows_quarantined": [f.rows_quarantined for f in files],
        "message": [f.message or None for f in files],
    }, schema=INGEST_LOG.schema))

