"""Spark reads the lake like DuckDB does: same committed files, same schema, same answers."""

import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from opencem.engines.duckdb import connect
from opencem.engines.spark import (EngineError, find_java, register_arrow, register_lake, run,
                                   spark_session, stop)
from opencem.lake import Lake


@pytest.fixture(scope="session")
def spark():
    if find_java() is None:
        message = "Java not found (neither $JAVA_HOME/bin/java nor java on PATH); the Spark engine needs Java 17+"
        if os.environ.get("OPENCEM_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " and OPENCEM_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(message)
    session = spark_session()
    yield session
    stop()


@pytest.fixture(scope="module")
def views(spark, lake) -> dict[str, int]:
    return register_lake(spark, lake)


@pytest.fixture(scope="module")
def duck(lake):
    con = connect(lake)
    con.execute("SET TimeZone = 'UTC'")  # DuckDB follows the host's zone; Spark is pinned to UTC
    yield con
    con.close()


def canonical(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    """Column names and types as a query returns them (Spark's timestamps are microseconds)."""
    return [(f.name, pa.timestamp("us", tz="UTC") if pa.types.is_timestamp(f.type) else f.type)
            for f in schema]


def test_views_hold_the_committed_rows(spark, views, lake):
    union = " UNION ALL ".join(f"SELECT '{name}' AS name, count(*) AS n FROM {name}" for name in views)
    counted = {row["name"]: row["n"] for row in run(spark, union).to_pylist()}
    assert counted == {name: lake.rows(name) for name in lake.tables} == views
    assert counted["xdr_data"] > 0 and counted["quarantine"] == 0


def test_columns_are_the_canonical_schema(spark, views, lake):
    for name, spec in lake.tables.items():
        got = run(spark, f"SELECT * FROM {name} LIMIT 0").schema
        assert canonical(got) == canonical(spec.schema), name  # no date= partition column


@pytest.mark.parametrize("sql", [
    "SELECT sum(bytes_dl) AS bytes_dl, sum(bytes_ul) AS bytes_ul FROM xdr_data",
    "SELECT CAST(start_time AS DATE) AS day, count(*) AS calls FROM xdr_voice GROUP BY 1 ORDER BY 1",
    "SELECT min(start_time) AS first_start, max(start_time) AS last_start FROM xdr_data",
    "SELECT technology, count(*) AS sessions, sum(duration_ms) AS duration_ms, count(rsrp_dbm) AS measured "
    "FROM xdr_data GROUP BY 1 ORDER BY 1",
    "SELECT s.segment, count(*) AS calls FROM xdr_voice v JOIN subscribers s USING (subscriber_id) "
    "GROUP BY 1 ORDER BY 1",
])
def test_aggregates_match_duckdb(spark, views, duck, sql):
    assert run(spark, sql).to_pylist() == duck.sql(sql).to_arrow_table().to_pylist()


def test_float_averages_match_duckdb(spark, views, duck):
    sql = "SELECT cell_id, avg(rsrp_dbm) AS rsrp_dbm FROM xdr_data GROUP BY 1 ORDER BY 1"
    spark_rows = run(spark, sql).to_pylist()
    duck_rows = duck.sql(sql).to_arrow_table().to_pylist()
    assert [r["cell_id"] for r in spark_rows] == [r["cell_id"] for r in duck_rows]
    # Summation order differs between engines, so the last bits of a double may too.
    assert [r["rsrp_dbm"] for r in spark_rows] == pytest.approx([r["rsrp_dbm"] for r in duck_rows], rel=1e-9)


def test_timestamps_are_the_utc_instants(spark, views, duck):
    sql = "SELECT call_id, start_time FROM xdr_voice ORDER BY call_id"
    got = run(spark, sql)
    assert got.schema.field("start_time").type == pa.timestamp("us", tz="UTC")
    assert got.num_rows > 0 and got.equals(duck.sql(sql).to_arrow_table().cast(got.schema))


def test_division_by_zero_is_an_error_in_ansi_mode(spark, views):
    # This is why the indicator renderer guards every division (DuckDB gives inf here).
    with pytest.raises(EngineError, match=r"^\[DIVIDE_BY_ZERO\] Division by zero\.") as err:
        run(spark, "SELECT sum(bytes_dl) / (count(*) - count(*)) FROM xdr_data")
    assert "\n" not in str(err.value)
    guarded = run(spark, "SELECT sum(bytes_dl) / NULLIF(count(*) - count(*), 0) AS ratio FROM xdr_data")
    assert guarded.to_pylist() == [{"ratio": None}]


@pytest.mark.parametrize("sql, message", [
    ("SELEC 1", "PARSE_SYNTAX_ERROR"),
    ("SELECT no_such_column FROM cells", "UNRESOLVED_COLUMN"),
    ("SELECT * FROM no_such_table", "TABLE_OR_VIEW_NOT_FOUND"),
])
def test_bad_sql_is_a_one_line_engine_error(spark, views, sql, message):
    with pytest.raises(EngineError, match=message) as err:
        run(spark, sql)
    assert "\n" not in str(err.value)


def test_arrow_dimension_joins_the_lake(spark, views):
    cells = run(spark, "SELECT cell_id FROM cells ORDER BY cell_id")
    index = np.arange(cells.num_rows)
    lookup = pa.table({
        "cell_id": cells.column("cell_id"),
        "h3_cell": pc.binary_join_element_wise("h3-", cells.column("cell_id"), ""),
        "sector": pa.array(index % 3, pa.int8()),
        "installed_at": pa.array(index * 86_400_000, pa.timestamp("ms", tz="UTC")),
    })
    register_arrow(spark, "cell_h3", lookup)
    joined = run(spark, "SELECT h.h3_cell, h.sector, h.installed_at FROM cells c "
                        "JOIN cell_h3 h USING (cell_id) ORDER BY c.cell_id")
    assert joined.num_rows == cells.num_rows > 0
    assert joined.column("sector").type == pa.int8()
    assert joined.column("installed_at").to_pylist() == lookup.column("installed_at").to_pylist()


def test_empty_lake_gives_typed_empty_views(spark, tmp_path):
    own = spark.newSession()  # temp views are per session: the shared views stay as they are
    empty = Lake(tmp_path / "empty")
    assert set(register_lake(own, empty).values()) == {0}
    got = run(own, "SELECT count(*) AS n, max(rsrp_dbm) AS rsrp FROM xdr_data")
    assert got.to_pylist() == [{"n": 0, "rsrp": None}]
    got = run(own, "SELECT * FROM subscribers").schema
    assert canonical(got) == canonical(empty.tables["subscribers"].schema)


def test_odd_folder_names_are_read_literally(spark, lake, tmp_path):
    # Spark treats paths as globs; a lake in "odd [lake]{a,b}*" must still read each file once.
    odd = Lake(tmp_path / "odd [lake]{a,b}*")
    shutil.copytree(lake.root, odd.root, ignore=shutil.ignore_patterns(".lock"))
    own = spark.newSession()
    counts = register_lake(own, odd)
    assert run(own, "SELECT count(*) AS n FROM pm_counters").to_pylist() == [{"n": counts["pm_counters"]}]
    assert counts["pm_counters"] == lake.rows("pm_counters") > 0


def test_session_is_shared_utc_and_ansi(spark):
    assert spark_session() is spark
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.ansi.enabled") == "true"
    if spark.sparkContext.master == "local[*]":  # a different size is refused, not ignored
        with pytest.raises(EngineError, match=r"already running; call stop\(\) before asking for local\[1\]"):
            spark_session(threads=1)


def test_missing_java_is_detected(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    assert find_java() is None
