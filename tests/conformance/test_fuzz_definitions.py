"""Fuzzed whole definition files (issue 10): whatever a file holds, loading it gives issues,
never an exception; a file ``kpi check`` accepts evaluates on DuckDB without error, and on Spark
to the same numbers."""

from __future__ import annotations

import math
from datetime import date

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from opencem.indicators.catalog import library_files, load_catalog
from opencem.indicators.evaluate import run_plan
from opencem.indicators.plan import compile_cube
from opencem.indicators.spec import Cube
from opencem.lake import Lake
from opencem.schema import TABLES
from tests.conformance.test_edge_cases import voice_rows
from tests.conftest import spark_or_skip

DAY = date(2026, 1, 5)
NUMS = ["setup_time_ms", "packet_loss_pct", "one_way_delay_ms", "sip_cause_code"]
BOOLS = ["dropped", "setup_success"]
TEXTS = ["codec", "voice_bearer", "cell_id"]
NUMBERS = ["0", "1", "2.5", "100", "1e3", "0.001", "3", "900", "1e15"]
HOSTILE = ["1e999", "99999999999999999999", "0.12345678901234567", "'${env:HOME}'", "(SELECT 1)",
           "read_csv('/etc/passwd')", "codec", "dropped", "start_time", "*", "NULL"]


def expressions(hostile: bool):
    """Row-level numbers and conditions over xdr_voice: well typed, or (``hostile``) now and
    then not, with literals and calls the checker must refuse."""
    num_leaf = st.one_of(st.sampled_from(NUMS), st.sampled_from(NUMBERS))
    bool_leaf = st.sampled_from(BOOLS)

    def num_ext(inner):
        return st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "%"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(st.sampled_from(["abs", "ln", "sqrt", "floor", "ceil", "round"]), inner).map(lambda t: f"{t[0]}({t[1]})"),
            st.tuples(st.sampled_from(["coalesce", "least", "greatest", "nullif"]), inner, inner).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
            st.tuples(bool_leaf, inner, inner).map(lambda t: f"CASE WHEN {t[0]} THEN {t[1]} ELSE {t[2]} END"),
            st.tuples(bool_leaf, inner, inner).map(lambda t: f"if({t[0]}, {t[1]}, {t[2]})"),
            inner.map(lambda x: f"-({x})"),
            *([st.sampled_from(HOSTILE)] if hostile else []),
        )

    num = st.recursive(num_leaf, num_ext, max_leaves=6)
    cond = st.one_of(
        bool_leaf,
        st.tuples(num, st.sampled_from(["<", "<=", ">", ">=", "=", "<>"]), num).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(st.sampled_from(TEXTS), st.sampled_from(["'VoLTE'", "'A'", "'CSFB'", *(["3"] if hostile else [])]))
        .map(lambda t: f"{t[0]} = {t[1]}"),
        st.tuples(bool_leaf, st.sampled_from(["AND", "OR"]), bool_leaf).map(lambda t: f"({t[0]} {t[1]} NOT {t[2]})"),
        st.sampled_from(NUMS + TEXTS).map(lambda c: f"{c} IS NULL"),
        st.tuples(st.sampled_from(NUMS), num, num).map(lambda t: f"{t[0]} BETWEEN {t[1]} AND {t[2]}"),
    )
    return num, cond


def kpi_expressions(hostile: bool):
    num, cond = expressions(hostile)
    agg = st.one_of(
        st.tuples(st.sampled_from(["sum", "avg", "min", "max", "stddev", "median"]), num).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(num, st.sampled_from(["0.5", "0.9", *(["95"] if hostile else [])])).map(lambda t: f"percentile({t[0]}, {t[1]})"),
        cond.map(lambda c: f"count_if({c})"),
        st.sampled_from(["count(*)", "count(setup_time_ms)", "count(distinct subscriber_id)", "count(distinct cell_id)",
                         *(["max(setup_time_ms, 3)", "sum(codec)", "count_if(setup_time_ms)"] if hostile else [])]),
    )
    return st.one_of(
        agg,
        st.tuples(agg, st.sampled_from(["+", "-", "*", "/"]), agg).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(st.sampled_from(NUMBERS), agg).map(lambda t: f"{t[0]} * {t[1]}"),
        agg.map(lambda a: f"coalesce({a}, 0)"),
    ), cond


