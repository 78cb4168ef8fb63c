"""Every standard definition on every engine: DuckDB and Spark must produce the same cube
tables from the same lake (counts exactly, measures to 1e-9 relative)."""

from __future__ import annotations

import math
import shutil
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from opencem.indicators.catalog import load_catalog
from opencem.indicators.evaluate import evaluate
from opencem.workspace import Workspace
from tests.conftest import spark_or_skip

DAY = date(2026, 11, 3)  # one simulated day keeps Spark's share of the suite short
# Together these hold every standard KPI and KQI (network sources per cell, customer sources
# per subscriber) and every way of binding a dimension (column, lookup join, H3 grid).
CUBES = ["cube_cell_15min", "cube_subscriber_day", "cube_grid_hour", "cube_segment_day"]


@pytest.fixture(scope="module")
def both(lake, tmp_path_factory):
    """The standard library evaluated on both engines, each into its own copy of the lake."""
    spark_or_skip()
    out = {}
    for engine in ("duckdb", "spark"):
        ws = Workspace(tmp_path_factory.mktemp(engine))
        shutil.copytree(lake.root, ws.root / "lake")
        cat = load_catalog(ws.tables())
        report = evaluate(ws.lake, cat, engine, start=DAY, end=DAY, only=CUBES)
        out[engine] = (ws, report)
    return out


def read(ws: Workspace, table: str) -> pa.Table:
    lake = ws.lake
    files = lake.files(table)
    t = pa.concat_tables(pq.read_table(lake.root / f.path) for f in files)
    keys = [k for k in lake.tables[table].keys]
    return t.sort_by([(k, "ascending") for k in keys])


def test_every_cube_is_computed_on_both_engines(both):
    duck, spark = (r for _, r in both.values())
    assert [c.table for c in duck.cubes] == [c.table for c in spark.cubes]
    assert len(duck.cubes) == len(CUBES)
    assert [c.rows for c in duck.cubes] == [c.rows for c in spark.cubes]
    assert all(c.rows > 0 for c in duck.cubes)


def test_engines_give_equal_results(both):
    (ws_d, rep), (ws_s, _) = both["duckdb"], both["spark"]
    compared = 0
    for cube in rep.cubes:
        a, b = read(ws_d, cube.table), read(ws_s, cube.table)
        assert a.schema == b.schema, cube.table
        assert a.num_rows == b.num_rows
        for name in a.column_names:
            x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
            if pa.types.is_floating(a.schema.field(name).type):
                bad = [(i, u, v) for i, (u, v) in enumerate(zip(x, y)) if not _close(u, v)]
                assert not bad, f"{cube.table}.{name}: {len(bad)} rows differ, e.g. {bad[:3]}"
            else:
                assert x == y, f"{cube.table}.{name} differs"
            compared += a.num_rows
    assert compared > 100_000


def _close(u, v) -> bool:
    if u is None or v is None:
        return u is v
    if math.isnan(u) or math.isnan(v):
        return math.isnan(u) and math.isnan(v)
    return math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-9)
