"""Regressions for the hostile review of the indicator engine (issue 10, second round): each
test failed before its fix. Values are asserted, on both engines where the finding was one
engine disagreeing with the other."""

from __future__ import annotations

from datetime import date
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from opencem.engines.duckdb import run_user_sql
from opencem.indicators.catalog import load_catalog
from opencem.indicators.evaluate import evaluate
from opencem.indicators.expr import MAX_RENDERED_NODES, check_filter, check_kpi, rendered_nodes, parse
from opencem.indicators.plan import compile_cube
from opencem.indicators.render import RENDERERS
from opencem.schema import TABLES
from opencem.specfile import SpecError, read_yaml

VOICE = {f.name: f.type for f in TABLES["xdr_voice"].columns}
UNITS = {f.name: (f.metadata or {}).get(b"unit", b"").decode() for f in TABLES["xdr_voice"].columns}


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def cli(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "opencem", "-w", str(ws), *args],
                          capture_output=True, text=True, timeout=180)


# -- names the planner uses inside its SQL ------------------------------------------------

def test_kpis_named_like_the_planners_aliases_get_their_own_values(ws):
    # The planner named measures m0, m1... and a KPI m1 was read from the wrong measure.
    write(ws.root / "indicators", "k.yaml", """\
kpis:
  - {name: m0, source: xdr_voice, expr: count_if(dropped), better: lower}
  - {name: m1, source: xdr_voice, expr: count(*), better: neither}
  - {name: q0, source: xdr_voice, expr: sum(setup_time_ms), better: neither}
  - {name: k, source: xdr_voice, expr: 2 * count(*), better: neither}
cubes:
  mode: replace
  list:
    - {dimensions: [segment], grains: [day]}
""")
    cat = load_catalog(ws.tables(), ws.definition_files())
    assert cat.errors == []
    evaluate(ws.lake, cat)
    got = run_user_sql(ws.lake, "SELECT sum(m0), sum(m1), sum(q0), sum(k) FROM cube_segment_day").fetchone()
    want = run_user_sql(ws.lake, "SELECT count_if(dropped), count(*), sum(setup_time_ms), 2 * count(*) "
                                 "FROM xdr_voice WHERE subscriber_id IN (SELECT subscriber_id FROM subscribers)").fetchone()
    assert got[0] == want[0] and got[1] == want[1] and got[3] == want[3]
    assert got[2] == pytest.approx(want[2], rel=1e-9)


def test_a_snapshot_that_lists_a_key_twice_does_not_count_rows_twice(ws):
    # The lookup joined every copy of a subscriber, so their calls were counted once per copy.
    lake = ws.lake
    day = date.fromisoformat(lake.files("subscribers")[0].date)
    subs = pa.concat_tables([pq.read_table(p) for p in lake.paths(lake.files("subscribers"))])
    with lake.transaction() as tx:
        tx.append(TABLES["subscribers"], pa.concat_tables([subs, subs.slice(0, 50)]), snapshot_date=day)
    rows = run_user_sql(ws.lake, "SELECT count(*), count(DISTINCT subscriber_id) FROM subscribers").fetchone()
    assert rows[0] == rows[1] + 50  # the duplicate is really in the lake
    write(ws.root / "indicators", "k.yaml", """\
kpis:
  - {name: calls, source: xdr_voice, expr: count(*), better: neither}
cubes:
  mode: replace
  list:
    - {dimensions: [segment], grains: [day]}
""")
    cat = load_catalog(ws.tables(), ws.definition_files())
    evaluate(ws.lake, cat)
    got = run_user_sql(ws.lake, "SELECT sum(calls) FROM cube_segment_day").fetchone()[0]
    calls = run_user_sql(ws.lake, "SELECT count(*) FROM xdr_voice").fetchone()[0]
    assert got == calls


# -- numbers alike on both engines ------------------------------------------------------------

