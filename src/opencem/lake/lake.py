"""The Parquet lake: ``<table>/date=YYYY-MM-DD/part-<batch>-<n>.parquet`` plus a manifest.

Readers see exactly the files listed in the committed manifest (``_manifest.json``), and a
commit is one ``os.replace`` of that file, so a batch becomes visible all at once or not at
all. Files of a batch are written to ``.staging/<batch>/`` first and moved into their
partitions just before the commit; anything an interrupted batch left behind (staging
folders, partition files the manifest does not list) is swept by the next writer.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import OpencemError
from ..schema import TABLES, Table

MANIFEST = "_manifest.json"
MS_PER_DAY = 86_400_000


class LakeError(OpencemError):
    """A lake operation that cannot go ahead, with a one-sentence reason."""


class LakeBusy(LakeError):
    """Another process holds the writer's lock: worth retrying later (its own exit code)."""

    exit_code = 75  # EX_TEMPFAIL: schedulers retry on it


@dataclass
class LakeFile:
    path: str  # relative to the lake root
    rows: int
    date: str
    batch: str
    source: str | None = None  # fingerprint of the source file the rows came from


@dataclass
class Manifest:
    version: int = 0
    tables: dict[str, list[LakeFile]] = field(default_factory=dict)
    sources: dict[str, dict] = field(default_factory=dict)  # content fingerprint -> what it loaded
    paths: dict[str, str] = field(default_factory=dict)  # source path -> fingerprint last loaded
    batches: list[dict] = field(default_factory=list)
    # Derived tables (indicator cubes): their columns and what inputs each day was computed
    # from, committed with the files so results and their bookkeeping never disagree.
    derived: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> Manifest:
        path = root / MANIFEST
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text())
            return cls(version=raw["version"],
                       tables={t: [LakeFile(**f) for f in files] for t, files in raw["tables"].items()},
                       sources=raw.get("sources", {}), paths=raw.get("paths", {}),
                       batches=raw.get("batches", []), derived=raw.get("derived", {}))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise LakeError(f"the lake is damaged: its manifest {path} cannot be read ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else 'unexpected content'}); restore it "
                            "from a backup (opencem never writes it in place: a commit replaces it whole)") from None

    def to_json(self) -> str:
        return json.dumps({
            "version": self.version,
            "tables": {t: [f.__dict__ for f in files] for t, files in sorted(self.tables.items())},
            "sources": self.sources,
            "paths": self.paths,
            "batches": self.batches,
            "derived": self.derived,
        }, indent=1)

    def files(self, table: str, snapshot: bool = False) -> list[LakeFile]:
        """Committed files of a table; of a snapshot table, only the newest date's files."""
        files = self.tables.get(table, [])
        if files and snapshot:
            newest = max(f.date for f in files)
            files = [f for f in files if f.date == newest]
        return files


def partition_days(table: pa.Table, spec: Table) -> np.ndarray:
    """UTC day number (days since 1970-01-01) of each row's event time."""
    ms = pc.cast(table.column(spec.time_column), pa.int64()).to_numpy(zero_copy_only=False)
    return np.floor_divide(ms, MS_PER_DAY)


def _dictionary_columns(spec: Table) -> bool | list[str]:
    """Columns worth a dictionary. Source readings repeat (rounded values, codes); computed
    indicator values hardly ever do, and trying on the hundred-odd measures of a cube table
    costs a quarter of its write time (measured on the demo's subscriber-day cube)."""
    if spec.domain != "indicators":
        return True
    return [f.name for f in spec.columns if f.name in spec.keys or pa.types.is_string(f.type)]


