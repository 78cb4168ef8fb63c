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
        assert_equal_windows(expected, got, table)
    dup = con.sql("SELECT sum(duplicates), sum(late) FROM counts").fetchall()[0]
    assert dup[0] > 0 and dup[1] == 0
