"""The grid sees where users are (issue 10): a geolocated session or sample is placed by its
own position, others by their serving site, and the cube says how many were placed which way.
The H3 ancestor is computed in SQL by bit operations; it must equal h3's on every engine."""

from __future__ import annotations


import h3
import numpy as np
import pyarrow as pa
import pytest

from opencem.engines.duckdb import run_user_sql
from opencem.geo import h3_ints, h3_parent_text, parent_masks
from opencem.indicators.catalog import load_catalog
from opencem.indicators.evaluate import evaluate
from opencem.indicators.render import RENDERERS
from opencem.ingest.validate import conform
from opencem.schema import TABLES
from opencem.workspace import Workspace
from sqlglot import exp

RNG = np.random.default_rng(11)
LAT, LON = RNG.uniform(-85, 85, 3000), RNG.uniform(-179.9, 179.9, 3000)


def test_the_bit_arithmetic_gives_h3s_parent_at_every_resolution():
    cells = h3_ints(LAT, LON)
    ints = cells.to_numpy(zero_copy_only=False)
    assert all(h3.get_resolution(h3.int_to_str(int(c))) == 15 for c in ints[:50])
    for res in range(16):
        want = [h3.cell_to_parent(h3.int_to_str(int(c)), res) for c in ints]
        assert h3_parent_text(cells, res).to_pylist() == want, res
    with pytest.raises(ValueError, match="outside 0..15"):
        parent_masks(16)


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_each_engine_renders_the_same_ancestor_as_h3(engine, engine_ready):
    cells = h3_ints(LAT, LON)
    table = pa.table({"location_h3": pa.concat_arrays([cells, pa.nulls(3, pa.int64())])})
    renderer = RENDERERS[engine]()
    columns = [renderer.h3_parent(exp.column("location_h3", "src"), r).as_(f"r{r}") for r in (0, 5, 8, 9, 12, 15)]
    sql = exp.select(*columns).from_(exp.to_table("cells").as_("src")).sql(dialect=renderer.dialect)
    if engine == "duckdb":
        import duckdb

        con = duckdb.connect()
        con.register("cells", table)
        got = con.sql(sql).to_arrow_table()
    else:
        from tests.conftest import spark_or_skip

        spark = spark_or_skip()
        rows = [(v,) for v in table.column("location_h3").to_pylist()]  # exact ints, not via float
        spark.createDataFrame(rows, "location_h3 BIGINT").createOrReplaceTempView("cells")
        got = pa.Table.from_pandas(spark.sql(sql).toPandas())
    for r in (0, 5, 8, 9, 12, 15):
        want = [h3.cell_to_parent(h3.int_to_str(int(c)), r) for c in cells.to_numpy(zero_copy_only=False)] + [None] * 3
        assert got.column(f"r{r}").to_pylist() == want, (engine, r)


# -- ingest ------------------------------------------------------------------------------------

def voice(**columns) -> pa.Table:
    n = len(next(iter(columns.values())))
    base = {"call_id": [f"c{i}" for i in range(n)], "subscriber_id": ["S1"] * n,
            "start_time": pa.array(range(n), pa.timestamp("ms", tz="UTC")), "setup_success": [True] * n}
    return pa.table({**base, **columns})


def test_ingest_derives_the_position_cell_and_refuses_half_a_position():
    got = conform(voice(ue_lat=[30.25, None, 30.2, None, 91.0], ue_lon=[120.1, None, None, 120.0, 120.0],
                        location_h3=[1, 2, 3, 4, 5]), TABLES["xdr_voice"], "calls.csv")
    assert got.accepted.column("location_h3").to_pylist() == [h3.str_to_int(h3.latlng_to_cell(30.25, 120.1, 15)), None]
    assert list(got.rejected_rows) == [2, 3, 4]
    assert got.fields == ["ue_lon", "ue_lat", "ue_lat"]
    assert got.reasons == ["missing while ue_lat is given", "missing while ue_lon is given",
                           "outside the valid range [-90.0, 90.0]"]


def test_a_drive_test_and_a_social_post_are_located_from_their_coordinates():
    for name, time_column, base in (
            ("drive_tests", "measured_at", {"test_id": ["t"], "record_number": [1]}),
            ("social_posts", "posted_at", {"post_id": ["p"]})):
        table = pa.table({**base, time_column: pa.array([0], pa.timestamp("ms", tz="UTC")),
                          "lat": [51.5], "lon": [-0.12]})
        got = conform(table, TABLES[name], f"{name}.csv").accepted
        assert got.column("location_h3").to_pylist() == [h3.str_to_int(h3.latlng_to_cell(51.5, -0.12, 15))], name


# -- cubes ---------------------------------------------------------------------------------------

