"""Exactly-once effect: SIGKILL the stream at random points, restart it, and its outputs, counts
and late records equal those of an uninterrupted run."""

from __future__ import annotations

import random
import signal
import subprocess
import time

import duckdb

from opencem.indicators.catalog import load_catalog
from opencem.schema import TABLES
from opencem.stream import StreamConfig, run_stream
from opencem.stream.landing import LandingSource

from .conftest import OPENCEM

CUBE, KPIS, LATENESS_S, MAX_RECORDS = "cube_cell_15min", ["call_drop_pct"], 300, 400


def everything(path) -> dict:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {t: con.sql(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                for t in (CUBE, "counts", "late_records", "watermarks", "consumed")}
    finally:
        con.close()


def test_sigkill_and_restart_equal_an_uninterrupted_run(day, tmp_path):
    land = day / "land"
    reference = tmp_path / "reference.duckdb"
    run_stream(reference, LandingSource(land, TABLES), load_catalog(TABLES, []), TABLES,
               StreamConfig(lateness_s=LATENESS_S, cubes=[CUBE], kpis=KPIS, max_records=MAX_RECORDS,
                            until_finished=True, poll_s=0.01))
    state = tmp_path / "killed.duckdb"
    command = [*OPENCEM, "--workspace", str(tmp_path / "ws"), "stream", "run", "--from", str(land), "--state", str(state),
               "--cube", CUBE, *[a for k in KPIS for a in ("--kpi", k)], "--lateness", f"{LATENESS_S}s",
               "--max-records", str(MAX_RECORDS), "--until-finished"]
    rng = random.Random(12)
    kills = 0
    for _ in range(3):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(1.3, 2.6))  # the command takes about 1.2 s to import and open
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills >= 2
    finished = subprocess.run(command, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    got, expected = everything(state), everything(reference)
    assert len(expected[CUBE]) > 100 and expected["late_records"], "the day should have windows and late records"
    assert got == expected
