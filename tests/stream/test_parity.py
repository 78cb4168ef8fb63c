"""Streaming equals batch: a simulated day replayed through the stream, batch by batch, gives
the window results `opencem evaluate` gives on the same records, window by window."""

from __future__ import annotations

import duckdb

from opencem.engines.duckdb import connect
from opencem.indicators.catalog import load_catalog
from opencem.stream import StreamConfig, run_stream
from opencem.stream.landing import LandingSource
from opencem.workspace import Workspace

from .conftest import STREAMED

# KPIs computed from PM counters (the stream reads the PM files with ingest's readers)
PM_KPIS = {"cube_cell_15min": ["rrc_setup_success_pct", "prb_utilisation_dl_pct", "cell_availability_pct"],
           "cube_city_15min": ["rrc_setup_success_pct", "prb_utilisation_dl_pct"]}


def assert_equal_windows(batch, stream, table: str) -> None:
    assert batch.column_names == stream.column_names, table
    assert batch.num_rows == stream.num_rows, table
    for name in batch.column_names:
        for i, (b, s) in enumerate(zip(batch[name].to_pylist(), stream[name].to_pylist())):
            if isinstance(b, float) and isinstance(s, float):
                assert abs(b - s) <= 1e-9 * max(1.0, abs(b)), (table, name, i, b, s)
            else:
                assert b == s, (table, name, i, b, s)


def test_stream_equals_batch_window_by_window(day, batch, tmp_path):
    ws = Workspace.resolve(batch)
    tables = ws.tables()
    cat = load_catalog(tables, [])
    state = tmp_path / "state.duckdb"
    # Many commits, so spans are evaluated again as their late and out-of-order records come.
    report = run_stream(state, LandingSource(day / "land", tables), cat, tables,
                        StreamConfig(lateness_s=7 * 86_400, max_records=15_000, until_finished=True, poll_s=0.05))
    assert report.batches >= 3
    lake = connect(ws.lake)
    con = duckdb.connect(str(state), read_only=True)
    for table in STREAMED:
        keys = "period_start, " + ", ".join(c for c in lake.sql(f"SELECT * FROM {table}").columns
                                            if c in ("cell_id", "city", "program_source", "cdn_node"))
        expected = lake.sql(f"SELECT * FROM {table} ORDER BY {keys}").to_arrow_table()
        got = con.sql(f"SELECT * EXCLUDE (definition_version) FROM {table} ORDER BY {keys}").to_arrow_table()
        assert expected.num_rows > 100
        for kpi in PM_KPIS.get(table, []):
            assert got[kpi].null_count < got.num_rows / 2, (table, kpi)
        assert_equal_windows(expected, got, table)
    dup = con.sql("SELECT sum(duplicates), sum(late) FROM counts").fetchall()[0]
    assert dup[0] > 0 and dup[1] == 0
    # Every PM file of the landing folder was read once; a re-sent copy counted as duplicates.
    pm = con.sql("SELECT count(*), sum(copies) FROM pm_files").fetchall()[0]
    landed = sorted(p.name for p in (day / "land" / "pm").glob("*/*"))
    assert pm[0] == sum(1 for n in landed if "_resent" not in n) and pm[1] == len(landed)
    assert con.sql("SELECT count(*) FROM rejected_records").fetchall()[0][0] == 0
