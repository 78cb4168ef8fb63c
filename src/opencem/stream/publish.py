"""Window outputs readable while the stream runs.

DuckDB lets one process open a database file for writing and no other process read it
meanwhile, so the state itself cannot be read during a run. After its commits the runner
therefore publishes what changed, next to the state file (``WORKSPACE/stream/<name>.duckdb``)::

    <name>.outputs/.opencem-stream-outputs   marker: the folder is the stream's to replace
    <name>.outputs/status.json               counts, evictions and watermark per source; the run
    <name>.outputs/<cube table>/<YYYY-MM-DD>/<HH>.parquet   every window row of that cube and UTC hour

A file is written under a hidden name and renamed over the old one, so a reader sees a whole
file of one commit or the one before, never half of one. The (cube, hour) pairs a batch changed
are recorded in the state (``unpublished``) inside the batch's transaction and deleted once
written, so a crash between the commit and the publication is made good on restart.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .sources import StreamError
from .state import STATUS_SQL, StreamState, q

MARKER = ".opencem-stream-outputs"
HOUR_MS = 3_600_000


def outputs_folder(state_path: Path) -> Path:
    """Where a state's outputs are published: beside it, ``<name>.outputs`` for ``<name>.duckdb``."""
    state_path = Path(state_path)
    return state_path.with_name(state_path.name.removesuffix(".duckdb") + ".outputs")


def remove_outputs(folder: Path) -> None:
    """Delete a published folder (``--reset``), only if a stream made it."""
    if (folder / MARKER).is_file():
        shutil.rmtree(folder)


class Publisher:
    def __init__(self, folder: Path, every_s: float = 1.0):
        folder = Path(folder)
        if folder.exists() and not (folder / MARKER).is_file() and (not folder.is_dir() or any(folder.iterdir())):
            raise StreamError(f"{folder} exists and is not a stream's outputs folder (no {MARKER}); move it away or "
                              "give another --state")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARKER).touch()
        self.folder, self.every_s = folder, every_s
        self.last = float("-inf")
        self.files = 0
        self.dirty = False  # a batch marked pairs that are not written yet

    def mark(self, state: StreamState, spans: dict[str, tuple[int, set[int]]]) -> None:
        """Inside a batch's transaction: the (cube, hour) pairs its evaluated spans touch."""
        cubes, hours = [], []
        for table, (span_s, numbers) in spans.items():
            start = np.array(sorted(numbers), np.int64) * span_s * 1000
            first, last = start // HOUR_MS, (start + span_s * 1000 - 1) // HOUR_MS
            touched = np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(first, last)])) if len(start) else []
            cubes += [table] * len(touched)
            hours += list(touched)
        if cubes:
            self.dirty = True
            state.con.register("_touched", pa.table({"cube": pa.array(cubes, pa.string()), "hour": pa.array(hours, pa.int64())}))
            state.con.execute("INSERT INTO unpublished SELECT DISTINCT cube, hour FROM _touched ON CONFLICT DO NOTHING")
            state.con.unregister("_touched")

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every_s

    def publish(self, state: StreamState, report, running: bool) -> int:
        """Write every (cube, hour) file pending and status.json. Returns the files written."""
        c = state.con
        pending = c.execute("SELECT cube, hour FROM unpublished ORDER BY 1, 2").fetchall()
        written = 0
        by_cube: dict[str, list[int]] = {}
        for cube, hour in pending:
            by_cube.setdefault(cube, []).append(hour)
        for cube, hours in by_cube.items():
            if not c.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [cube]).fetchall()[0][0]:
                continue
            c.register("_hours", pa.table({"h": pa.array(hours, pa.int64())}))
            rows = c.sql(f"SELECT *, epoch_ms(period_start) // {HOUR_MS} AS _hour FROM {q(cube)} "
                         "WHERE epoch_ms(period_start) // 3600000 IN (SELECT h FROM _hours) ORDER BY ALL").to_arrow_table()
            c.unregister("_hours")
            hour_of = rows.column("_hour").to_numpy()
            rows = rows.drop_columns(["_hour"])
            bounds = np.searchsorted(hour_of, np.array(hours, np.int64), side="left")
            ends = np.searchsorted(hour_of, np.array(hours, np.int64), side="right")
            for hour, a, b in zip(hours, bounds, ends):
                self._write(self.folder / cube / _hour_path(hour), rows.slice(a, b - a))
                written += 1
        if pending:
            c.execute("BEGIN TRANSACTION")
            c.register("_done", pa.table({"cube": [p[0] for p in pending], "hour": pa.array([p[1] for p in pending], pa.int64())}))
            c.execute("DELETE FROM unpublished u WHERE EXISTS (SELECT 1 FROM _done d WHERE d.cube = u.cube AND d.hour = u.hour)")
            c.unregister("_done")
            c.execute("COMMIT")
        self._status(state, report, running)
        self.dirty = False
        self.files += written
        self.last = time.monotonic()
        return written

    def _write(self, path: Path, rows: pa.Table) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        pq.write_table(rows, tmp)
        os.replace(tmp, path)

    def _status(self, state: StreamState, report, running: bool) -> None:
        sources = state.con.sql(STATUS_SQL).to_arrow_table()
        status = {
            "state": str(state.path), "running": running, "pid": os.getpid(),
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "batches": report.batches, "records": report.records, "kept_records": report.kept,
            "cubes": report.cubes, "sources": sources.to_pylist(),
        }
        path = self.folder / "status.json"
        tmp = path.with_name(f".status.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(status, default=str, indent=1))
        os.replace(tmp, path)


def _hour_path(hour: int) -> Path:
    t = datetime.fromtimestamp(hour * 3600, UTC)
    return Path(t.strftime("%Y-%m-%d")) / f"{t.hour:02d}.parquet"


def read_status(folder: Path) -> dict:
    """The status a running (or stopped) stream last published."""
    try:
        return json.loads((Path(folder) / "status.json").read_text())
    except (OSError, ValueError):
        raise StreamError(f"no published stream status in {folder}; run `opencem stream run` first or give --state") from None


def read_windows(folder: Path, cube: str, last: int | None = None) -> pa.Table:
    """The published rows of ``cube``, the ``last`` windows only when given, in window order."""
    for attempt in range(3):  # a file replaced or a folder made while it is read: read again
        files = sorted((Path(folder) / cube).glob("*/*.parquet"))
        if not files:
            known = sorted(p.name for p in Path(folder).iterdir() if p.is_dir()) if Path(folder).is_dir() else []
            raise StreamError(f"no published windows of {cube} in {folder}"
                              + (f"; published: {', '.join(known)}" if known else ""))
        try:
            table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
            break
        except (OSError, pa.ArrowInvalid):
            if attempt == 2:
                raise
            time.sleep(0.05)
    if last is not None and table.num_rows:
        windows = pc.unique(table.column("period_start")).sort(order="descending")[:last]
        table = table.filter(pc.is_in(table.column("period_start"), windows))
    return table.sort_by([(n, "ascending") for n in table.column_names if n == "period_start"])

