"""``opencem ingest``: find source files, read them into parts, conform, commit at once.

Every file is fingerprinted by its content and by what decides how it is read: the mapping
file, the counter dictionary, and an ``--as-of`` date given for snapshot or mapped sources. The
same fingerprint twice adds nothing; a new fingerprint at a path loaded before (corrected
content, a corrected mapping, a new as-of date) replaces the rows the earlier load of that
path committed, in the same commit. ``reload`` loads a file again even when nothing changed,
replacing what its earlier load committed. A file that cannot be read at all is copied to the
workspace's rejected area with a note of why; the rest of the batch goes on. ``dry_run`` does
all of it without committing anything and keeps the quarantined rows for the report.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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
from ..schema.truth import SIMULATION_MARKER, TRUTH_MARKER
from ..specfile import SpecError
from .dictionary import DictionaryError
from ..lake import MANIFEST, Lake, Transaction
from .cells import CellInventory
from .dn import object_classes
from .measurements import LoadedMeasurements
from .parts import MappingNote, Part
from .pm_xml_rows import PMFileError
from .validate import IngestError, conform
from .vendors import DictionaryChoice, choose_dictionary

Progress = Callable[[str, int, int], None]  # (file, rows read, files in the call) after each file
TABULAR = (".csv", ".csv.gz", ".jsonl", ".ndjson", ".json", ".parquet")


@dataclass(frozen=True)
class SourceFile:
    path: Path
    table: str | None  # target table when the file's name or place says; None for mapped files
    kind: str  # parquet, tabular, pm_xml, pm_csv, mapped, drive_test_zip
    vendor: str | None = None  # from the pm/<vendor>/ folder or --vendor; else detected
    device: str | None = None  # the folder of pm/<vendor>/<device>/<file>: names a NanoCell


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
    dictionary: str | None = None  # PM files: the counter dictionary used and why
    unmapped: tuple[str, ...] = ()  # PM files: vendor counters no dictionary entry maps
    # PM files: what the dictionary did to the values read, so that
    # rows_read = rows_accepted + rows_quarantined + folded - derived + dropped.
    mapping: MappingNote | None = None


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)
    dry_run: bool = False
    quarantine: pa.Table | None = None  # the quarantined rows (dry runs keep them to show)

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

    @property
    def outcome(self) -> str:
        """``ok`` (everything loaded, or already was), ``partial`` (some files rejected or
        rows quarantined; the rest committed) or ``nothing`` (every file rejected, or every
        row read quarantined)."""
        files = {f.source.path for f in self.files}
        rejected = {f.source.path for f in self.files if f.status == "rejected"}
        read = sum(f.rows_read for f in self.files if f.status != "rejected")
        accepted = sum(f.rows_accepted for f in self.files if f.status != "rejected")
        if files and (rejected == files or (read > 0 and accepted == 0 and self.quarantined > 0
                                            and not any(f.status == "duplicate" for f in self.files))):
            return "nothing"
        return "partial" if rejected or self.quarantined else "ok"


def discover(paths: list[Path], tables: dict[str, Table], mapping: Path | None = None,
             skip: tuple[Path, ...] = ()) -> tuple[list[SourceFile], date | None]:
    """Source files under ``paths`` and the as-of date a simulator run declares, if any. Cells
    inventory files come first, so PM files of the same call are keyed to its cells.

    Folders in ``skip`` (the lake being written, the rejected area) and opencem workspaces
    found inside the given folders are never read as sources: a workspace kept inside its
    landing folder must not load its own lake. A simulator truth folder (``TRUTH_MARKER``) is
    never walked into, and naming one (or a file in one) is an error. A path that is not a regular file (a FIFO, a
    device) is a source of kind ``special``, which is rejected with its reason."""
    found: list[SourceFile] = []
    as_of = None
    skipped = {Path(p).resolve() for p in skip}
    for root in map(Path, paths):
        if not root.exists():
            raise IngestError(f"{root}: no such file or folder")
        if (truth := _truth_folder_of(root)) is not None:
            where = f"{root} is" if truth == root.absolute() else f"{root} lies in {truth},"
            raise IngestError(f"{where} the simulator's truth, which never goes into the lake; "
                              f"keep it apart with `opencem truth load {truth}`")
        if not root.is_dir():
            found.append(_classify(root, tables, mapping) if root.is_file() else SourceFile(root, None, "special"))
            continue
        if (root / SIMULATION_MARKER).is_file() and not (root / "manifest.json").is_file():
            raise IngestError(f"{root} is a simulator output that did not finish (it has no manifest.json); "
                              "run `opencem simulate` again before loading it")
        as_of = _declared_as_of(root / "manifest.json") or as_of
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() not in skipped
                             and not (here / d / "lake" / MANIFEST).is_file() and not (here / d / MANIFEST).is_file()
                             and not (here / d / TRUTH_MARKER).is_file())
            for name in sorted(files):
                path = here / name
                if name.startswith(".") or (here == root and name == "manifest.json"):
                    continue
                if path.is_file():
                    found.append(_classify(path, tables, mapping))
                elif not path.is_dir():
                    found.append(SourceFile(path, None, "special"))
    return sorted(found, key=lambda f: (f.table != "cells", f.path)), as_of


def _truth_folder_of(path: Path) -> Path | None:
    """The simulator truth folder ``path`` is or lies in (it has a TRUTH_MARKER file), if any."""
    for candidate in (path.absolute(), path.resolve()):  # a symlink to a truth file is one too
        for folder in (candidate, *candidate.parents):
            if (folder / TRUTH_MARKER).is_file():
                return folder
    return None


def _declared_as_of(manifest: Path) -> date | None:
    """The first simulated day of a simulator output folder; anything else named
    manifest.json is someone else's file and declares nothing."""
    try:
        raw = json.loads(manifest.read_text())
        if not str(raw.get("generator", "")).startswith("opencem"):
            return None
        return date.fromisoformat(raw["config"]["start_date"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _classify(path: Path, tables: dict[str, Table], mapping: Path | None) -> SourceFile:
    name = path.name.lower()
    parts = [p.lower() for p in path.parts]
    if mapping is not None:
        return SourceFile(path, None, "mapped")
    if name.endswith((".xml", ".xml.gz")):
        return SourceFile(path, "pm_counters", "pm_xml", *_vendor_from_path(path.parts))
    if name.endswith(".csv") and "pm" in parts[:-1]:
        return SourceFile(path, "pm_counters", "pm_csv", *_vendor_from_path(path.parts))
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


def _vendor_from_path(parts: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(vendor, device) of pm/<vendor>/[<folders>/]<file>: the vendor lower-case, the device as
    written: the nearest folder above the file that is not a date (20180525, 2018/05/25), else none."""
    lower = [p.lower() for p in parts]
    if "pm" not in lower[:-1]:
        return None, None
    i = len(lower) - 1 - lower[:-1][::-1].index("pm") - 1  # the last pm/ folder
    vendor = lower[i + 1] if i + 1 < len(parts) - 1 else None
    if vendor is None:
        return None, None
    folders = parts[i + 2:-1]
    dates = _date_folders(folders)
    device = next((f for f, is_date in zip(reversed(folders), reversed(dates)) if not is_date), None)
    return vendor, device


# A day or a moment (20180525, 2018-05-25, 2018_05_25, 20180525T1400, 2018-05-25_14-00), a month
# with a separator (2018-05) or a year (2018): folders a landing zone sorts files by, not devices.
_DATE_FOLDER = re.compile(
    r"(?:19|20)\d\d(?:[-_.]?(?:0[1-9]|1[0-2])[-_.]?(?:0[1-9]|[12]\d|3[01])"
    r"(?:[t_ .-]?(?:[01]\d|2[0-3])(?:[-_.:h]?[0-5]\d){0,2}z?)?|[-_.](?:0[1-9]|1[0-2]))?", re.IGNORECASE)


def _date_folders(folders: tuple[str, ...]) -> list[bool]:
    """Which folders are dates: a date name, or one or two digits right below a date folder
    (the month, day and hour of 2018/05/25/14)."""
    dates: list[bool] = []
    for name in folders:
        below_date = bool(dates) and dates[-1]
        dates.append(bool(_DATE_FOLDER.fullmatch(name)) or (below_date and name.isdigit() and len(name) <= 2))
    return dates


def fingerprint(path: Path) -> str:
    """SHA-256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_key(content: str, **how: str | None) -> str:
    """The fingerprint a load is remembered by: the content's, plus whatever decides how it is
    read (mapping, dictionary, as-of date); an unchanged file read differently is new."""
    used = {k: v for k, v in how.items() if v is not None}
    if not used:
        return content  # plain files keep the content fingerprint of earlier versions
    return hashlib.sha256(json.dumps({"content": content, **used}, sort_keys=True).encode()).hexdigest()


def read_parts(src: SourceFile, mapping=None, options: dict | None = None,
               tables: dict[str, Table] | None = None, choice: DictionaryChoice | None = None) -> Iterable[Part]:
    """Read one source file with the reader its kind calls for. ``mapping`` is a loaded
    Mapping for mapped sources, ``choice`` the PM file's format and counter dictionary
    (:func:`~opencem.ingest.vendors.choose_dictionary`); ``options`` may carry ``as_of``;
    ``tables`` is the lake's table registry."""
    options = options or {}
    dictionary = choice.dictionary if choice else None
    if src.kind == "parquet":
        return [Part(src.table, pq.read_table(src.path))]
    if src.kind == "pm_xml":
        fmt = choice.format if choice else "xml_32435"
        if fmt == "omes":
            from .pm_omes import read_omes_parts

            return read_omes_parts(src.path, dictionary)
        if fmt == "nanocell_pmfile":
            from .pm_nanocell import read_pmfile_parts

            return read_pmfile_parts(src.path, dictionary, element_id=src.device)
        from .pm_xml import iter_pm_xml_parts  # None: not a known layout; the 3GPP reader says why

        return iter_pm_xml_parts(src.path, vendor=dictionary)
    if src.kind == "pm_csv":
        from .pm_csv import read_vendor_csv_part

        if dictionary is None:
            raise IngestError(f"{src.path}: no counter dictionary for vendor {src.vendor!r}; put "
                              "the export under pm/<vendor>/ and add <workspace>/dictionaries/<vendor>.yaml")
        return [read_vendor_csv_part(src.path, dictionary)]
    if src.kind == "tabular":
        from .tabular import read_tabular

        return read_tabular(src.path, src.table, tables)
    if src.kind == "mapped":
        from .tabular import read_mapped

        return read_mapped(src.path, mapping, options, tables)
    if src.kind == "drive_test_zip":
        from .drive_test_zip import read_drive_test_zip

        return read_drive_test_zip(src.path)
    raise IngestError(f"{src.path}: unsupported source kind {src.kind}")


def ingest(lake: Lake, paths: list[Path], as_of: date | None = None, progress: Progress | None = None,
           mapping: Path | None = None, rejected_dir: Path | None = None,
           dictionaries: Path | None = None, reload: bool = False, dry_run: bool = False,
           vendor: str | None = None) -> IngestReport:
    """Load every file under ``paths`` into ``lake`` in one atomic batch.

    ``rejected_dir`` keeps copies of unreadable files; ``dictionaries`` holds the workspace's
    own vendor counter dictionaries (they win over the bundled ones); ``vendor`` forces one
    dictionary for every PM file instead of detecting it. ``reload`` loads files again even
    if they were loaded before, replacing what that earlier load committed; ``dry_run`` reads
    and checks everything and commits nothing."""
    sources, declared = discover(paths, lake.tables, mapping,
                                 skip=tuple(p for p in (lake.root, rejected_dir) if p is not None))
    _check_dictionaries(dictionaries, vendor)  # a bad one is the caller's mistake, not the files'
    mapping_key = None
    if mapping is not None:  # a bad mapping fails the whole call, before anything is read
        from .mapping import load_mapping

        loaded = load_mapping(mapping, lake.tables)
        mapping_key, mapping = fingerprint(Path(mapping)), loaded
    explicit = as_of or declared
    options = {"as_of": explicit or datetime.now(UTC).date(), "dictionaries": dictionaries,
               "vendor": vendor, "reload": reload, "mapping_key": mapping_key,
               "as_of_key": explicit.isoformat() if explicit else None}
    report = IngestReport(dry_run=dry_run)
    with lake.transaction(dry_run=dry_run, keep=(QUARANTINE.name,)) as txn:
        inventory = _cell_inventory(lake, txn)
        options["measured"] = LoadedMeasurements(lake, txn)
        for src in sources:
            results = _ingest_file(txn, lake, src, mapping, options, inventory)
            report.files += results
            if rejected_dir is not None and results[0].status == "rejected" and not dry_run:
                _set_aside(src.path, results[0].message, rejected_dir / txn.batch)
            if progress:
                progress(str(src.path), sum(r.rows_read for r in results), len(sources))
        _write_log(txn, lake, report)
    if dry_run and txn.kept.get(QUARANTINE.name):
        report.quarantine = pa.concat_tables(txn.kept[QUARANTINE.name])
    return report


def _check_dictionaries(folder: Path | None, vendor: str | None) -> None:
    """Every workspace dictionary loads, and ``vendor`` names one; else a DictionaryError
    before any file is read (exit 2, not every PM file rejected)."""
    from .vendors import available, dictionary_path, load

    for path in available(folder).values():
        if folder is not None and path.parent == Path(folder):
            load(path)
    if vendor is not None and dictionary_path(vendor, folder) is None:
        known = ", ".join(sorted(available(folder)))
        raise DictionaryError([f"--vendor {vendor!r}: no such counter dictionary; known: {known}"])


def _ingest_file(txn: Transaction, lake: Lake, src: SourceFile, mapping, options: dict,
                 inventory: CellInventory) -> list[FileResult]:
    """Read, conform and stage one file, part by part; all of it or (rejected) none of it."""
    if src.kind == "special":
        return [FileResult(src, None, "rejected", message=(
            f"{src.path}: not a regular file (a FIFO, device or socket); copy the data into a file"))]
    try:
        content = fingerprint(src.path)
    except OSError as err:
        return [FileResult(src, src.table, "rejected", message=f"{src.path}: cannot be read "
                           f"({err.strerror or type(err).__name__})")]
    path_key = str(src.path.resolve())
    if src.kind == "unknown":
        return [FileResult(src, None, "rejected", fingerprint=content, message=(
            f"{src.path}: cannot tell which table this file belongs to; name it after a table "
            "(e.g. xdr_voice.csv), give a --mapping file, or put PM files under pm/<vendor>/"))]
    try:
        choice = choose_dictionary(src, options["dictionaries"], options["vendor"])
    except (DictionaryError, IngestError) as err:
        return [FileResult(src, src.table, "rejected", message=str(err), fingerprint=content)]
    snapshot = src.kind == "mapped" or (src.table in lake.tables and lake.tables[src.table].is_snapshot)
    digest = load_key(content, mapping=options["mapping_key"] if src.kind == "mapped" else None,
                      dictionary=choice.key, as_of=options["as_of_key"] if snapshot else None)
    seen = txn.seen(digest)
    if digest in txn.sources or (seen and not options["reload"]):
        return [FileResult(src, src.table, "duplicate", message="same content already loaded",
                           fingerprint=digest, dictionary=choice.label)]
    previous = txn.previous_fingerprint(path_key)
    reloaded = bool(seen) and options["reload"]
    status = "replaced" if reloaded or (previous and previous != digest) else "loaded"
    if reloaded:
        note = f"reloaded: replaces the rows batch {seen['batch']} loaded"
    elif status == "replaced" and txn.seen(previous):
        note = f"replaces the content loaded in batch {txn.seen(previous)['batch']}"
    else:
        note = ""
    results: dict[str, FileResult] = {}
    pm_cells: set[str] = set()
    unmapped = _Unmapped(choice)
    mapped = MappingNote()
    repeats: dict[str, int] = {}  # earlier file -> rows of this one that measure the same again
    cells: list[pa.Table] = []
    measured: LoadedMeasurements = options["measured"]
    # What this file replaces is not its duplicate: the earlier content of its path, or itself
    # when reloaded.
    replaces = {fp for fp in (previous if previous != digest else None, digest if reloaded else None) if fp}
    measured.set_alive(replaces, False)
    me = measured.source(f"{src.path}")
    mark = txn.savepoint()
    try:
        for part in read_parts(src, mapping, options, lake.tables, choice):
            if part.table not in lake.tables:
                raise IngestError(f"{src.path}: table {part.table!r} is not a canonical table nor one "
                                  "defined in the workspace's sources/")
            data = inventory.key_cells(part.data) if src.kind in ("pm_xml", "pm_csv") else part.data
            c = conform(data, lake.tables[part.table], str(src.path))
            accepted, again = c.accepted, None
            if part.table == "pm_counters":
                repeated, reasons, counts = measured.check(accepted, me)
                for label, k in counts.items():
                    repeats[label] = repeats.get(label, 0) + k
                if repeated.any():
                    positions = np.setdiff1d(np.arange(data.num_rows), c.rejected_rows)[repeated]
                    reasons = _derived_reasons(accepted.filter(pa.array(repeated)), reasons, choice)
                    again = _Repeats(part.source_row_numbers()[positions], accepted.filter(pa.array(repeated)), reasons)
                    accepted = accepted.filter(pa.array(~repeated))
            txn.append(lake.tables[part.table], accepted, snapshot_date=options["as_of"], source=digest)
            if part.table == "pm_counters":
                measured.staged(accepted, me)
            _quarantine(txn, src, part, part.source_row_numbers()[c.rejected_rows], c, again)
            if part.table == "cells":
                cells.append(accepted)
            if part.table == "pm_counters":
                pm_cells.update(pc.unique(accepted.column("cell_id").drop_null()).to_pylist())
                unmapped.add(accepted)
                mapped = mapped + part.mapping if part.mapping is not None else mapped
            r = results.setdefault(part.table, FileResult(src, part.table, status, message=note,
                                                          fingerprint=digest, dictionary=choice.label))
            r.rows_read += part.rows_read
            r.rows_accepted += accepted.num_rows
            r.rows_quarantined += c.n_quarantined + len(part.rejects) + (again.rows.size if again else 0)
    except (IngestError, PMFileError, DictionaryError, SpecError) as err:
        return _undo(txn, mark, inventory, measured, me, replaces,
                     FileResult(src, src.table, "rejected", message=str(err), fingerprint=digest))
    except (pa.ArrowException, OSError, ValueError, UnicodeError, OverflowError) as err:
        return _undo(txn, mark, inventory, measured, me, replaces,
                     FileResult(src, src.table, "rejected", fingerprint=digest,
                                message=f"{src.path}: cannot be read ({str(err).splitlines()[0]})"))
    inventory.file_done(loaded=True)
    for table in cells:
        inventory.add(table)
    if "pm_counters" in results:
        pm = results["pm_counters"]
        pm.unmapped = unmapped.labels()
        pm.mapping = mapped
        unknown = _unknown_cells(pm_cells, inventory)
        pm.message = "; ".join(filter(None, [note, _repeats_note(repeats), _mapping_note(pm, mapped),
                                             *inventory.take_notes(), unknown]))
    read = sum(r.rows_read for r in results.values())
    if status == "replaced" and read and not any(r.rows_accepted for r in results.values()):
        # Every row of the new delivery was quarantined: it replaces nothing, the rows the
        # earlier delivery loaded stay (the bad rows are in quarantine, nothing is lost).
        measured.set_alive(replaces, True)
        for r in results.values():
            r.status = "loaded"
            r.message = "every row was quarantined, so the rows loaded from this path before are kept"
        txn.record_source(digest, path_key, {"tables": sorted(results), "content": content, "rows": read},
                          claim_path=False)
        return list(results.values())
    if reloaded:  # only now: a reload that fails part-way keeps the rows the earlier load committed
        txn.supersede(digest)
    txn.record_source(digest, path_key, {"tables": sorted(results), "content": content, "rows": read})
    return list(results.values()) or [FileResult(src, src.table, status, message="no records",
                                                 fingerprint=digest)]


def _undo(txn: Transaction, mark, inventory: CellInventory, measured: LoadedMeasurements, source: int,
          replaces: set[str], result: FileResult) -> list[FileResult]:
    """A file rejected part-way: nothing it staged stays, nor anything it was to replace goes."""
    txn.rollback_to(mark)
    inventory.file_done(loaded=False)
    measured.drop(source)
    measured.set_alive(replaces, True)
    return [result]


def _derived_reasons(rows: pa.Table, reasons: list[str], choice: DictionaryChoice) -> list[str]:
    """The repeat reasons of rows a dictionary sum or expr computed, saying that its terms must
    come in one file: a vendor that splits them over files (one per measurement type) gives two
    partial rows, the second of which looks like a second delivery (and cannot be told from one)."""
    if choice.dictionary is None:
        return reasons
    derived: dict[str, list] = {}  # canonical -> [(object classes or None, source names)]
    for canonical, _, source in choice.dictionary.entries():
        if source.kind != "rename":
            derived.setdefault(canonical, []).append((source.objects, source.source_names))
    if not derived:
        return reasons
    out = []
    for r, n, cls in zip(reasons, rows["counter_name"].to_pylist(), object_classes(rows["object_dn"]).to_pylist()):
        terms = [t for objects, names in derived.get(n, ()) if objects is None or cls in objects for t in names]
        out.append(r if not terms else f"{r}; {n} is computed from {', '.join(dict.fromkeys(terms))}: if the earlier "
                   "file held others of them than this one (an export split per measurement type), they must come "
                   "in one file")
    return out


@dataclass
class _Repeats:
    """Conformed pm_counters rows that measure what an earlier file (or row) already gave."""

    rows: np.ndarray  # source row numbers
    table: pa.Table
    reasons: list[str]


class _Unmapped:
    """Vendor counters a file's accepted rows still carry (no dictionary entry consumed them):
    by name, and by name and object class where the dictionary maps the name on other classes
    (an EUtranCellTDD counter of a dictionary written for EUtranCellFDD)."""

    def __init__(self, choice: DictionaryChoice):
        self.choice = choice
        self.names: set[str] = set()
        self.on: set[tuple[str, str]] = set()

    def add(self, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        names = pc.dictionary_encode(rows["counter_name"].combine_chunks())
        found = self.choice.unmapped(set(names.dictionary.to_pylist()))
        self.names |= found
        partly = sorted(found & self.choice.reads)
        if not partly:
            return
        at = pc.is_in(rows["counter_name"], value_set=pa.array(partly, pa.string()))
        hit = rows.filter(at).select(["counter_name", "object_dn"])
        pairs = hit.group_by(["counter_name", "object_dn"], use_threads=False).aggregate([])
        classes = object_classes(pairs["object_dn"].combine_chunks()).to_pylist()
        self.on |= {(n, c or "an object of no known class") for n, c in zip(pairs["counter_name"].to_pylist(), classes)}

    def labels(self) -> tuple[str, ...]:
        """Names no entry reads, and ``name on Class`` for names read on other classes only."""
        partly = {n for n, _ in self.on}
        return tuple(sorted([*(self.names - partly), *(f"{n} on {c}" for n, c in self.on)]))


def _repeats_note(repeats: dict[str, int]) -> str:
    """Rows not added because an earlier file (or row) gave the same measurement."""
    if not repeats:
        return ""
    parts = [f"{n:,} from {label}" for label, n in sorted(repeats.items(), key=lambda kv: -kv[1])]
    shown = ", ".join(parts[:3]) + (f" and {len(parts) - 3} more files" if len(parts) > 3 else "")
    return (f"{sum(repeats.values()):,} rows measure again what was already given ({shown}): they are quarantined, "
            "not added")


def _mapping_note(result: FileResult, note: MappingNote) -> str:
    """How the values read became rows, when a dictionary changed their number."""
    if not note.folded and not note.derived and not note.dropped:
        return ""
    parts = []
    if note.folded or note.derived:
        parts.append(f"the dictionary's sum and expr entries folded {_n(note.folded, 'value')} into "
                     f"{_n(note.derived, 'row')}")
    if note.dropped:
        names = sorted(note.dropped)
        shown = ", ".join(f"{n} ({note.dropped[n]:,})" for n in names[:5]) + (
            f" and {len(names) - 5} more" if len(names) > 5 else "")
        parts.append(f"{_n(sum(note.dropped.values()), 'value')} of counters the dictionary does not map were left "
                     f"out (keep_unmapped: false): {shown}")
    return (f"{_n(result.rows_read, 'value')} read: " + "; ".join(parts)
            + " (values read = rows accepted + quarantined + folded - derived + left out)")


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _cell_inventory(lake: Lake, txn: Transaction) -> CellInventory:
    """The committed cells snapshot, to key PM object DNs to cells."""
    inventory = CellInventory()
    for path in lake.paths(lake.files("cells", txn.manifest)):
        names = pq.read_schema(path).names
        wanted = [c for c in ("cell_id", "managed_element", "local_cell_id", "technology") if c in names]
        inventory.add(pq.read_table(path, columns=wanted))
    return inventory


def _unknown_cells(cells: set[str], inventory: CellInventory) -> str:
    unknown = sorted(c for c in cells if c not in inventory.cell_ids)
    if not unknown:
        return ""
    where = "the cells inventory" if inventory else "a cells inventory (none is loaded)"
    return (f"{len(unknown)} of {len(cells)} cells are not in {where}; their counters are kept under "
            f"derived keys such as {unknown[0]}: to key them to your cells, load the inventory (cells with "
            "managed_element and local_cell_id), then run opencem ingest --reload on these PM files")


def _set_aside(path: Path, reason: str, folder: Path) -> None:
    """Keep a copy of a rejected file with the reason next to it (the original stays put);
    two rejected files of one name in a batch keep both copies. Best effort: a file that
    cannot be copied (a FIFO, no permission) still has its reason written."""
    folder.mkdir(parents=True, exist_ok=True)
    target, n = folder / path.name, 1
    while target.exists() or target.with_name(target.name + ".reason.txt").exists():
        n += 1
        target = folder / f"{path.stem}.{n}{path.suffix}"
    if path.is_file():
        try:
            shutil.copy2(path, target)
        except OSError as err:
            reason += f" (no copy kept: {err.strerror or err})"
    # A file name that is not valid UTF-8 must not stop the batch: write it escaped.
    target.with_name(target.name + ".reason.txt").write_bytes(
        (reason + "\n").encode("utf-8", errors="backslashreplace"))


def _now_ms(n: int) -> pa.Array:
    now = int(datetime.now(UTC).timestamp() * 1000)
    return pa.array(np.full(n, now, np.int64)).cast(pa.timestamp("ms", tz="UTC"))


def _quarantine(txn: Transaction, src: SourceFile, part: Part, rows: np.ndarray, c,
                again: _Repeats | None = None) -> None:
    """Validation failures, the reader's unparseable records and measurements already loaded,
    one row each."""
    n_bad, rejects = c.n_quarantined, part.rejects
    n_again = again.table.num_rows if again is not None else 0
    n = n_bad + len(rejects) + n_again
    if n == 0:
        return
    repeated = again.table.to_pylist() if again is not None else []
    txn.append(QUARANTINE, pa.table({
        "ingested_at": _now_ms(n),
        "batch_id": [txn.batch] * n,
        "source_path": [os.path.abspath(src.path)] * n,
        "table_name": [part.table] * n,
        "row_number": np.r_[np.asarray(rows, np.int64), [r.row_number for r in rejects],
                            again.rows if again is not None else []].astype(np.int64),
        "field": c.fields + [r.field for r in rejects] + ["counter_name"] * n_again,
        "value": c.values + [r.value for r in rejects] + [r["counter_name"] for r in repeated],
        "reason": c.reasons + [r.reason for r in rejects] + (again.reasons if again is not None else []),
        "record_json": c.records_json + [r.record_text for r in rejects]
                       + [json.dumps(r, default=str) for r in repeated],
    }, schema=QUARANTINE.schema))


def _write_log(txn: Transaction, lake: Lake, report: IngestReport) -> None:
    files = report.files
    if not files:
        return
    txn.append(INGEST_LOG, pa.table({
        "ingested_at": _now_ms(len(files)),
        "batch_id": [txn.batch] * len(files),
        "source_path": [os.path.abspath(f.source.path) for f in files],
        "fingerprint": [f.fingerprint for f in files],
        "table_name": [f.table or "?" for f in files],
        "status": [f.status for f in files],
        "rows_read": [f.rows_read for f in files],
        "rows_accepted": [f.rows_accepted for f in files],
        "rows_quarantined": [f.rows_quarantined for f in files],
        "message": [f.message or None for f in files],
        "values_folded": [f.mapping.folded if f.mapping else 0 for f in files],
        "rows_derived": [f.mapping.derived if f.mapping else 0 for f in files],
        "values_left_out": [sum(f.mapping.dropped.values()) if f.mapping else 0 for f in files],
    }, schema=INGEST_LOG.schema))