NUMBERS = """\
kpis:
  - {name: rounded, source: xdr_voice, expr: "max(round(1.005 + 0 * coalesce(one_way_delay_ms, 0), 2))", better: neither}
  - {name: rounded_neg, source: xdr_voice, expr: "min(round(-2.5 + 0 * coalesce(one_way_delay_ms, 0)))", better: neither}
  - {name: floored_huge, source: xdr_voice, expr: "max(floor(100000000000000 * 100000 + 0 * coalesce(one_way_delay_ms, 0)))", better: neither}
  - {name: ceiled, source: xdr_voice, expr: "max(ceil(0.25 + 0 * coalesce(one_way_delay_ms, 0)))", better: neither}
  - {name: decimals, source: xdr_voice, expr: "count(*) * 0.123456789 * 0.123456789 * 0.123456789 * 0.123456789 * 0.123456789", better: neither}
  - {name: tiny_floor, source: xdr_voice, expr: "floor(-count(*) / 1e15 / 1e15)", better: neither}
  - {name: tiny_ceil, source: xdr_voice, expr: "ceil(count(*) / 1e15 / 1e15)", better: neither}
  - {name: noise_floor, source: xdr_voice, expr: "floor(0.3 - 0.1 - 0.2 + 0 * count(*))", better: neither}
  - {name: inf_floor, source: xdr_voice, expr: "floor(exp(1000 + count(*)))", better: neither}
cubes:
  mode: replace
  list:
    - {dimensions: [segment], grains: [day]}
"""


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_round_floor_ceil_and_decimal_products_are_the_same_on_both_engines(ws, engine, engine_ready):
    # Spark rounded 1.005 to 1.01 (DuckDB 1.0), its FLOOR overflowed BIGINT past 9.2e18, and
    # DuckDB's DECIMAL product of five 0.123456789 lost its scale.
    write(ws.root / "indicators", "n.yaml", NUMBERS)
    cat = load_catalog(ws.tables(), ws.definition_files())
    assert cat.errors == []
    evaluate(ws.lake, cat, engine=engine)
    got = run_user_sql(ws.lake, "SELECT max(rounded), min(rounded_neg), max(floored_huge), max(ceiled), "
                                "sum(decimals) FROM cube_segment_day").fetchone()
    calls = run_user_sql(ws.lake, "SELECT count(*) FROM xdr_voice").fetchone()[0]
    # 1.005 is 1.00499999999999989... in binary: half up on the binary value gives 1.0.
    assert got[0] == 1.0
    assert got[1] == -2.0  # half up: -2.5 -> -2
    assert got[2] == pytest.approx(1e19, rel=1e-12)
    assert got[3] == 1.0
    assert got[4] == pytest.approx(calls * 0.123456789 ** 5, rel=1e-9)
    # Spark's x - pmod(x, 1) gave -1.5e-26 for floor(-1.5e-26), and NaN for floor(inf).
    got = run_user_sql(ws.lake, "SELECT min(tiny_floor), max(tiny_floor), min(tiny_ceil), max(tiny_ceil), "
                                "min(noise_floor), max(inf_floor) FROM cube_segment_day").fetchone()
    assert got == (-1.0, -1.0, 1.0, 1.0, -1.0, float("inf"))


def test_nested_sqrt_and_ln_do_not_double_the_sql(tmp_path):
    # Each guard repeated its argument (CASE WHEN x >= 0 THEN SQRT(x)), 2^n SQL for n levels.
    text = "sum(" + "sqrt(" * 20 + "setup_time_ms" + ")" * 20 + ") + sum(" + "ln(" * 20 + "setup_time_ms" + ")" * 20 + ")"
    assert check_kpi(text, VOICE).issues == []
    f = write(tmp_path, "k.yaml", f"kpis:\n  - {{name: deep, source: xdr_voice, expr: '{text}', better: neither}}\n")
    cat = load_catalog(TABLES, [f])
    assert cat.errors == []
    cube = next(c for c in cat.cubes if list(c.dimensions) == ["cell_id"])
    for engine, renderer in RENDERERS.items():
        sql = renderer().render(compile_cube(cat, TABLES, cube, cube.grains[0], kpis=["deep"]))
        assert len(sql) < 20_000, (engine, len(sql))


