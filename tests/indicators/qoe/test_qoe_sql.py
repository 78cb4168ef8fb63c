"""The SQL macros compute what the Python models compute, on DuckDB and on Spark (ANSI mode)."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from sqlglot import exp

from opencem.indicators.qoe.emodel import CODECS, emodel
from opencem.indicators.qoe.sql import emodel_mos_sql, emodel_r_sql, web_mos_sql
from opencem.indicators.qoe.web import web_mos

TOLERANCE = 1e-9
ALLOWED_FUNCTIONS = (exp.Ln, exp.Exp, exp.Pow, exp.Sqrt, exp.Greatest, exp.Least, exp.Case,
                     exp.If, exp.Coalesce, exp.Cast, exp.Lower, exp.Trim, exp.Anonymous)


def random_calls(n: int = 3000, seed: int = 5) -> pa.Table:
    rng = np.random.default_rng(seed)
    delay = rng.uniform(-20, 700, n)
    delay[::11] = 0.0
    delay[5::13] = 100.0
    loss = np.where(rng.random(n) < 0.2, 0.0, rng.uniform(0, 40, n))
    burst = rng.uniform(0.5, 4, n)
    burst_list = [None if i % 10 == 3 else float(b) for i, b in enumerate(burst)]
    return pa.table({
        "id": np.arange(n),
        "codec": rng.choice(list(CODECS), n),
        "loss": loss,
        "delay": delay,
        "burst": pa.array(burst_list, pa.float64()),
        "plt": rng.uniform(-100, 30_000, n),
    })


def expected(calls: pa.Table) -> dict[str, np.ndarray]:
    burst = calls["burst"].to_numpy(zero_copy_only=False).astype(float)  # nulls -> NaN
    out = emodel(calls["delay"].to_numpy(), calls["loss"].to_numpy(),
                 calls["codec"].to_numpy(zero_copy_only=False), burst)
    return {"r": out["r"], "mos": out["mos"], "web": web_mos(calls["plt"].to_numpy())}


def query(dialect: str) -> str:
    col = exp.column
    r = emodel_r_sql(col("codec"), col("loss"), col("delay"), col("burst"))
    mos = emodel_mos_sql(col("codec"), col("loss"), col("delay"), col("burst"))
    web = web_mos_sql(col("plt"))
    return (f"SELECT id, {r.sql(dialect=dialect)} AS r, {mos.sql(dialect=dialect)} AS mos, "
            f"{web.sql(dialect=dialect)} AS web FROM calls ORDER BY id")


# Edge rows: (codec, loss, delay, burst, plt) -> whether the SQL result must be NULL.
EDGES = [
    ("G.711", 0.0, 0.0, None, 0.0, False),
    ("AMR-WB", 0.0, 0.0, 0.0, -10.0, False),  # BurstR 0 counts as 1, never a divisor
    ("EVS", 100.0, 100_000.0, 1.0, 1e9, False),
    ("AMR-NB", 250.0, -50.0, 8.0, 500.0, False),
    (None, 1.0, 100.0, 1.0, None, True),
    ("opus", 1.0, 100.0, 1.0, 2500.0, True),
    ("G.729A", None, 100.0, 1.0, 2500.0, True),
    ("G.729A", 1.0, None, 1.0, 2500.0, True),
]


def edge_table() -> pa.Table:
    names = ["codec", "loss", "delay", "burst", "plt"]
    columns = {name: [row[i] for row in EDGES] for i, name in enumerate(names)}
    return pa.table({"id": np.arange(len(EDGES)), **{
        name: pa.array(values, pa.string() if name == "codec" else pa.float64())
        for name, values in columns.items()}})


def check(rows: list[tuple], calls: pa.Table) -> None:
    want = expected(calls)
    got = {name: np.array([row[i + 1] for row in rows], dtype=float)
           for i, name in enumerate(("r", "mos", "web"))}
    for name in ("r", "mos", "web"):
        assert np.max(np.abs(got[name] - want[name])) <= TOLERANCE, name


def check_edges(rows: list[tuple]) -> None:
    calls = edge_table()
    for (_, r, mos, web), edge in zip(rows, EDGES):
        codec, loss, delay, burst, plt, null = edge
        if null:
            assert r is None and mos is None, edge
        else:
            want = emodel(delay, loss, codec, np.nan if burst is None else burst)
            assert abs(r - want["r"]) <= TOLERANCE and abs(mos - want["mos"]) <= TOLERANCE, edge
        assert (web is None) if plt is None else abs(web - web_mos(plt)) <= TOLERANCE
    assert len(rows) == calls.num_rows


def test_only_portable_functions_and_one_row_divisor():
    tree = emodel_mos_sql(exp.column("codec"), exp.column("loss"), exp.column("delay"),
                          exp.column("burst"))
    functions = {type(node) for node in tree.walk()
                 if isinstance(node, exp.Func) and not isinstance(node, exp.Connector)}  # OR
    assert functions <= set(ALLOWED_FUNCTIONS), functions - set(ALLOWED_FUNCTIONS)
    assert {n.name.lower() for n in tree.walk() if isinstance(n, exp.Anonymous)} == {"replace"}
    row_divisors = {node.expression.sql() for node in tree.walk()
                    if isinstance(node, exp.Div) and not isinstance(node.expression, exp.Literal)}
    # Ppl + Bpl * BurstR only: Bpl >= 4.3 and BurstR >= 1, so it is never zero.
    assert len(row_divisors) == 1 and "25.1e0" in row_divisors.pop()
    literals = [n.this for n in tree.walk() if isinstance(n, exp.Literal) and not n.is_string]
    assert literals and all("e" in text.lower() for text in literals)  # DOUBLE, not DECIMAL


def test_duckdb_matches_python():
    calls = random_calls()
    con = duckdb.connect()
    con.register("calls", calls)
    check(con.execute(query("duckdb")).fetchall(), calls)
    con.register("calls", edge_table())
    check_edges(con.execute(query("duckdb")).fetchall())


@pytest.fixture(scope="module")
def spark():
    try:
        from pyspark.sql import SparkSession

        existing = SparkSession.getActiveSession()
        session = existing or (SparkSession.builder.master("local[1]")
                               .appName("opencem-qoe-sql")
                               .config("spark.ui.enabled", "false")
                               .config("spark.sql.shuffle.partitions", "1")
                               .config("spark.sql.ansi.enabled", "true")
                               .getOrCreate())
        session.conf.set("spark.sql.ansi.enabled", "true")
    except Exception as err:  # no Java, no pyspark, no local ports: not this test's business
        pytest.skip(f"pyspark cannot start a local session here ({type(err).__name__}: {err})")
    yield session
    if existing is None:
        session.stop()


def spark_rows(spark, calls: pa.Table) -> list[tuple]:
    schema = "id long, codec string, loss double, delay double, burst double, plt double"
    frame = spark.createDataFrame(
        [(int(r["id"]), r["codec"], r["loss"], r["delay"], r["burst"], r["plt"])
         for r in calls.to_pylist()], schema)
    frame.createOrReplaceTempView("calls")
    return [tuple(row) for row in spark.sql(query("spark")).collect()]


def test_spark_ansi_matches_python(spark):
    calls = random_calls(n=1500, seed=9)
    check(spark_rows(spark, calls), calls)
    check_edges(spark_rows(spark, edge_table()))


@pytest.mark.parametrize("written", ["amr-wb", "AMR_WB", " Amr Wb ", "amr.wb", "evs", "Evs-13.2", "g.711", "G711"])
def test_codec_names_are_case_and_punctuation_insensitive_in_sql_and_python(written):
    from opencem.indicators.qoe.emodel import canonical_codec, emodel

    name = canonical_codec(written)
    con = duckdb.connect()
    sql = emodel_mos_sql(exp.Literal.string(written), exp.convert(1.0), exp.convert(150.0)).sql("duckdb")
    got = con.execute(f"SELECT {sql}").fetchone()[0]
    assert got == pytest.approx(float(emodel(150.0, 1.0, name)["mos"]), abs=1e-9)
    assert float(emodel(150.0, 1.0, written)["mos"]) == pytest.approx(got, abs=1e-9)


def test_an_unknown_codec_is_null_in_sql():
    sql = emodel_mos_sql(exp.Literal.string("silk"), exp.convert(1.0), exp.convert(150.0)).sql("duckdb")
    assert duckdb.connect().execute(f"SELECT {sql}").fetchone()[0] is None
