"""Adversarial deliveries: duplicates, out-of-order and late records, on one small cube
(call drops per cell and 15 minutes) so each check takes a moment."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from opencem.indicators.catalog import load_catalog
from opencem.schema import TABLES
from opencem.stream import StreamConfig, run_stream
from opencem.stream.landing import LandingSource

KPIS = ["call_drop_pct"]
CUBE = "cube_cell_15min"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def calls(*rows: tuple[str, int, bool]) -> pa.Table:
    """xdr_voice records (call id, minutes after 10:00, dropped) on cell C1, all answered."""
    return pa.table({"call_id": [r[0] for r in rows],
                     "start_time": pa.array([T0 + timedelta(minutes=r[1]) for r in rows], pa.timestamp("ms", tz="UTC")),
                     "cell_id": ["C1"] * len(rows), "setup_success": [True] * len(rows),
                     "dropped": [r[2] for r in rows]})


def land(folder: Path, *batches: pa.Table) -> Path:
    """One landing file per batch, stamped a minute apart, written as the simulator does."""
    (folder / "tables").mkdir(parents=True)
    for i, rows in enumerate(batches):
        name = f"xdr_voice_20261102T{12 + i // 60:02d}{i % 60:02d}00.parquet"
        tmp = folder / "tables" / f".{name}.tmp"
        pq.write_table(rows, tmp)
        os.replace(tmp, folder / "tables" / name)
    (folder / "manifest.json").write_text('{"complete": true}')
    return folder


def stream(folder: Path, state: Path, lateness_s: int = 3600, max_records: int = 1) -> duckdb.DuckDBPyConnection:
    cat = load_catalog(TABLES, [])
    run_stream(state, LandingSource(folder, TABLES), cat, TABLES,
               StreamConfig(lateness_s=lateness_s, cubes=[CUBE], kpis=KPIS, max_records=max_records,
                            until_finished=True, poll_s=0.01))
    return duckdb.connect(str(state), read_only=True)


def windows(con) -> dict:
    return {(str(t.time())[:5]): (n, d) for t, n, d in
            con.sql(f"SELECT period_start, records_xdr_voice, call_drop_pct FROM {CUBE} ORDER BY 1").fetchall()}


def counts(con) -> tuple:
    return con.sql("SELECT delivered, accepted, updates, duplicates, late FROM counts WHERE source = 'xdr_voice'").fetchall()[0]


def test_duplicates_count_once_and_out_of_order_updates_its_window(tmp_path):
    folder = land(tmp_path / "land",
                  calls(("a", 1, False), ("b", 2, True)),
                  calls(("a", 1, False), ("c", 20, False)),  # a again; c in the next window
                  calls(("d", 3, True), ("b", 2, True)))  # d out of order into 10:00, b again
    con = stream(folder, tmp_path / "s.duckdb")
    assert windows(con) == {"10:00": (3, 100 * 2 / 3), "10:15": (1, 0.0)}
    assert counts(con) == (6, 4, 0, 2, 0)


def test_late_past_lateness_goes_to_late_records_and_within_updates(tmp_path):
    folder = land(tmp_path / "land",
                  calls(("a", 1, False)),
                  calls(("b", 120, False)),  # 12:00: the watermark moves on
                  calls(("c", 2, True)),  # 10:02: its window closed at 10:15, 1 h 45 min ago: late
                  calls(("d", 110, True)),  # 11:50: its window closed at 12:00, within the 15 min
                  calls(("c", 2, True)))  # the late record again: counted once
    con = stream(folder, tmp_path / "s.duckdb", lateness_s=15 * 60)
    assert windows(con) == {"10:00": (1, 0.0), "11:45": (1, 100.0), "12:00": (1, 0.0)}
    assert counts(con) == (5, 3, 0, 1, 1)
    late = con.sql("SELECT source, record_id, event_time, watermark FROM late_records").fetchall()
    assert [(s, r) for s, r, _, _ in late] == [("xdr_voice", "c")]
    assert late[0][2] == T0 + timedelta(minutes=2) and late[0][3] == T0 + timedelta(minutes=120)


def test_how_batches_are_cut_changes_nothing(tmp_path):
    batches = [calls(("a", 1, False)), calls(("b", 120, False), ("c", 2, True)), calls(("d", 110, True), ("a", 1, False))]
    one = stream(land(tmp_path / "one", *batches), tmp_path / "one.duckdb", lateness_s=900, max_records=10_000)
    each = stream(land(tmp_path / "each", *batches), tmp_path / "each.duckdb", lateness_s=900, max_records=1)
    assert windows(one) == windows(each) and counts(one) == counts(each)
    # a's copy comes when the watermark is 2 h on: past the horizon (1 h of retention), so late too
    assert one.sql("SELECT record_id FROM late_records ORDER BY 1").fetchall() == [("a",), ("c",)]


def test_a_fuller_copy_supersedes(tmp_path):
    first = calls(("a", 1, False)).set_column(4, "dropped", pa.array([None], pa.bool_()))
    con = stream(land(tmp_path / "land", first, calls(("a", 1, True))), tmp_path / "s.duckdb")
    assert windows(con) == {"10:00": (1, 100.0)}
    assert counts(con) == (2, 1, 1, 0, 0)


def test_a_restart_resumes_after_what_was_committed(tmp_path):
    folder = land(tmp_path / "land", calls(("a", 1, False)), calls(("b", 2, True)))
    stream(folder, tmp_path / "s.duckdb").close()
    # A file arriving after a restart is taken; the committed ones are not read again.
    name = "xdr_voice_20261102T130000.parquet"
    pq.write_table(calls(("c", 3, True)), folder / "tables" / name)
    con = stream(folder, tmp_path / "s.duckdb")
    assert windows(con) == {"10:00": (3, 100 * 2 / 3)}
    assert counts(con) == (3, 3, 0, 0, 0)


def test_a_broken_landing_file_stops_the_stream_with_its_name(tmp_path):
    import pytest

    from opencem.stream import StreamError

    folder = land(tmp_path / "land", calls(("a", 1, False)))
    (folder / "tables" / "xdr_voice_20261102T130000.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(StreamError, match="xdr_voice_20261102T130000.parquet is not a Parquet file of xdr_voice"):
        stream(folder, tmp_path / "s.duckdb")
    # Nothing of that batch was committed: the good file comes again once the broken one is moved.
    (folder / "tables" / "xdr_voice_20261102T130000.parquet").unlink()
    assert counts(stream(folder, tmp_path / "s.duckdb")) == (1, 1, 0, 0, 0)


def test_a_named_cube_is_the_one_configured_at_that_window():
    from opencem.stream.windows import stream_cubes

    cat = load_catalog(TABLES, [])
    # the city/day cube (min_samples 30, no pool) is also named cube_city_15min at 15min, and
    # came first in the catalog: --cube cube_city_15min streamed it instead of the 15-minute cube
    configured = next(c for c in cat.cubes if c.dimensions == ["city"] and "15min" in c.grains)
    (named,) = stream_cubes(cat, TABLES, "15min", ["cube_city_15min"])
    (marked,) = [c for c in stream_cubes(cat, TABLES, "15min") if c.plan.table == "cube_city_15min"]
    assert named.plan.min_samples == configured.min_samples == 10 and named.plan.pool is not None
    assert named.sql == marked.sql
    # a cube configured at another grain only still streams at a window it names
    (day,) = stream_cubes(cat, TABLES, "hour", ["cube_segment_hour"])
    assert day.plan.table == "cube_segment_hour"
