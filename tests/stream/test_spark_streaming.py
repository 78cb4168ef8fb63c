"""The stream on Spark Structured Streaming (local mode) over a replayed simulated day: its
windows equal `opencem evaluate`'s and the DuckDB stream's, window by window, in every streamed
cube column; a restart after SIGKILL mid-batch gives the same outputs, counts and late records;
the per-subscriber onsets of the stateful counter equal a DuckDB window query over the day."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from opencem.engines.duckdb import connect
from opencem.indicators.catalog import load_catalog
from opencem.stream import StreamConfig, StreamError, run_stream
from opencem.stream.landing import LandingSource
from opencem.workspace import Workspace
from tests.conftest import spark_or_skip

from .conftest import OPENCEM, STREAMED

DIMENSIONS = ("cell_id", "city", "program_source", "cdn_node")
CHEAP = ["cube_program_source_15min", "cube_cdn_node_15min"]  # xdr_video only: seconds per batch on Spark
# Poor calls: 56 onsets of 2 within an hour among the day's 1,000 subscribers.
POOR_CALL = "NOT setup_success OR dropped OR packet_loss_pct > 1"
AT_LEAST, WITHIN_S = 2, 3600
WEEK = 7 * 86_400


@pytest.fixture(scope="module")
def spark():
    return spark_or_skip()


def reference_onsets(con) -> list[tuple]:
    """The onsets as the DuckDB rule engine computes them: a window function over the day."""
    return con.sql(f"""
        WITH m AS (SELECT subscriber_id, call_id, start_time FROM xdr_voice WHERE {POOR_CALL}),
        c AS (SELECT *, count(*) OVER (PARTITION BY subscriber_id ORDER BY start_time
                                       RANGE BETWEEN INTERVAL {WITHIN_S} SECONDS PRECEDING AND CURRENT ROW) AS n FROM m),
        l AS (SELECT *, lag(n) OVER (PARTITION BY subscriber_id ORDER BY start_time, call_id) AS previous FROM c)
        SELECT subscriber_id, call_id, n FROM l WHERE n >= {AT_LEAST} AND (previous IS NULL OR previous < {AT_LEAST})
        ORDER BY ALL""").fetchall()


def spark_onsets(out: Path) -> list[tuple]:
    from opencem.stream.spark_counters import read_onsets
    from opencem.stream.spark_store import SparkStreamStore

    got = read_onsets(SparkStreamStore(out).onset_files())
    return sorted(zip(got["subscriber_id"].to_pylist(), got["record_id"].to_pylist(), got["events"].to_pylist()))


def ordered(t: pa.Table) -> pa.Table:
    keys = ["period_start", *[c for c in DIMENSIONS if c in t.column_names]]
    return t.sort_by([(k, "ascending") for k in keys])


def assert_same_windows(expected: pa.Table, got: pa.Table, what: str) -> None:
    """Counts exactly, measures to 1e-9 relative (summation order differs between engines)."""
    assert expected.column_names == got.column_names, what
    assert expected.num_rows == got.num_rows, what
    for name in expected.column_names:
        x, y = expected[name].to_pylist(), got[name].to_pylist()
        bad = [(i, u, v) for i, (u, v) in enumerate(zip(x, y)) if not _same(u, v)]
        assert not bad, f"{what}.{name}: {len(bad)} rows differ, e.g. {bad[:3]}"


def _same(u, v) -> bool:
    if isinstance(u, float) and isinstance(v, float):
        if math.isnan(u) or math.isnan(v):
            return math.isnan(u) and math.isnan(v)
        return math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-9)
    return u == v


def duckdb_stream(land: Path, tables, cat, state: Path, lateness_s: int, cubes=None):
    run_stream(state, LandingSource(land, tables), cat, tables,
               StreamConfig(lateness_s=lateness_s, cubes=cubes, max_records=10**9, until_finished=True, poll_s=0.05))
    return duckdb.connect(str(state), read_only=True)


def counts_of(status: pa.Table) -> dict:
    return {r["source"]: (r["delivered"], r["accepted"], r["updates"], r["duplicates"], r["late"])
            for r in status.to_pylist()}


def test_spark_stream_equals_batch_and_the_duckdb_stream(spark, day, batch, tmp_path):
    from opencem.stream.spark import FileSource, SparkStreamConfig, read_status, read_windows, run_spark_stream
    from opencem.stream.spark_counters import SubscriberCount

    ws = Workspace.resolve(batch)
    tables = ws.tables()
    cat = load_catalog(tables, [])
    out = tmp_path / "spark"
    config = SparkStreamConfig(lateness_s=WEEK, until_finished=True,
                               counter=SubscriberCount("xdr_voice", POOR_CALL, AT_LEAST, WITHIN_S))
    # The day in one micro-batch (the cell and city plans cost Spark tens of seconds a batch); the
    # next test streams it in many, killed in the middle.
    report = run_spark_stream(FileSource(day / "land"), out, cat, tables, config)
    assert report.batches == 1
    lake = connect(ws.lake)
    duck = duckdb_stream(day / "land", tables, cat, tmp_path / "duck.duckdb", WEEK)
    for table in STREAMED:
        got = ordered(read_windows(out, table))
        expected = ordered(lake.sql(f"SELECT * FROM {table}").to_arrow_table())
        streamed = ordered(duck.sql(f"SELECT * FROM {table}").to_arrow_table())
        assert expected.num_rows > 100
        assert set(got["definition_version"].to_pylist()) == set(streamed["definition_version"].to_pylist())
        assert_same_windows(expected, got.drop_columns(["definition_version"]), f"batch vs spark {table}")
        assert_same_windows(streamed, got, f"duckdb stream vs spark {table}")
    # Delivered, kept, fuller copies, duplicates and late ones: as the DuckDB stream counts them.
    ours = counts_of(read_status(out))
    theirs = counts_of(duck.sql("SELECT * FROM counts").to_arrow_table())
    assert ours == {s: theirs[s] for s in ours}
    assert ours["xdr_voice"][3] > 0 and ours["pm_counters"][0] > 0  # duplicates met; PM files read
    onsets = spark_onsets(out)
    assert len(onsets) > 20 and onsets == reference_onsets(lake)


def _cube_files_after(out: Path, moment: float) -> bool:
    return any(p.stat().st_mtime > moment for p in (out / "cubes").rglob("span=*.parquet"))


def test_sigkill_mid_batch_then_restart_gives_the_same_outputs(spark, day, batch, tmp_path):
    """opencem stream spark killed (SIGKILL, the JVM with it) while a batch writes its windows,
    then started again: it resumes from the checkpoint; outputs, counts and late records equal
    the DuckDB stream's at the same lateness, the onsets those of the day."""
    from opencem.stream.spark import read_late, read_status, read_windows
    from opencem.stream.spark_store import SparkStreamStore

    out = tmp_path / "out"
    cmd = [*OPENCEM, "-w", str(batch), "stream", "spark", "--from", str(day / "land"), "--out", str(out),
           "--lateness", "1h", "--until-finished", "--max-files", "30", "--threads", "2",
           *[a for c in CHEAP for a in ("--cube", c)],
           "--count", POOR_CALL, "--at-least", str(AT_LEAST), "--within", f"{WITHIN_S}s"]
    env = {**os.environ, "OPENCEM_SPARK_DRIVER_MEMORY": "1g"}
    store = SparkStreamStore(out)
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        deadline = time.monotonic() + 240
        try:
            while time.monotonic() < deadline and first.poll() is None:
                done = store.committed()
                if done and _cube_files_after(out, (out / "batches" / f"b{done[-1]:010d}.json").stat().st_mtime):
                    break  # the next batch is writing its windows and has not committed
                time.sleep(0.05)
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
            os.killpg(first.pid, signal.SIGKILL)
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    killed_at = store.committed()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Traceback" not in again.stderr and "java." not in again.stderr
    batches = store.committed()
    assert batches == list(range(len(batches))) and len(batches) > len(killed_at) >= 1

    ws = Workspace.resolve(batch)
    tables = ws.tables()
    duck = duckdb_stream(day / "land", tables, load_catalog(tables, []), tmp_path / "duck.duckdb", 3600, CHEAP)
    for table in CHEAP:
        got = ordered(read_windows(out, table))
        keys = ["period_start", *[c for c in DIMENSIONS if c in got.column_names]]
        assert got.group_by(keys).aggregate([]).num_rows == got.num_rows  # no window twice
        assert_same_windows(ordered(duck.sql(f"SELECT * FROM {table}").to_arrow_table()), got, table)
    ours = counts_of(read_status(out))
    theirs = counts_of(duck.sql("SELECT * FROM counts").to_arrow_table())
    assert ours["xdr_video"] == theirs["xdr_video"]
    landed = sum(pq.read_metadata(p).num_rows for p in (day / "land" / "tables").glob("xdr_video_*.parquet"))
    assert ours["xdr_video"][0] == landed  # every record counted once, none twice after the kill
    # Late past the hour's lateness: set aside, counted, the same records as the DuckDB stream's.
    late = read_late(out)
    assert ours["xdr_video"][4] > 0 and late.num_rows == ours["xdr_video"][4]
    assert sorted(late["record_id"].to_pylist()) == \
        sorted(r for (r,) in duck.sql("SELECT record_id FROM late_records WHERE source = 'xdr_video'").fetchall())
    assert spark_onsets(out) == reference_onsets(connect(ws.lake))


