"""The expression sandbox holds on its own and on every engine (issue 10): every argument of
every call is checked, types are checked so what passes runs alike on DuckDB and Spark, Spark
substitutes no variables, and hostile files give one sentence, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from opencem.indicators.catalog import load_catalog
from opencem.indicators.expr import check_filter, check_kpi, check_kqi
from opencem.indicators.plan import compile_cube
from opencem.indicators.render import RENDERERS
from opencem.indicators.spec import Cube
from opencem.schema import TABLES

VOICE = {f.name: f.type for f in TABLES["xdr_voice"].columns}
DATA = {f.name: f.type for f in TABLES["xdr_data"].columns}
UNITS = {f.name: (f.metadata or {}).get(b"unit", b"").decode() for f in TABLES["xdr_voice"].columns}


def issues(text: str, columns=VOICE) -> list[str]:
    return check_kpi(text, columns).issues


@pytest.mark.parametrize("text, problem", [
    ("max(setup_time_ms, (SELECT max(arpu_monthly) FROM subscribers))", "max takes 1 argument, not 2"),
    ("count(dropped, read_csv('/etc/passwd'))", "count takes 1 argument, not 2"),
    ("min(setup_time_ms, 3)", "min takes 1 argument, not 2"),
    ("count_if(dropped, true)", "count_if takes 1 argument, not 2"),
    ("count(*, dropped)", "count takes 1 argument, not 2"),
    ("avg(round(setup_time_ms, 2, 3))", "round takes 1 to 2 arguments, not 3"),
    ("avg(floor(setup_time_ms, 2))", "floor takes 1 argument, not 2"),
    ("avg(round(setup_time_ms, one_way_delay_ms))", "round's second argument is the number of decimals"),
    ("percentile(setup_time_ms, 0.5, 1)", "percentile takes two arguments"),
])
def test_every_argument_of_every_call_is_checked(text, problem):
    found = issues(text)
    assert any(problem in i for i in found), found


@pytest.mark.parametrize("text, problem", [
    ("sum(codec)", "sum needs a number, but codec is text"),
    ("sum(dropped)", "sum needs a number, but dropped is true/false; count_if(dropped) counts the rows where it holds"),
    ("avg(start_time)", "avg needs a number, but start_time is a timestamp"),
    ("max(codec)", "max needs a number, but codec is text"),
    ("count_if(setup_time_ms)", "count_if needs true/false, but setup_time_ms is a number; compare it with a value"),
    ("count_if(start_success = 'true')", ""),  # not a voice column: checked below on video
    ("count_if(dropped = 'true')", "compares true/false (dropped) with text ('true'); write dropped or NOT dropped"),
    ("count_if(codec > 3)", "compares text (codec) with a number (3)"),
    ("sum(setup_time_ms + codec)", "+ needs a number, but codec is text"),
    ("count_if(dropped AND setup_time_ms)", "AND needs true/false, but setup_time_ms is a number"),
    ("sum(CASE WHEN dropped THEN 1 ELSE 'x' END)", "CASE mixes a number (1) with text ('x')"),
    ("sum(coalesce(setup_time_ms, codec))", "coalesce mixes a number (setup_time_ms) with text (codec)"),
    ("count_if(codec IN ('AMR-WB', 3))", "IN mixes text (codec) with a number (3)"),
    ("sum(setup_time_ms) * 1e999", "number 1e999 is out of range (it would be infinite)"),
    ("count(*) * 99999999999999999999999", "has more digits than every engine computes alike"),
    ("count(*) * 0.12345678901234567", "has more digits than every engine computes alike"),
    ("count_if(dropped) > 3", "is true/false; a KPI is a number"),
    ("count_if(codec = '${env:HOME}')", "holds ${, which Spark would read as a variable"),
    ("count_if(codec = '${system:user.home}')", "holds ${"),
    ("avg(len(codec))", "function len is not allowed"),
    ("sum(hours_between(start_time, setup_time_ms))", "hours_between needs a timestamp, but setup_time_ms is a number"),
])
def test_ill_typed_expressions_are_one_sentence(text, problem):
    found = issues(text)
    if not problem:
        return
    assert any(problem in i for i in found), found


def test_bool_against_text_on_a_video_column():
    video = {f.name: f.type for f in TABLES["xdr_video"].columns}
    found = check_kpi("count_if(start_success = 'true')", video).issues
    assert found == ["start_success = 'true' compares true/false (start_success) with text ('true'); "
                     "write start_success or NOT start_success"]


@pytest.mark.parametrize("text, problem", [
    ("codec", "filter 'codec' is text, not true/false for each row"),
    ("setup_time_ms", "filter 'setup_time_ms' is a number, not true/false for each row; e.g. setup_time_ms > 0"),
    ("dropped = 1", "compares true/false (dropped) with a number (1)"),
])
def test_filters_must_be_true_or_false(text, problem):
    found = check_filter(text, VOICE).issues
    assert any(problem in i for i in found), found


def test_well_typed_expressions_pass():
    for text in ["100 * count_if(dropped) / count_if(setup_success)", "avg(CASE WHEN dropped THEN 1.0 ELSE 0 END)",
                 "sum(coalesce(setup_time_ms, 0)) / count(*)", "count_if(codec IN ('AMR-WB', 'EVS'))",
                 "avg(emodel_mos(codec, packet_loss_pct, one_way_delay_ms))", "count_if(dropped IS TRUE)",
                 "avg(if(dropped, 1, 0))", "percentile(setup_time_ms, 0.95)", "count(distinct subscriber_id)",
                 "sum(round(setup_time_ms, 2))", "count_if(voice_bearer <> 'CSFB' AND NOT dropped)"]:
        assert issues(text) == [], text


@pytest.mark.parametrize("text, warning", [
    ("count_if(setup_time_ms > 3)", "setup_time_ms is in ms, so 3 means 3 ms; 3 s would be 3000"),
    ("count_if(coalesce(setup_time_ms, 0) BETWEEN 1 AND 3000)", "setup_time_ms is in ms, so 1 means 1 ms"),
    ("count_if(prb_load_pct > 0.8)", "prb_load_pct is in %, so 0.8 means 0.8 %; a fraction 0.8 would be 80"),
    ("count_if(setup_time_ms > one_way_delay_ms)", None),
    ("count_if(jitter_ms > 5)", None),  # a few ms of jitter is a real threshold
    ("count_if(packet_loss_pct > 0.5)", None),  # and so is half a percent of loss
])
def test_thresholds_in_another_unit_warn(text, warning):
    checked = check_kpi(text, VOICE, units=UNITS)
    assert checked.issues == []
    if warning is None:
        assert checked.warnings == []
    else:
        assert any(warning in w for w in checked.warnings), checked.warnings


def test_columns_of_different_units_side_by_side_warn():
    data_units = {f.name: (f.metadata or {}).get(b"unit", b"").decode() for f in TABLES["xdr_data"].columns}
    ms = [n for n, u in data_units.items() if u == "ms"]
    kbps = [n for n, u in data_units.items() if u == "kbps"]
    checked = check_kpi(f"count_if({ms[0]} > {kbps[0]})", DATA, units=data_units)
    assert checked.warnings == [f"{ms[0]} > {kbps[0]} puts {ms[0]} (ms) beside {kbps[0]} (kbps): different units; convert one first"]


def test_kqi_expressions_refuse_qoe_functions_and_kqis():
    kpis, kqis = {"call_drop_pct", "speech_mos"}, {"voice_retainability"}
    assert check_kqi("emodel_mos('AMR-WB', 1, 100)", kpis, kqis).issues == [
        "emodel_mos() is computed per record, so it belongs in a KPI (e.g. avg(EMODEL_MOS('AMR-WB', 1, 100))), "
        "not in a KQI expression"]
    assert check_kqi("voice_retainability * 2", kpis, kqis).issues == [
        "voice_retainability is a KQI; a KQI is computed from KPIs, so use the KPIs of voice_retainability here"]
    assert check_kqi("call_drop_pct > 1", kpis, kqis).issues == [
        "KQI expression 'call_drop_pct > 1' is true/false; a KQI is a number"]


def test_vendor_counters_can_be_used_by_bare_name():
    cols = {f.name: f.type for f in TABLES["pm_counters"].columns if f.name in ("cell_id", "granularity_s")}
    checked = check_kpi("100 * sum(pmRrcConnEstabSucc) / sum(pmRrcConnEstabAtt)", cols, counters=True)
    assert checked.ok and checked.counters == {"pmRrcConnEstabSucc", "pmRrcConnEstabAtt"}


def test_an_unknown_counter_warning_says_what_the_value_will_be(tmp_path):
    f = tmp_path / "k.yaml"
    f.write_text("kpis:\n  - {name: my_counter, source: pm_counters, expr: sum(pmNoSuchCounter), better: higher}\n")
    warnings = [str(i) for i in load_catalog(TABLES, [f]).issues if i.level == "warning" and i.file == f.resolve()]
    assert warnings == ["Definition file k.yaml, line 2, field kpis[0].expr: counter pmNoSuchCounter is not produced "
                        "by any bundled vendor dictionary: unless a workspace dictionary maps it, no row has it, so a "
                        "sum or average of it is empty (null) and a count of it 0."]


def deep_files(tmp_path: Path) -> dict[str, Path]:
    nested = "(" * 50 + "count(*)" + ")" * 50
    long_sum = " + ".join(["count(*)"] * 1000)
    out = {}
    for name, expr in {"nested": nested, "long_sum": long_sum}.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"kpis:\n  - name: {name}\n    source: xdr_voice\n    better: neither\n    expr: '{expr}'\n")
        out[name] = path
    return out


def test_deep_and_long_expressions_are_one_sentence(tmp_path):
    files = deep_files(tmp_path)
    cat = load_catalog(TABLES, list(files.values()))
    assert not [e for e in cat.errors if "nested.yaml" in e]  # 50 levels are within the limit
    long_sum = [e for e in cat.errors if "long_sum.yaml" in e]
    assert len(long_sum) == 1 and "operators deep (a long chain of + or nested calls); at most 64" in long_sum[0]


def test_fifty_nested_parentheses_check_and_plan(tmp_path):
    # 50 levels are within the limit: they check and compile without RecursionError.
    f = tmp_path / "k.yaml"
    f.write_text("kpis:\n  - {name: deep, source: xdr_voice, expr: '" + "(" * 50 + "count(*)" + ")" * 50 + "'}\n")
    cat = load_catalog(TABLES, [f])
    assert not [e for e in cat.errors if "k.yaml" in e]
    long_chain = tmp_path / "k3.yaml"
    long_chain.write_text("kpis:\n  - {name: chain, source: xdr_voice, expr: '" + " + ".join(["count(*)"] * 60) + "'}\n")
    cat = load_catalog(TABLES, [f, long_chain])
    plan = compile_cube(cat, TABLES, Cube(dimensions=["cell_id"]), "day", ["deep", "chain"])
    for renderer in RENDERERS.values():
        assert "count(*)" in renderer().render(plan).lower()
    g = tmp_path / "k2.yaml"
    g.write_text("kpis:\n  - {name: deeper, source: xdr_voice, expr: '" + "(" * 500 + "count(*)" + ")" * 500 + "'}\n")
    assert any("nests parentheses 501 deep; at most 64" in e for e in load_catalog(TABLES, [g]).errors)


def test_a_hostile_file_in_the_workspace_does_not_break_kpi_list(tmp_path):
    ws = tmp_path / "ws"
    (ws / "indicators").mkdir(parents=True)
    for path in deep_files(tmp_path).values():
        (ws / "indicators" / path.name).write_text(path.read_text())
    (ws / "indicators" / "inf.yaml").write_text(
        "kqis:\n  - {name: q_inf, expr: call_drop_pct, service: voice, score: {good: .inf, bad: 3}}\n"
        "cei:\n  mode: extend\n  indices:\n    - {name: voice, weight: .nan}\n")
    run = subprocess.run([sys.executable, "-m", "opencem", "-w", str(ws), "kpi", "list", "--format", "csv"],
                         capture_output=True, text=True, timeout=120)
    assert "Traceback" not in run.stderr and run.returncode == 0, run.stderr
    assert "long_sum.yaml" in run.stderr and "nested.yaml" not in run.stderr and "inf.yaml, line 2, field kqis[0].score.good" in run.stderr
    assert "inf.yaml, line 6, field cei.indices[0].weight" in run.stderr
    assert run.stdout.startswith("kind,name,")
