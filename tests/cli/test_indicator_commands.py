"""The indicator commands end to end: check, preview, evaluate, calibrate, qoe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opencem.cli.main import app
from opencem.engines.duckdb import run_user_sql
from opencem.indicators.catalog import load_catalog
from opencem.simulate.truth import query_truth
from opencem.workspace import Workspace
from tests.indicators.test_definitions import FIXTURES

PROJECT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def ws(lake, tmp_path_factory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("cmd"))
    shutil.copytree(lake.root, ws.root / "lake")
    return ws


def run(ws: Workspace, *args: str):
    return runner.invoke(app, ["--workspace", str(ws.root), *args], catch_exceptions=False)


def test_kpi_check_reports_every_problem_and_exits_1(ws):
    bad = run(ws, "kpi", "check", str(FIXTURES / "typos.bad.yaml"))
    assert bad.exit_code == 1
    assert "did you mean dropped?" in bad.output and "did you mean call_drop_rate_pct?" in bad.output
    assert "Traceback" not in bad.output


def test_kpi_check_accepts_a_good_file(ws, tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("kpis:\n  - name: long_calls\n    source: xdr_voice\n    expr: count_if(duration_s > 600)\n")
    result = run(ws, "kpi", "check", str(good))
    assert result.exit_code == 0 and "ok: 1 KPIs, 0 KQIs" in result.output


def test_kpi_preview_shows_the_kpi_per_segment(ws):
    result = run(ws, "kpi", "preview", "call_drop_pct", "--by", "segment", "--limit", "20")
    assert result.exit_code == 0, result.output
    assert "call_drop_pct by segment per day" in result.output.replace("\n", " ")
    assert all(s in result.output for s in ("enterprise", "postpaid", "premium", "prepaid", "youth"))


def test_kpi_preview_unknown_name_is_one_sentence(ws):
    result = run(ws, "kpi", "preview", "call_drop_pcnt")
    assert result.exit_code == 2
    assert "unknown KPI or KQI call_drop_pcnt (did you mean call_drop_pct?)" in " ".join(result.output.split())


def test_evaluate_writes_cubes_then_skips_unchanged_days(ws):
    first = run(ws, "evaluate", "--cube", "cube_segment_day")
    assert first.exit_code == 0, first.output
    rows, segments, days, low, high = run_user_sql(ws.lake, """SELECT count(*), count(DISTINCT segment),
        count(DISTINCT period_start), min(cei), max(cei) FROM cube_segment_day""").fetchall()[0]
    assert segments == 5 and rows == 5 * days and 0 <= low <= high <= 100
    again = run(ws, "evaluate", "--cube", "cube_segment_day")
    line = next(l for l in again.output.splitlines() if "cube_segment_day" in l)
    assert line.split("│")[2].strip() == "0" and line.split("│")[3].strip() == str(days)  # computed, unchanged
    bad = run(ws, "evaluate", "--grain", "week")
    assert bad.exit_code == 2 and "not one of 1min, 5min, 15min, hour, day" in bad.output


def test_cei_calibrate_writes_weights_that_load_and_reports_holdout_fit(ws, tmp_path):
    assert run(ws, "evaluate", "--cube", "cube_subscriber_day").exit_code == 0
    out = tmp_path / "cei.yaml"
    result = run(ws, "cei", "calibrate", "--target", "complaints", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "hand" in result.output and "calibrated" in result.output
    cat = load_catalog(ws.tables(), [out])
    assert cat.errors == []
    weights = [n.weight for n in cat.cei.indices]
    assert abs(sum(weights) - 1) < 0.01 and all(w >= 0 for w in weights)
    # For programs: the held-out fit as rows, the same in every format, and no YAML mixed in.
    as_json = run(ws, "cei", "calibrate", "--target", "complaints", "--format", "json")
    fit = json.loads(as_json.stdout)
    assert [r["weights"] for r in fit] == ["hand", "calibrated"]
    assert all(-1 <= r["pearson"] <= 1 and 0 <= r["auc"] <= 1 and r["holdout_customers"] > 0 for r in fit)
    as_csv = run(ws, "cei", "calibrate", "--target", "complaints", "--format", "csv").stdout
    assert as_csv.splitlines()[0] == "weights,pearson,spearman,auc,holdout_customers,customers"
    assert [float(line.split(",")[1]) for line in as_csv.splitlines()[1:]] == [r["pearson"] for r in fit]


def test_cei_calibrate_needs_the_subscriber_cube(tmp_path, lake):
    fresh = Workspace(tmp_path / "fresh")
    shutil.copytree(lake.root, fresh.root / "lake")  # loaded, but never evaluated
    result = run(fresh, "cei", "calibrate")
    assert result.exit_code == 2 and "run `opencem evaluate --cube cube_subscriber_day` first" in " ".join(result.output.split())
    nothing = run(Workspace(tmp_path / "empty"), "cei", "calibrate")
    assert nothing.exit_code == 2 and "no opencem workspace in" in " ".join(nothing.output.split())


def test_qoe_video_reads_a_p1203_session_file(ws):
    result = run(ws, "qoe", "video", "--input", str(PROJECT / "examples" / "qoe" / "video-session.json"), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert 1 <= out["mos"] <= 5 and len(out["per_second"]) == 60


def test_a_file_deleted_by_hand_is_named_with_its_remedy(lake, tmp_path):
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(lake.root, ws.root / "lake")
    assert run(ws, "evaluate", "--cube", "cube_segment_day").exit_code == 0
    query = "SELECT count(*) AS n, round(sum(cei), 6) AS s FROM cube_segment_day"
    before = json.loads(run(ws, "sql", query, "--format", "json").output)
    cube_file = sorted((ws.root / "lake" / "cube_segment_day").rglob("*.parquet"))[0]
    cube_file.unlink()
    damaged = run(ws, "sql", query)
    said = " ".join(damaged.output.split())
    assert damaged.exit_code == 2 and "Traceback" not in damaged.output
    assert f"the lake is damaged: {cube_file.relative_to(ws.root / 'lake')}" in said
    assert "recompute it with `opencem evaluate --full --cube cube_segment_day`" in said
    assert run(ws, "evaluate", "--full", "--cube", "cube_segment_day").exit_code == 0
    assert json.loads(run(ws, "sql", query, "--format", "json").output) == before
    # A source file has no recomputation: the sentence says so, and evaluate stops cleanly.
    source_file = sorted((ws.root / "lake" / "xdr_voice").rglob("*.parquet"))[0]
    source_file.unlink()
    stopped = run(ws, "evaluate", "--full", "--cube", "cube_segment_day")
    said = " ".join(stopped.output.split())
    assert stopped.exit_code == 2 and "Traceback" not in stopped.output
    assert f"{source_file.relative_to(ws.root / 'lake')}" in said and "restore it from a backup" in said


def test_preview_worst_follows_the_kpi_direction_and_finds_the_faulty_device(ws, truth_dir):
    # call_drop_pct is better lower: --worst lists the highest drop rates first. The simulator's
    # firmware fault (read here only to score the test) makes one device model drop calls.
    result = run(ws, "kpi", "preview", "call_drop_pct", "--by", "device_model", "--worst", "--format", "json")
    rows = json.loads(result.stdout)
    faulty = query_truth(ws.lake, truth_dir, "SELECT location_id FROM truth.faults WHERE fault_type = 'firmware_bug'")[0][0].as_py()
    assert rows[0]["device_model"] == faulty
    drops = [r["call_drop_pct"] for r in rows]
    assert drops == sorted(drops, reverse=True)
    # A better-higher KPI ranks the other way.
    rows = json.loads(run(ws, "kpi", "preview", "call_setup_success_pct", "--by", "segment", "--worst",
                          "--format", "json").stdout)
    values = [r["call_setup_success_pct"] for r in rows]
    assert values == sorted(values)


def test_preview_honours_min_samples(ws):
    # cell_id per hour: the configured cell cube's min_samples (10) applies unless told otherwise.
    default = json.loads(run(ws, "kpi", "preview", "voice_retainability", "--by", "cell_id", "--grain", "hour",
                             "--format", "json").stdout)
    everything = json.loads(run(ws, "kpi", "preview", "voice_retainability", "--by", "cell_id", "--grain", "hour",
                                "--min-samples", "1", "--format", "json").stdout)
    assert default and all(r["records_xdr_voice"] >= 10 for r in default)
    assert len(everything) > len(default) and min(r["records_xdr_voice"] for r in everything) < 10
    # The note says how many rows were left out and how to see them.
    table = run(ws, "kpi", "preview", "voice_retainability", "--by", "cell_id", "--grain", "hour")
    left_out = len(everything) - len(default)
    assert f"{left_out:,} rows with fewer than 10 records are left out (--min-samples 1 shows them)" in " ".join(table.output.split())
    # Worst first: score ascending, ties by the worse value, then by more records.
    worst = json.loads(run(ws, "kpi", "preview", "voice_retainability", "--by", "cell_id", "--grain", "hour",
                           "--worst", "--format", "json").stdout)
    keys = [(r["voice_retainability_score"], -r["voice_retainability"], -r["records_xdr_voice"]) for r in worst]
    assert keys == sorted(keys)


def test_worst_on_a_volume_is_one_sentence(ws):
    result = run(ws, "kpi", "preview", "voice_call_count", "--worst")
    assert result.exit_code == 2
    assert "voice_call_count declares no direction (better: neither), so it has no worst rows" in " ".join(result.output.split())


def test_kpi_show_cei_and_cubes_say_where_each_part_comes_from(ws, tmp_path):
    mine = ws.root / "indicators"
    mine.mkdir(exist_ok=True)
    (mine / "extend.yaml").write_text("""\