def test_nested_floor_that_would_explode_on_spark_is_one_sentence():
    text = "sum(" + "floor(" * 16 + "setup_time_ms" + ")" * 16 + ")"
    tree, _ = parse("sum(" + "floor(" * 6 + "setup_time_ms" + ")" * 6 + ")")
    assert rendered_nodes(tree) > 3 ** 6
    found = check_kpi(text, VOICE).issues
    assert len(found) == 1 and f"at most {MAX_RENDERED_NODES:,}" in found[0] and "floor" in found[0]


# -- conditions that are never true -----------------------------------------------------------

@pytest.mark.parametrize("text, problem", [
    ("avg(if(dropped, 1))", "if takes 3 arguments, not 2"),
    ("count_if(NULL)", "count_if needs true/false, not NULL"),
    ("sum(CASE WHEN NULL THEN 1 ELSE 0 END)", "needs true/false, not NULL"),
    ("count_if(codec = '${env:HOME}')", "holds ${"),
    ('sum("${env:HOME}")', "holds ${"),
    ("count_if(codec = e'41')", "literals are not allowed"),
    ("count_if(codec = N'41')", "literals are not allowed"),
])
def test_malformed_conditions_are_refused(text, problem):
    found = check_kpi(text, VOICE).issues
    assert any(problem in i for i in found), found


def test_a_null_filter_is_refused():
    assert check_filter("NULL", VOICE).issues == ["filter 'NULL' is NULL, so no row would pass"]


def test_an_empty_filter_is_refused(tmp_path):
    f = write(tmp_path, "k.yaml", "kpis:\n  - {name: x, source: xdr_voice, expr: count(*), filter: '', better: neither}\n")
    errors = load_catalog(TABLES, [f]).errors
    assert len(errors) == 1 and "field kpis[0].filter" in errors[0], errors


def test_long_expressions_are_cut_in_messages():
    text = "sum(codec) + " + " + ".join(["count(*)"] * 500)
    found = check_kpi(text, VOICE).issues
    assert found and all(len(i) < 400 for i in found), [len(i) for i in found]


# -- unit warnings where they mean something ------------------------------------------------

@pytest.mark.parametrize("text", ["count_if(jitter_ms > 5)", "count_if(one_way_delay_ms < 3)",
                                  "count_if(packet_loss_pct > 0.5)"])
def test_real_small_thresholds_do_not_warn(text):
    checked = check_kpi(text, VOICE, units=UNITS)
    assert checked.issues == [] and checked.warnings == [], checked.warnings


@pytest.mark.parametrize("text", ["count_if(setup_time_ms IN (2, 3))", "count_if(coalesce(setup_time_ms, 0) > 4)"])
def test_unit_warnings_reach_through_in_and_coalesce(text):
    checked = check_kpi(text, VOICE, units=UNITS)
    assert any("setup_time_ms is in ms" in w for w in checked.warnings), checked.warnings


# -- catalog ------------------------------------------------------------------------------------

def test_a_cube_as_kpi_source_is_refused(ws):
    evaluate(ws.lake, load_catalog(ws.tables()), only=["cube_segment_day"])
    assert "cube_segment_day" in ws.tables()
    write(ws.root / "indicators", "k.yaml",
          "kpis:\n  - {name: x, source: cube_segment_day, expr: avg(cei), better: higher}\n")
    errors = load_catalog(ws.tables(), ws.definition_files()).errors
    assert any("field kpis[0].source: cube_segment_day is a cube opencem writes" in e for e in errors), errors


def test_a_dimension_of_two_types_is_refused(tmp_path):
    f = write(tmp_path, "d.yaml", """\
dimensions:
  - name: mixed
    resolve:
      - {column: setup_time_ms}
      - {lookup: subscribers, key: subscriber_id, column: segment}
""")
    errors = [e for e in load_catalog(TABLES, [f]).errors if "dimensions[0]" in e]
    assert len(errors) == 1 and "resolves to a number (" in errors[0] and "and to text (subscribers.segment)" in errors[0]


def test_an_empty_cube_list_is_an_error(tmp_path):
    f = write(tmp_path, "c.yaml", "cubes:\n  mode: replace\n  list: []\n")
    errors = load_catalog(TABLES, [f]).errors
    assert any("lists no cube, so evaluate would compute nothing" in e for e in errors), errors


