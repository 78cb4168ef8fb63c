"""Window outputs readable while the stream runs: `opencem stream show` and `opencem stream
status` in other processes during a real run, published files equal to the state, and what a
failure left unpublished made good on restart."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import duckdb
import pytest

from opencem.indicators.catalog import load_catalog
from opencem.schema import TABLES
from opencem.stream import StreamConfig, run_stream
from opencem.stream.landing import LandingSource
from opencem.stream.publish import outputs_folder, read_windows

from .conftest import OPENCEM
from .test_semantics import CUBE, KPIS


def state_rows(path) -> list:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(f"SELECT * FROM {CUBE} ORDER BY ALL").fetchall()
    finally:
        con.close()


def published_rows(path) -> list:
    table = read_windows(outputs_folder(path), CUBE)
    con = duckdb.connect()
    con.register("t", table)
    return con.sql("SELECT * FROM t ORDER BY ALL").fetchall()


def test_show_and_status_work_while_the_stream_runs(day, tmp_path):
    land = tmp_path / "land"
    shutil.copytree(day / "land", land)
    manifest = json.loads((land / "manifest.json").read_text())
    (land / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))  # the feed goes on
    state = tmp_path / "s.duckdb"
    ws = ["--workspace", str(tmp_path / "ws")]
    process = subprocess.Popen([*OPENCEM, *ws, "stream", "run", "--from", str(land), "--state", str(state), "--cube", CUBE,
                                "--kpi", KPIS[0], "--until-finished", "--max-records", "6000"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        status_file = tmp_path / "s.outputs" / "status.json"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until everything landed so far is committed and published
            status = json.loads(status_file.read_text()) if status_file.is_file() else {}
            if any(s["source"] == "xdr_voice" and s["accepted"] > 0 for s in status.get("sources", [])):
                break
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.2)
        else:
            pytest.fail("the stream published nothing")
        with pytest.raises(duckdb.IOException):  # the state itself is locked by the writer
            duckdb.connect(str(state), read_only=True)
        shown = subprocess.run([*OPENCEM, *ws, "stream", "show", "--state", str(state), "--cube", CUBE, "--last", "2",
                                "--format", "json"], capture_output=True, text=True)
        assert shown.returncode == 0, shown.stderr
        rows = json.loads(shown.stdout)
        assert rows and len({r["period_start"] for r in rows}) == 2 and "call_drop_pct" in rows[0]
        listed = subprocess.run([*OPENCEM, *ws, "stream", "status", "--state", str(state), "--format", "json"],
                                capture_output=True, text=True)
        assert listed.returncode == 0, listed.stderr
        voice = [r for r in json.loads(listed.stdout) if r["source"] == "xdr_voice"][0]
        assert voice["accepted"] > 0 and voice["watermark"]
        assert process.poll() is None  # all of it while the stream runs
        (land / "manifest.json").write_text(json.dumps({**manifest, "complete": True}))
        assert process.wait(60) == 0, process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert published_rows(state) == state_rows(state)
    assert json.loads((tmp_path / "s.outputs" / "status.json").read_text())["running"] is False


def test_what_a_failure_left_unpublished_is_published_on_restart(day, tmp_path):
    state = tmp_path / "s.duckdb"
    config = StreamConfig(lateness_s=3600, cubes=[CUBE], kpis=KPIS, max_records=4000, until_finished=True, poll_s=0.01,
                          publish_s=3600)  # published when it starts, then not again before it stops
    seen = []

    def fail_on_the_third(changes) -> None:
        seen.append(1)
        if len(seen) == 3:
            raise RuntimeError("injected failure in the third batch")

    with pytest.raises(RuntimeError):
        run_stream(state, LandingSource(day / "land", TABLES), load_catalog(TABLES, []), TABLES, config,
                   on_batch=fail_on_the_third)
    assert not list((tmp_path / "s.outputs" / CUBE).glob("*/*.parquet"))  # two batches committed, none published
    con = duckdb.connect(str(state), read_only=True)
    assert con.sql("SELECT count(*) FROM unpublished").fetchall()[0][0] > 0
    con.close()
    run_stream(state, LandingSource(day / "land", TABLES), load_catalog(TABLES, []), TABLES, config)
    assert published_rows(state) == state_rows(state)
    assert len(state_rows(state)) > 100