class Lake:
    """A lake rooted at a folder. Many readers, one writer at a time (a lock file)."""

    def __init__(self, root: Path, tables: dict[str, Table] | None = None):
        self.root = Path(root)
        self.tables = dict(TABLES if tables is None else tables)

    def manifest(self) -> Manifest:
        return Manifest.load(self.root)

    def files(self, table: str, manifest: Manifest | None = None) -> list[LakeFile]:
        """Files queries should read: all of an event table, the newest snapshot of a snapshot table."""
        manifest = manifest or self.manifest()
        return manifest.files(table, snapshot=self.tables[table].is_snapshot)

    def paths(self, files: list[LakeFile]) -> list[Path]:
        """Where committed files are. A file the manifest lists but the disk lacks (deleted or
        moved by hand) is reported here in one sentence, not deep inside an engine's reader."""
        paths = [self.root / f.path for f in files]
        missing = [f.path for f, p in zip(files, paths) if not p.is_file()]
        if missing:
            table = missing[0].split("/")[0]
            spec = self.tables.get(table)
            remedy = (f"recompute it with `opencem evaluate --full --cube {table}`"
                      if spec is not None and spec.domain == "indicators" else
                      "restore it from a backup, or load its source file again with `opencem ingest FILE --reload`")
            more = f" (and {len(missing) - 1} more file(s))" if len(missing) > 1 else ""
            raise LakeError(f"the lake is damaged: {missing[0]}{more}, listed in {self.root / MANIFEST}, "
                            f"is missing; {remedy}")
        return paths

    def readable(self) -> Iterator[tuple[str, Table, list[Path], int]]:
        """Every table as a query engine should see it: name, spec, its files (checked) and rows."""
        manifest = self.manifest()
        for name, spec in self.tables.items():
            files = self.files(name, manifest)
            yield name, spec, self.paths(files), sum(f.rows for f in files)

    def rows(self, table: str, manifest: Manifest | None = None) -> int:
        return sum(f.rows for f in self.files(table, manifest))

    @contextmanager
    def transaction(self, dry_run: bool = False, keep: tuple[str, ...] = ()):
        """Write files, then commit them together; an exception leaves nothing visible.

        ``dry_run`` goes through the same steps without writing or committing anything (and
        without the writer's lock, so a check never waits for a load); rows staged for the
        tables in ``keep`` are held in memory (``txn.kept``) for the caller to show."""
        if dry_run:
            yield Transaction(self, self.manifest(), dry_run=True, keep=keep)
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LakeBusy(f"another opencem process is writing to {self.root}; try again "
                               "when it has finished") from None
            manifest = self.manifest()
            self._sweep(manifest)
            txn = Transaction(self, manifest)
            try:
                yield txn
                txn.commit()
            finally:
                shutil.rmtree(txn.staging, ignore_errors=True)

    def _sweep(self, manifest: Manifest) -> None:
        """Remove leftovers of interrupted batches: staging folders and unlisted parts."""
        shutil.rmtree(self.root / ".staging", ignore_errors=True)
        listed = {f.path for files in manifest.tables.values() for f in files}
        for part in self.root.glob("*/date=*/part-*.parquet"):
            if str(part.relative_to(self.root)) not in listed:
                part.unlink()