def test_extending_with_a_cube_of_other_dimensions_under_one_table_is_an_error(tmp_path):
    # A dimension "cell" names its cube cube_cell_day like cell_id's: extend replaced the
    # library's cell cube by one of other dimensions without a word.
    f = write(tmp_path, "c.yaml", """\
dimensions:
  - {name: cell, resolve: [{column: cell_id}]}
cubes:
  mode: extend
  list:
    - {dimensions: [cell], grains: [day]}
""")
    errors = [e for e in load_catalog(TABLES, [f]).errors if "cubes.list[0]" in e]
    assert len(errors) == 1 and "cube_cell_day is written by the cube at library/" in errors[0], errors
    assert "with dimensions cell_id; this one (cell) would replace it" in errors[0]
    same = write(tmp_path, "d.yaml", "cubes:\n  mode: extend\n  list:\n    - {dimensions: [cell_id], grains: [day], min_samples: 5}\n")
    assert load_catalog(TABLES, [same]).errors == []  # same dimensions: a deliberate replacement


def test_a_grain_listed_twice_is_an_error(tmp_path):
    f = write(tmp_path, "c.yaml", "cubes:\n  mode: replace\n  list:\n    - {dimensions: [segment], grains: [day, day]}\n")
    errors = load_catalog(TABLES, [f]).errors
    assert any("field cubes.list[0].grains: a grain is listed twice" in e for e in errors), errors


def test_an_index_extended_twice_in_one_section_is_an_error(tmp_path):
    f = write(tmp_path, "cei.yaml", "cei:\n  mode: extend\n  indices:\n    - {name: voice, weight: 1}\n"
                                    "    - {name: voice, weight: 2}\n")
    errors = load_catalog(TABLES, [f]).errors
    assert any("index voice is listed twice" in e and "line 5" in e for e in errors), errors


def test_a_duplicate_yaml_key_is_refused_with_its_line(tmp_path):
    f = write(tmp_path, "k.yaml", "kpis:\n  - name: x\n    source: xdr_voice\n    expr: count(*)\n"
                                  "    expr: count_if(dropped)\n    better: neither\n")
    with pytest.raises(SpecError) as e:
        read_yaml(f, "Definition file")
    assert "line 5" in str(e.value) and "gives key 'expr' twice" in str(e.value)
    assert any("gives key 'expr' twice" in err for err in load_catalog(TABLES, [f]).errors)


# -- CLI ------------------------------------------------------------------------------------------

def test_kpi_sql_with_an_unknown_engine_is_one_sentence(tmp_path):
    run = cli(tmp_path / "ws", "kpi", "sql", "call_drop_pct", "--engine", "bogus")
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert "unknown engine 'bogus'; choose duckdb or spark" in run.stderr


def test_kpi_sql_stops_on_a_catalog_error(tmp_path):
    ws = tmp_path / "ws"
    (ws / "indicators").mkdir(parents=True)
    write(ws / "indicators", "k.yaml", "kpis:\n  - {name: cei, source: xdr_voice, expr: count(*)}\n")
    run = cli(ws, "kpi", "sql", "call_drop_pct")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.count("cei is reserved") == 1 and run.stdout == ""


def test_kpi_check_of_one_file_named_twice_reports_it_once(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    f = write(tmp_path, "k.yaml", "kpis:\n  - {name: cei, source: xdr_voice, expr: count(*)}\n")
    run = cli(ws, "kpi", "check", str(f), str(tmp_path / "." / "k.yaml"))
    assert run.returncode == 1 and run.stderr.count("cei is reserved") == 1, run.stderr


# -- third review ---------------------------------------------------------------------------------

def test_yaml_aliases_do_not_make_the_duplicate_key_check_exponential(tmp_path):
    lines = ["a0: &a0 {k: 1}"] + [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 40)] + ["kpis: []"]
    f = write(tmp_path, "bomb.yaml", "\n".join(lines) + "\n")
    run = subprocess.run([sys.executable, "-c", f"from opencem.specfile import read_yaml; read_yaml(__import__('pathlib')"
                          f".Path({str(f)!r}), 'Definition file')"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
