"""User SQL over the lake is read-only and confined to the lake."""

import pytest

from opencem.engines.duckdb import QueryError, run_user_sql


def test_select_over_views(lake):
    cur = run_user_sql(lake, "SELECT segment, count(*) AS n FROM subscribers GROUP BY 1 ORDER BY 1")
    rows = dict(cur.fetchall())
    assert sum(rows.values()) == 10_000 and set(rows) == {"premium", "postpaid", "prepaid", "youth", "enterprise"}


@pytest.mark.parametrize("sql, message", [
    ("CREATE TABLE t AS SELECT 1", "only read-only queries are allowed here, not CREATE"),
    ("COPY (SELECT 1) TO 'x.csv'", "only read-only queries are allowed here, not COPY"),
    ("SELECT 1; SELECT 2", "give exactly one statement (got 2)"),
    ("SELEC 1", "the query does not parse"),
])
def test_writes_and_garbage_are_refused(lake, sql, message):
    with pytest.raises(QueryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_user_sql(lake, sql)


def test_files_outside_the_lake_cannot_be_read(lake):
    with pytest.raises(QueryError, match="Permission Error"):
        run_user_sql(lake, "SELECT * FROM read_csv('/etc/passwd')").fetchall()


def test_empty_tables_are_typed(tmp_path):
    from opencem.lake import Lake

    cur = run_user_sql(Lake(tmp_path / "empty"), "SELECT count(*), max(rsrp_dbm) FROM xdr_data")
    assert cur.fetchone() == (0, None)