CLEAN_SCORE = st.sampled_from([0, 1, 3, 50, 100, -1, 2.5])
HOSTILE_SCORE = st.one_of(CLEAN_SCORE, st.sampled_from([1e308, ".inf", ".nan", "-.inf", "'x'"]))


@st.composite
def definition_files(draw, hostile: bool = True) -> str:
    kpi_expr, cond = kpi_expressions(hostile)
    score_num = HOSTILE_SCORE if hostile else CLEAN_SCORE
    kpis = []
    for i in range(draw(st.integers(1, 4))):
        names = [f"k{i}", "cei", "cell_id", "order", f"x{i}_score"] if hostile else [f"k{i}", f"order{i}"]
        kpi = {"name": draw(st.sampled_from(names)),
               "source": draw(st.sampled_from(["xdr_voice", "xdr_voice", "cells", "nope"] if hostile else ["xdr_voice"])),
               "expr": draw(kpi_expr)}
        if draw(st.booleans()):
            kpi["filter"] = draw(cond)
        kpis.append(kpi)
    names = [k["name"] for k in kpis]
    kqis = []
    for i in range(draw(st.integers(0, 2))):
        good, bad = draw(score_num), draw(score_num)
        if not hostile and good == bad:
            good = bad + 1
        kqis.append({"name": f"q{i}", "service": "voice",
                     "expr": draw(st.sampled_from([names[0], f"{names[0]} * 2", f"{names[-1]} - {names[0]}",
                                                   f"100 - {names[0]}", *(["web_mos(3)", "q0"] if hostile else [])])),
                     "score": draw(st.sampled_from([{"good": good, "bad": bad}, {"points": sorted([[bad, 0], [good, 100]])}]
                                                   if not hostile else [{"good": good, "bad": bad}, {"points": [[bad, 0], [good, 100]]}]))})
    doc = {"kpis": kpis, "kqis": kqis}
    if kqis and draw(st.booleans()):
        doc["cei"] = {"mode": draw(st.sampled_from(["extend", "replace"])),
                      "indices": [{"name": "voice", "weight": draw(score_num if hostile else st.sampled_from([1, 2.5])),
                                   "kqis": {q["name"]: 1 for q in kqis}}]}
    text = yaml.safe_dump(doc, sort_keys=False)
    for bad in (".inf", ".nan", "-.inf"):
        text = text.replace(f"'{bad}'", bad)  # YAML's own infinities, not strings
    return text


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    lake = Lake(root / "lake")
    with lake.transaction() as txn:
        txn.append(TABLES["xdr_voice"], voice_rows())
    return lake, root


def accepted(root, text: str):
    path = root / "defs.yaml"
    path.write_text(text)
    dims = [p for p in library_files() if p.name == "dimensions.yaml"]
    cat = load_catalog(TABLES, [*dims, path], library=False)  # must not raise, whatever the file
    assert all(str(i) for i in cat.issues)
    return None if cat.errors else cat


def plan_of(cat):
    return compile_cube(cat, TABLES, Cube(dimensions=["cell_id"]), "15min")


def fuzz(examples: int):
    return settings(deadline=None, database=None, max_examples=examples,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.filter_too_much])


@fuzz(300)
@given(text=st.one_of(definition_files(hostile=True), definition_files(hostile=False)))
def test_any_definition_file_loads_to_issues_and_accepted_ones_run_on_duckdb(tiny, text):
    lake, root = tiny
    cat = accepted(root, text)
    if cat is None:
        return
    out = run_plan(lake, plan_of(cat), "duckdb", DAY, DAY)
    assert out.num_rows == 3  # cell A has two quarter-hours, cell B one


def same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@fuzz(25)
@given(text=definition_files(hostile=False))
def test_accepted_definition_files_give_the_same_numbers_on_both_engines(tiny, text):
    lake, root = tiny
    cat = accepted(root, text)
    assume(cat is not None)  # only accepted files count towards the examples
    spark_or_skip()
    plan = plan_of(cat)
    rows = {}
    for engine in ("duckdb", "spark"):
        out = run_plan(lake, plan, engine, DAY, DAY)
        rows[engine] = sorted(out.to_pylist(), key=lambda r: (r["cell_id"], r["period_start"]))
    assert len(rows["duckdb"]) == len(rows["spark"]) == 3
    for d, s in zip(rows["duckdb"], rows["spark"]):
        for column in d:
            assert same(d[column], s[column]), (column, d[column], s[column], text)