def test_refusals_are_one_sentence(spark, day, batch, tmp_path):
    from opencem.stream.spark import FileSource, SparkStreamConfig, run_spark_stream
    from opencem.stream.spark_counters import SubscriberCount
    from opencem.stream.spark_store import SparkStreamStore

    ws = Workspace.resolve(batch)
    tables = ws.tables()
    cat = load_catalog(tables, [])
    source = FileSource(day / "land")
    config = SparkStreamConfig(cubes=CHEAP, until_finished=True,
                               counter=SubscriberCount("xdr_voice", "no_such_column > 1"))
    with pytest.raises(StreamError, match=r"^--count 'no_such_column > 1' is not a condition on xdr_voice: ") as err:
        run_spark_stream(source, tmp_path / "a", cat, tables, config)
    assert "\n" not in str(err.value)
    with pytest.raises(StreamError, match="not an event table"):
        run_spark_stream(source, tmp_path / "b", cat, tables,
                         SparkStreamConfig(cubes=CHEAP, counter=SubscriberCount("cells", "true")))
    # Started with one lateness, the folder refuses another.
    held = SparkStreamStore(tmp_path / "c")
    held.open(SparkStreamConfig(cubes=CHEAP).settings([]) | {"lateness_s": 60})
    held.close()
    with pytest.raises(StreamError, match=r"was started with other cubes, lateness_s"):
        run_spark_stream(source, tmp_path / "c", cat, tables, SparkStreamConfig(cubes=CHEAP))
    # Two jobs on one folder: the second is refused while the first holds it.
    first = SparkStreamStore(tmp_path / "d")
    first.open({"x": 1})
    try:
        with pytest.raises(StreamError, match="another opencem stream spark job is writing"):
            SparkStreamStore(tmp_path / "d").open({"x": 1})
    finally:
        first.close()
    with pytest.raises(StreamError, match="is not a landing folder"):
        run_spark_stream(FileSource(tmp_path), tmp_path / "e", cat, tables, SparkStreamConfig(cubes=CHEAP))