class Transaction:
    def __init__(self, lake: Lake, manifest: Manifest, dry_run: bool = False, keep: tuple[str, ...] = ()):
        self.lake = lake
        self.manifest = manifest
        self.dry_run = dry_run
        self.keep = keep
        self.kept: dict[str, list[pa.Table]] = {}
        self.batch = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        self.staging = lake.root / ".staging" / self.batch
        self.staged: list[tuple[Path, LakeFile]] = []
        self.replaced: list[tuple[str, str]] = []  # (table, date) snapshot partitions replaced
        self.sources: dict[str, dict] = {}
        self.superseded: set[str] = set()  # fingerprints whose rows a changed file replaces
        self.paths: dict[str, str] = {}
        self.derived_changed = False

    def seen(self, fingerprint: str) -> dict | None:
        return self.manifest.sources.get(fingerprint) or self.sources.get(fingerprint)

    def append(self, spec: Table, table: pa.Table, snapshot_date: date | None = None,
               source: str | None = None) -> int:
        """Stage rows of a canonical table, split into date partitions. Snapshot tables
        replace the partition of ``snapshot_date``. ``source`` is the fingerprint of the file
        the rows come from (its lineage). Returns rows staged."""
        if table.num_rows == 0:
            return 0
        table = table.select(spec.schema.names)
        if spec.is_snapshot:
            if snapshot_date is None:
                raise LakeError(f"table {spec.name} is a snapshot and needs an as-of date")
            self.replaced.append((spec.name, snapshot_date.isoformat()))
            self._stage(spec, snapshot_date.isoformat(), table, source)
            return table.num_rows
        days = partition_days(table, spec)
        if np.any(days[1:] < days[:-1]):  # sources are usually time-ordered: skip the copy then
            order = np.argsort(days, kind="stable")
            days = days[order]
            table = table.take(pa.array(order))
        bounds = np.flatnonzero(np.diff(days)) + 1
        starts, ends = np.r_[0, bounds], np.r_[bounds, len(days)]
        for s, e in zip(starts, ends):
            day = (np.datetime64(0, "D") + int(days[s])).astype(str)
            self._stage(spec, day, table.slice(s, e - s), source)
        return table.num_rows

    def _stage(self, spec: Table, day: str, table: pa.Table, source: str | None) -> None:
        k = len(self.staged)
        rel = f"{spec.name}/date={day}/part-{self.batch}-{k:05d}.parquet"
        tmp = self.staging / rel
        if self.dry_run:
            if spec.name in self.keep:
                self.kept.setdefault(spec.name, []).append(table)
            self.staged.append((tmp, LakeFile(rel, table.num_rows, day, self.batch, source)))
            return
        tmp.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp, compression="zstd", row_group_size=1_000_000,
                       use_dictionary=_dictionary_columns(spec))
        self.staged.append((tmp, LakeFile(rel, table.num_rows, day, self.batch, source)))

    def replace_days(self, name: str, days: list[str]) -> None:
        """Drop the committed files of these date partitions of ``name`` at commit (results
        recomputed for those days replace them, even where a day now has no rows)."""
        self.replaced += [(name, day) for day in days]

    def savepoint(self) -> tuple[int, int, dict[str, int]]:
        return len(self.staged), len(self.replaced), {k: len(v) for k, v in self.kept.items()}

    def rollback_to(self, mark: tuple[int, int, dict[str, int]]) -> None:
        """Forget what was staged since ``savepoint()`` (a file found broken part-way)."""
        staged, replaced, kept = mark
        for tmp, _lf in self.staged[staged:]:
            tmp.unlink(missing_ok=True)
        del self.staged[staged:]
        del self.replaced[replaced:]
        for name, tables in self.kept.items():
            del tables[kept.get(name, 0):]

    def supersede(self, fingerprint: str) -> None:
        """Drop, at commit, the rows an earlier load with this fingerprint committed (a reload
        of the same file replaces them with the rows staged now)."""
        self.superseded.add(fingerprint)

    def record_source(self, fingerprint: str, path: str, info: dict, claim_path: bool = True) -> None:
        """Remember a loaded file by content and by path; a new content at a known path
        supersedes the rows the old content loaded. ``claim_path=False`` remembers the
        content only (it is not loaded twice) and leaves the path's earlier rows in place."""
        self.sources[fingerprint] = {**info, "path": path, "batch": self.batch}
        if not claim_path:
            return
        previous = self.paths.get(path) or self.manifest.paths.get(path)
        if previous and previous != fingerprint:
            self.superseded.add(previous)
        self.paths[path] = fingerprint

    def previous_fingerprint(self, path: str) -> str | None:
        return self.paths.get(path) or self.manifest.paths.get(path)

    def commit(self) -> None:
        if self.dry_run:
            return
        if not self.staged and not self.sources and not self.replaced and not self.derived_changed:
            return
        m = self.manifest
        for table, day in set(self.replaced):
            m.tables[table] = [f for f in m.tables.get(table, []) if f.date != day]
        if self.superseded:
            m.tables = {t: [f for f in files if f.source not in self.superseded]
                        for t, files in m.tables.items()}
        for tmp, lf in self.staged:
            final = self.lake.root / lf.path
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            m.tables.setdefault(lf.path.split("/")[0], []).append(lf)
        m.sources.update(self.sources)
        m.paths.update(self.paths)
        m.batches.append({"batch": self.batch, "committed_at": datetime.now(UTC).isoformat(),
                          "files": len(self.staged), "rows": sum(lf.rows for _, lf in self.staged)})
        m.version += 1
        tmp = self.lake.root / (MANIFEST + ".tmp")
        tmp.write_text(m.to_json())
        with open(tmp) as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.lake.root / MANIFEST)  # the commit point
        # Files of replaced snapshot partitions are now unlisted; the next writer sweeps them.
