"""The output folder of a Spark stream (``opencem stream spark --out DIR``): what each micro-batch
wrote, laid out so that a batch run again after a crash replaces its own files and never adds
to them.

    DIR/meta.json                         settings and definition versions the folder was started with
    DIR/batches/<batch>.json              the committed batch-id log: written last, atomically; counts
                                          per source, watermarks after the batch, PM load keys, spans
    DIR/records/b<batch>/table=<t>/span=<n>/  the copies the batch kept (new ids, fuller copies), Parquet
    DIR/late/b<batch>/                    its records late past the allowed lateness (late_records)
    DIR/snapshots/<table>/b<batch>.parquet  a snapshot table (cells, subscribers) the batch carried
    DIR/rejected/b<batch>.parquet         PM rows and files that could not be read or validated
    DIR/cubes/<cube>/<version>/<span>.parquet  the window rows of one span at one definition version
    DIR/onsets/b<batch>.parquet           the per-subscriber counter's onset changes of its batch
    DIR/checkpoint/{cubes,onsets}/        Spark's checkpoints (unless --checkpoint puts them elsewhere)

A batch's files are named by its batch id, so a re-run overwrites them; a batch whose log entry
exists is done and is skipped when Spark offers it again (its checkpoint commit came after ours).
Readers take records only from committed batches (and the one being run). The folder must be
local to the driver (the atomic renames are POSIX ones).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .sources import StreamError

META = "meta.json"


def write_atomically(path: Path, data: bytes) -> None:
    """``data`` at ``path`` whole or not at all (hidden temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_parquet(path: Path, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    write_atomically(path, sink.getvalue().to_pybytes())


def batch_name(batch_id: int) -> str:
    return f"b{batch_id:010d}"


class SparkStreamStore:
    """One Spark stream's output folder (see the module docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock = None

    # -- the folder as a whole -----------------------------------------------------------
    def open(self, settings: dict) -> None:
        """Take the folder (one job at a time) and check it was started with ``settings``."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.root / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise StreamError(f"another opencem stream spark job is writing {self.root}; stop it first "
                              "or give another --out") from None
        meta = self.root / META
        if not meta.exists():
            write_atomically(meta, json.dumps(settings, indent=2, sort_keys=True).encode())
            return
        kept = json.loads(meta.read_text())
        if kept != settings:
            changed = sorted(k for k in set(kept) | set(settings) if kept.get(k) != settings.get(k))
            raise StreamError(f"{self.root} was started with other {', '.join(changed)} (or other definitions); "
                              "give the same options again, or another --out")

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def settings(self) -> dict:
        return json.loads((self.root / META).read_text())

    # -- the committed batch-id log ------------------------------------------------------
    def _log(self, batch_id: int) -> Path:
        return self.root / "batches" / f"{batch_name(batch_id)}.json"

    def committed(self) -> list[int]:
        folder = self.root / "batches"
        if not folder.is_dir():
            return []
        return sorted(int(p.stem[1:]) for p in folder.glob("b*.json"))

    def is_committed(self, batch_id: int) -> bool:
        return self._log(batch_id).exists()

    def entry(self, batch_id: int) -> dict:
        return json.loads(self._log(batch_id).read_text())

    def last_entry(self, before: int) -> dict | None:
        """The log entry of the latest committed batch before ``before``."""
        earlier = [b for b in self.committed() if b < before]
        return self.entry(earlier[-1]) if earlier else None

    def commit(self, batch_id: int, entry: dict) -> None:
        write_atomically(self._log(batch_id), json.dumps({"batch": batch_id, **entry}, sort_keys=True).encode())

    # -- per-batch files -----------------------------------------------------------------
    def records_dir(self, batch_id: int) -> Path:
        """The batch's kept copies, partitioned ``table=<name>/span=<n>``."""
        return self.root / "records" / batch_name(batch_id)

    def late_dir(self, batch_id: int) -> Path:
        return self.root / "late" / batch_name(batch_id)

    def _batch_dirs(self, kind: str, before: int, also: int | None) -> list[Path]:
        """The folders of ``kind`` of the committed batches before ``before``, and of batch ``also``
        (the one being run); never a crashed run's leftovers."""
        folder = self.root / kind
        if not folder.is_dir():
            return []
        done = set(self.committed())
        out = []
        for batch in sorted(folder.iterdir()):
            if batch.name.startswith("b") and batch.is_dir():
                bid = int(batch.name[1:])
                if (bid < before and bid in done) or bid == also:
                    out.append(batch)
        return out

    def record_files(self, table: str, before: int, spans: set[int], also: int | None = None) -> list[Path]:
        out = []
        for batch in self._batch_dirs("records", before, also):
            for s in sorted(spans):
                out += sorted((batch / f"table={table}" / f"span={s}").glob("part-*.parquet"))
        return out

    def late_files(self, before: int, also: int | None = None) -> list[Path]:
        return [f for batch in self._batch_dirs("late", before, also) for f in sorted(batch.glob("part-*.parquet"))]

    def write_snapshot(self, table: str, batch_id: int, rows: pa.Table) -> None:
        write_parquet(self.root / "snapshots" / table / f"{batch_name(batch_id)}.parquet", rows)

    def snapshot(self, table: str, upto: int) -> pa.Table | None:
        """The latest snapshot of ``table`` the stream carried, up to batch ``upto``."""
        folder = self.root / "snapshots" / table
        if not folder.is_dir():
            return None
        done = set(self.committed()) | {upto}
        files = sorted(p for p in folder.glob("b*.parquet") if int(p.stem[1:]) in done and int(p.stem[1:]) <= upto)
        return pq.read_table(files[-1]) if files else None

    def write_rejected(self, batch_id: int, rows: pa.Table) -> None:
        write_parquet(self.root / "rejected" / f"{batch_name(batch_id)}.parquet", rows)

    # -- window outputs ------------------------------------------------------------------
    def cube_file(self, table: str, version: str, span: int) -> Path:
        return self.root / "cubes" / table / version / f"span={span}.parquet"

    def windows(self, table: str, version: str) -> pa.Table | None:
        """Every span's rows of a cube at a definition version (None: nothing written yet)."""
        folder = self.root / "cubes" / table / version
        files = sorted(folder.glob("span=*.parquet")) if folder.is_dir() else []
        if not files:
            return None
        return pa.concat_tables([pq.read_table(f) for f in files])

    def onset_file(self, batch_id: int) -> Path:
        return self.root / "onsets" / f"{batch_name(batch_id)}.parquet"

    def onset_files(self) -> list[Path]:
        folder = self.root / "onsets"
        return sorted(folder.glob("b*.parquet")) if folder.is_dir() else []
