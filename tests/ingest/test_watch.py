"""The landing-zone watcher: settled files only, each loaded exactly once, across restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from opencem.engines.duckdb import connect
from opencem.ingest import watch as watch_mod
from opencem.lake import Lake
from opencem.ingest.watch import watch


def drop(folder: Path, name: str, table: pa.Table) -> Path:
    """Deliver a file the way a probe should: write elsewhere, then rename into place."""
    tmp = folder / f".{name}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, folder / name)
    return folder / name


def count(lake: Lake, sql: str) -> int:
    return connect(lake).execute(sql).fetchone()[0]


@pytest.fixture
def surveys(sim_dir) -> pa.Table:
    return pq.read_table(sim_dir / "tables" / "surveys.parquet")


def test_files_load_once_and_move_to_done(tmp_path, surveys):
    landing = tmp_path / "landing"
    landing.mkdir()
    for k in range(3):
        drop(landing, f"surveys_{k}.parquet", surveys.slice(k * 20, 20))
    (landing / "surveys_9.parquet.part").write_bytes(b"half written")
    lake = Lake(tmp_path / "lake")
    stats = watch(lake, landing, interval_s=0.01, max_scans=3)
    assert stats.loaded == 3 and stats.rows == 60
    assert sorted(p.name for p in (landing / ".done").iterdir()) == [f"surveys_{k}.parquet" for k in range(3)]
    assert (landing / "surveys_9.parquet.part").exists()  # never taken
    # The same content delivered again is recognised and adds nothing.
    drop(landing, "surveys_0_again.parquet", surveys.slice(0, 20))
    stats = watch(lake, landing, interval_s=0.01, max_scans=2)
    assert stats.duplicates == 1 and count(lake, "SELECT count(*) FROM surveys") == 60


def test_a_file_still_growing_is_left_for_a_later_scan(tmp_path, surveys):
    landing = tmp_path / "landing"
    landing.mkdir()
    path = landing / "surveys.parquet"
    path.write_bytes(b"PAR1")  # a writer has just started
    calls = []

    def keep_writing() -> bool:
        calls.append(1)
        if len(calls) == 2:  # asked right after the first scan: the writer is still going
            pq.write_table(surveys.slice(0, 5), path)
        return False

    stats = watch(Lake(tmp_path / "lake"), landing, interval_s=0.01, max_scans=2, stop=keep_writing)
    assert stats.loaded == 0  # not settled yet
    stats = watch(Lake(tmp_path / "lake"), landing, interval_s=0.01, max_scans=2)
    assert stats.loaded == 1 and stats.rows == 5


def test_unreadable_files_go_to_rejected_with_a_reason(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "notes.parquet").write_bytes(b"garbage")  # not a table name either
    (landing / "surveys.parquet").write_bytes(b"PAR1garbage")
    stats = watch(Lake(tmp_path / "lake"), landing, interval_s=0.01, max_scans=2)
    assert stats.rejected == 2
    reasons = {p.name: p.read_text() for p in (landing / ".rejected").glob("*.reason.txt")}
    assert "cannot be read" in reasons["surveys.parquet.reason.txt"]
    assert "cannot tell which table" in reasons["notes.parquet.reason.txt"]


def test_killed_between_commit_and_move_the_restart_loads_nothing_twice(tmp_path, surveys, monkeypatch):
    landing = tmp_path / "landing"
    landing.mkdir()
    drop(landing, "surveys.parquet", surveys.slice(0, 30))
    lake = Lake(tmp_path / "lake")

    def crash(path, folder):
        raise KeyboardInterrupt  # the process dies right after the commit

    monkeypatch.setattr(watch_mod, "_move", crash)
    with pytest.raises(KeyboardInterrupt):
        watch(lake, landing, interval_s=0.01, max_scans=2)
    monkeypatch.undo()
    assert (landing / "surveys.parquet").exists()
    stats = watch(lake, landing, interval_s=0.01, max_scans=2)
    assert stats.duplicates == 1 and stats.loaded == 0
    assert count(lake, "SELECT count(*) FROM surveys") == 30
    assert (landing / ".done" / "surveys.parquet").exists()


WATCHER = """
import sys
from pathlib import Path
from opencem.lake import Lake
from opencem.ingest.watch import watch
watch(Lake(Path(sys.argv[1])), Path(sys.argv[2]), interval_s=0.02,
      on_file=lambda p, r: print("took", p.name, flush=True))
"""


def test_sigkill_and_restart_while_files_keep_arriving(tmp_path, surveys):
    landing, lake_dir = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    n_files, per_file = 12, 10
    expected = 0
    procs = []
    for round_ in range(3):  # start, kill -9 mid-stream, restart, ...
        proc = subprocess.Popen([sys.executable, "-c", WATCHER, str(lake_dir), str(landing)],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        for k in range(round_ * 4, round_ * 4 + 4):
            drop(landing, f"surveys_{k:02d}.parquet", surveys.slice(k * per_file, per_file))
            expected += per_file
            time.sleep(0.03)
        proc.stdout.readline()  # at least one file taken in this round
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    stats = watch(Lake(lake_dir), landing, interval_s=0.01, max_scans=3)  # drain what is left
    lake = Lake(lake_dir)
    assert count(lake, "SELECT count(*) FROM surveys") == expected == n_files * per_file
    assert count(lake, "SELECT count(DISTINCT survey_id) FROM surveys") == expected
    assert sorted(p.name for p in (landing / ".done").iterdir()) == [f"surveys_{k:02d}.parquet"
                                                                      for k in range(n_files)]
    loaded = count(lake, "SELECT count(*) FROM ingest_log WHERE status = 'loaded'")
    assert loaded == n_files
    assert stats.rejected == 0


def test_a_busy_lake_is_retried_not_fatal(tmp_path, surveys):
    landing = tmp_path / "landing"
    landing.mkdir()
    drop(landing, "surveys.parquet", surveys.slice(0, 7))
    lake = Lake(tmp_path / "lake")
    with lake.transaction():  # another writer holds the lake
        stats = watch(lake, landing, interval_s=0.01, max_scans=2)
    assert stats.loaded == 0 and (landing / "surveys.parquet").exists()
    stats = watch(lake, landing, interval_s=0.01, max_scans=2)
    assert stats.loaded == 1 and count(lake, "SELECT count(*) FROM surveys") == 7