def expected_grid_counts(ws: Workspace, resolution: int) -> dict[tuple, tuple[int, int]]:
    """(hour, grid) -> (calls, located calls), computed here from the lake with h3 itself."""
    calls = run_user_sql(ws.lake, "SELECT v.start_time, v.location_h3, c.lat, c.lon FROM xdr_voice v "
                                  "LEFT JOIN cells c USING (cell_id)").to_arrow_table()
    located = calls.column("location_h3")
    by_site = h3_parent_text(h3_ints(calls.column("lat").to_numpy(zero_copy_only=False).astype(float),
                                     calls.column("lon").to_numpy(zero_copy_only=False).astype(float)), resolution)
    by_self = h3_parent_text(located, resolution)
    out: dict[tuple, list[int]] = {}
    for t, own, site in zip(calls.column("start_time").to_pylist(), by_self.to_pylist(), by_site.to_pylist()):
        key = (t.replace(minute=0, second=0, microsecond=0), own or site)
        count = out.setdefault(key, [0, 0])
        count[0] += 1
        count[1] += own is not None
    return {k: tuple(v) for k, v in out.items()}


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_the_grid_cube_places_located_calls_by_their_position(ws, engine, engine_ready):
    located = run_user_sql(ws.lake, "SELECT count(location_h3), count(*) FROM xdr_voice").fetchone()
    assert 0.2 < located[0] / located[1] < 0.4  # the simulator geolocates about 30 % of sessions
    cat = load_catalog(ws.tables())
    cube = next(c for c in cat.cubes if list(c.dimensions) == ["grid"])
    evaluate(ws.lake, cat, only=["cube_grid_hour"], engine=engine)
    rows = run_user_sql(ws.lake, "SELECT period_start, grid, records_xdr_voice, records_xdr_voice_located "
                                 "FROM cube_grid_hour WHERE records_xdr_voice > 0").fetchall()
    got = {(t, g): (n, m) for t, g, n, m in rows}
    assert got == expected_grid_counts(ws, cube.grid_resolution)
    assert sum(m for _, m in got.values()) == located[0]


def test_located_false_places_every_row_at_its_serving_site(ws):
    (ws.root / "indicators" / "g.yaml").write_text("""\
dimensions:
  - {name: site_grid, resolve: [{grid: true, located: false}]}
cubes:
  mode: replace
  list:
    - {dimensions: [site_grid], grains: [hour], grid_resolution: 7, min_samples: 10}
""")
    cat = load_catalog(ws.tables(), ws.definition_files())
    assert cat.errors == []
    evaluate(ws.lake, cat)
    columns = run_user_sql(ws.lake, "SELECT * FROM cube_site_grid_hour LIMIT 0").to_arrow_table().column_names
    assert not [c for c in columns if c.endswith("_located")]
    got = dict(run_user_sql(ws.lake, "SELECT site_grid, sum(records_xdr_voice) FROM cube_site_grid_hour "
                                     "GROUP BY 1 HAVING sum(records_xdr_voice) > 0").fetchall())
    cells = run_user_sql(ws.lake, "SELECT c.lat, c.lon, count(*) FROM xdr_voice v JOIN cells c USING (cell_id) "
                                  "GROUP BY 1, 2").fetchall()
    want: dict[str, int] = {}
    for lat, lon, n in cells:
        g = h3.cell_to_parent(h3.latlng_to_cell(lat, lon, 15), 7)
        want[g] = want.get(g, 0) + n
    assert got == want


def test_located_applies_to_grid_resolvers_only(tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text("dimensions:\n  - {name: place, resolve: [{column: cell_id, located: false}]}\n")
    errors = load_catalog(TABLES, [f]).errors
    assert len(errors) == 1 and "located applies to a grid resolver only" in errors[0], errors


def test_a_source_with_a_position_and_no_cell_enters_grid_cubes(ws, tmp_path):
    # Geotagged social posts: no serving cell, so before positions they had no grid at all.
    posts = run_user_sql(ws.lake, "SELECT count(location_h3) FROM social_posts").fetchone()[0]
    assert posts > 0
    (ws.root / "indicators" / "s.yaml").write_text("""\
kpis:
  - {name: posts, source: social_posts, expr: count(*), better: neither}
cubes:
  mode: replace
  list:
    - {dimensions: [grid], grains: [day], grid_resolution: 6}
""")
    cat = load_catalog(ws.tables(), ws.definition_files())
    evaluate(ws.lake, cat)
    got = run_user_sql(ws.lake, "SELECT sum(records_social_posts_located), sum(posts) FILTER (WHERE grid IS NOT NULL) "
                                "FROM cube_grid_day").fetchone()
    assert got == (posts, posts)


def test_a_location_h3_a_file_gives_is_replaced_not_quarantined():
    # A hex string (H3's usual form) could not be cast to int64 and sent the row to quarantine.
    got = conform(voice(ue_lat=[30.25, None], ue_lon=[120.1, None], location_h3=["8f1ea6d6027ffff", "x"]),
                  TABLES["xdr_voice"], "calls.csv")
    assert got.n_quarantined == 0
    assert got.accepted.column("location_h3").to_pylist() == [h3.str_to_int(h3.latlng_to_cell(30.25, 120.1, 15)), None]


def test_null_island_is_not_a_position():
    got = conform(voice(ue_lat=[0.0, 0.0], ue_lon=[0.0, 1.0]), TABLES["xdr_voice"], "calls.csv")
    assert list(got.rejected_rows) == [0]
    assert got.reasons == ["ue_lat and ue_lon are both 0, the placeholder for no position fix; leave both empty "
                           "when the row was not located"]


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_a_lake_written_before_positions_still_evaluates(ws, engine, engine_ready):
    # Files without ue_lat..location_h3 (ingested by an earlier release): DuckDB took the
    # first file's columns and the grid cube failed with a binder error.
    import pyarrow.parquet as pq

    for table in ("xdr_voice", "xdr_data", "xdr_video"):
        files = ws.lake.paths(ws.lake.files(table))
        old = files[: max(1, len(files) // 2)]
        for path in old:
            t = pq.read_table(path)
            pq.write_table(t.drop_columns(["ue_lat", "ue_lon", "location_error_m", "location_h3"]), path)
    located = run_user_sql(ws.lake, "SELECT count(location_h3), count(*) FROM xdr_voice").fetchone()
    assert 0 < located[0] < located[1]
    cat = load_catalog(ws.tables())
    evaluate(ws.lake, cat, only=["cube_grid_hour"], engine=engine)
    got = run_user_sql(ws.lake, "SELECT sum(records_xdr_voice), sum(records_xdr_voice_located) FROM cube_grid_hour").fetchone()
    assert got == (located[1], located[0])