cei:
  mode: extend
  indices:
    - name: voice
      kqis: {voice_setup_delay: 0.4}
cubes:
  mode: extend
  list:
    - {dimensions: [cell_id], grains: [hour], min_samples: 20}
""")
    try:
        tree = json.loads(run(ws, "kpi", "show", "cei", "--format", "json").stdout)
        delay = next(r for r in tree if r["kqi"] == "voice_setup_delay")
        assert delay["kqi_weight"] == 0.4 and delay["kqi_from"] == f"{mine / 'extend.yaml'}:5"
        assert delay["index_from"].startswith("library/kqi_cei.yaml:")  # the node itself is the library's
        drop = next(r for r in tree if r["kqi"] == "voice_retainability")
        assert drop["kqi_from"].startswith("library/kqi_cei.yaml:")
        cubes = {r["cube_table"]: r for r in json.loads(run(ws, "kpi", "show", "cubes", "--format", "json").stdout)}
        assert cubes["cube_cell_hour"]["min_samples"] == 20 and cubes["cube_cell_hour"]["defined_in"] == f"{mine / 'extend.yaml'}:9"
        assert cubes["cube_cell_15min"]["defined_in"].startswith("library/dimensions.yaml:")
    finally:
        (mine / "extend.yaml").unlink()


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_kpi_sql_prints_what_runs(ws, engine, engine_ready):
    result = run(ws, "kpi", "sql", "call_drop_pct", "--by", "segment", "--engine", engine)
    assert result.exit_code == 0, result.output
    sql = result.stdout
    assert ("TRY_DIVIDE" in sql.upper()) == (engine == "spark") and "NULLIF" in sql.upper() or engine == "spark"
    if engine == "duckdb":  # run by hand, it gives what preview shows
        from opencem.engines.duckdb import connect

        con = connect(ws.lake)
        got = {(r[0], r[1]): r[-1] for r in con.execute(
            f"SELECT period_start, segment, call_drop_pct FROM ({sql})").fetchall()}
        shown = json.loads(run(ws, "kpi", "preview", "call_drop_pct", "--by", "segment", "--min-samples", "1",
                               "--format", "json").stdout)
        assert len(got) == len(shown) > 0
        for r in shown:
            match = next(v for (t, s), v in got.items() if s == r["segment"] and t.isoformat().startswith(r["period_start"][:10]))
            assert match == pytest.approx(r["call_drop_pct"], rel=1e-12)


def test_cei_calibrate_says_which_weights_to_keep(ws):
    for target in ("nps", "complaints"):
        result = run(ws, "evaluate", "--cube", "cube_subscriber_day")
        assert result.exit_code == 0, result.output
        result = run(ws, "cei", "calibrate", "--target", target, "--format", "json")
        fit = {r["weights"]: r["pearson"] for r in json.loads(result.stdout)}
        said = " ".join(result.stderr.split())
        if fit["calibrated"] > fit["hand"]:
            assert f"The calibrated weights follow {target} better" in said and "use them" in said
        else:
            assert f"warning: The calibrated weights follow {target} no better than the hand-set ones" in said
            assert "keep the hand-set weights" in said
        assert f"Pearson {fit['calibrated']:.3f} calibrated against {fit['hand']:.3f} hand-set" in said


def test_cei_calibrate_names_the_missing_input(ws, tmp_path):
    copy = Workspace(tmp_path / "copy")
    shutil.copytree(ws.root / "lake", copy.root / "lake")
    assert run(copy, "evaluate", "--cube", "cube_subscriber_day").exit_code == 0
    with copy.lake.transaction() as txn:
        txn.replace_days("surveys", sorted({f.date for f in copy.lake.files("surveys")}))
    result = run(copy, "cei", "calibrate", "--target", "nps")
    assert result.exit_code == 2
    assert ("there is nothing to calibrate on: the surveys table is empty (no NPS survey answers loaded); "
            "load surveys or use --target complaints") in " ".join(result.output.split())
