"""Diagnosis end to end on two small operators of the shipped benchmark scenario: the learned
layer trained on one (seed 41), every figure taken on the other (seed 43), which it never saw."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.compute as pc
import pytest

from opencem.diagnose import decide, score
from opencem.diagnose.learned import load_model
from opencem.diagnose.run import DiagnoseError, diagnose, evidence_of, find_problems, self_check, setup, train
from opencem.specfile import SpecError

from .conftest import truth_tables

FIXTURES = Path(__file__).with_name("fixtures")
FAULT_CAUSES = ("suspension", "wrong_apn", "volte_off", "data_cap_throttling", "core_degradation", "olt_outage",
                "backhaul_degradation", "cell_outage", "sleeping_cell", "congestion", "interference",
                "coverage_hole", "dns_failure", "program_source_fault", "cdn_degradation", "app_server_fault",
                "firmware_bug")


@pytest.fixture(scope="module")
def trained(train_ws, tmp_path_factory):
    run = setup(train_ws.root)
    labels, _ = truth_tables(train_ws)
    model = train(train_ws.lake, run, labels)
    folder = tmp_path_factory.mktemp("model")
    model.save(folder)
    run.model = load_model(folder)  # what is scored is what was saved
    return run


@pytest.fixture(scope="module")
def scored(score_ws, trained):
    conclusions = diagnose(score_ws.lake, trained)
    labels, faults = truth_tables(score_ws)
    return conclusions, labels, faults


def test_every_cause_is_in_the_scored_operator_and_the_diagnosis_finds_its_cases(scored):
    conclusions, labels, _ = scored
    present = set(labels.column("fault_type").to_pylist())
    assert set(FAULT_CAUSES) <= present, set(FAULT_CAUSES) - present
    f = score.figures(conclusions, labels)
    assert f["missed"] <= 0.005 * f["labelled_cases"] and f["beyond_labels"] <= 0.005 * f["labelled_cases"]
    pooled = f["pooled"]
    # measured on this pair (rules + learned layer, trained on one 2,500-subscriber day): domain
    # 80.1 %, macro-F1 0.777; the benchmark has the full-size figures. These floors catch a regression.
    assert pooled["domain_accuracy"] >= 0.75, pooled
    assert pooled["macro_f1_domains"] >= 0.70, pooled
    assert pooled["location_ac3"] >= pooled["location_ac1"] >= 0.60, pooled
    recall = {r["cause"]: r["recall"] for r in f["per_cause"] if r["cases"] >= 30}
    # Known gaps on this small pair (a few faults of each to learn from): congestion against
    # busy-hour load, coverage holes against weak coverage, interference against low SINR.
    known_weak = {"congestion", "coverage_hole", "interference"}
    weak = {c: r for c, r in recall.items() if c in FAULT_CAUSES and c not in known_weak and (r or 0) < 0.3}
    assert not weak, weak


def test_the_learned_layer_beats_the_rules_alone(score_ws, scored):
    conclusions, labels, _ = scored
    rules_only = diagnose(score_ws.lake, setup(score_ws.root))
    both = score.figures(conclusions, labels)["pooled"]["domain_accuracy"]
    alone = score.figures(rules_only, labels)["pooled"]["domain_accuracy"]
    assert both > alone
    decided = set(pc.unique(conclusions.column("decided_by")).to_pylist())
    assert any(d.startswith("model:lightgbm-") for d in decided) and any(d.startswith("rule:") for d in decided)


def test_explanations_name_the_cases_real_values(score_ws, trained):
    ev = evidence_of(score_ws.lake, trained.rules)
    out = decide.conclude(ev, trained.rules, trained.model)
    rows = {(r["subscriber_id"], r["service"], r["hour_start"]): r for r in ev.to_pylist()}
    checked = 0
    for c in out.filter(pc.equal(out.column("decided_by"), "rule:olt_shared_outage")).to_pylist()[:50]:
        e = rows[(c["subscriber_id"], c["service"], c["hour_start"])]
        assert f"down {round(e['line_outage_s'])} s" in c["evidence"] and f"OLT {e['olt_id']}" in c["evidence"]
        checked += 1
    for c in out.filter(pc.equal(out.column("decided_by"), "rule:volte_off_on_handset")).to_pylist()[:50]:
        e = rows[(c["subscriber_id"], c["service"], c["hour_start"])]
        assert f"{100 * e['user_csfb_share_good_rsrp']:.0f}%" in c["evidence"]
        assert f"{round(e['poor_setup_time_max_ms'])} ms" in c["evidence"]
        checked += 1
    assert checked >= 10
    # a learned-layer conclusion explains itself with the values of the case too
    learned = out.filter(pc.starts_with(out.column("decided_by"), "model:")).to_pylist()
    assert learned and all(c["evidence"].startswith("Learned layer: ") and "{" not in c["evidence"] for c in learned)


def test_one_outage_is_one_problem(scored):
    conclusions, labels, faults = scored
    problems, membership = find_problems(conclusions)
    figures = score.problem_figures(membership, problems, labels, faults)
    assert figures["network_faults_with_cases"] >= 10
    assert figures["share"] >= 0.3, figures  # measured 0.375 (6 of 16): far from the 95 %
    olt = problems.filter(pc.equal(problems.column("cause"), "olt_outage")).to_pylist()
    assert olt and max(p["affected_subscribers"] for p in olt) >= 20
    assert all(p["end_time"] > p["start_time"] and p["services"] for p in problems.to_pylist())


def test_diagnosis_never_reads_the_truth(score_ws, trained, tmp_path):
    before = diagnose(score_ws.lake, trained)
    # the same lake without any truth beside it: the same conclusions, value for value
    moved = tmp_path / "truth-away"
    shutil.move(str(score_ws.truth_dir), moved)
    try:
        after = diagnose(score_ws.lake, trained)
    finally:
        shutil.move(str(moved), score_ws.truth_dir)
    key = ["subscriber_id", "service", "hour_start"]
    a, b = (t.sort_by([(k, "ascending") for k in key]) for t in (after, before))
    assert a.select(key).equals(b.select(key))
    # the same conclusions (DuckDB's mode() may break a tie between two cells either way)
    same = pc.sum(pc.equal(a.column("cause"), b.column("cause"))).as_py()
    assert same >= 0.995 * a.num_rows


def test_self_check_tells_the_customer_their_side(score_ws, trained, scored):
    conclusions, _, _ = scored
    apn = conclusions.filter(pc.equal(conclusions.column("rule"), "apn_misconfigured")).to_pylist()
    assert apn
    case = apn[0]
    result = self_check(score_ws.lake, trained, case["subscriber_id"],
                        case["hour_start"].replace(minute=30).astimezone(timezone.utc))
    assert result["side"] == "user" and result["cause"] == "wrong_apn" and "APN" in result["customer_text"]
    assert result["cases"] and result["evidence"]


def test_a_subscriber_without_data_and_a_time_outside_the_lake(score_ws, trained):
    with pytest.raises(DiagnoseError, match="subscriber S99999999 is not in the lake"):
        self_check(score_ws.lake, trained, "S99999999")
    with pytest.raises(DiagnoseError, match="outside the lake"):
        self_check(score_ws.lake, trained, "S00000001", datetime(2001, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(DiagnoseError, match="outside the lake"):
        diagnose(score_ws.lake, trained, datetime(2030, 1, 1, tzinfo=timezone.utc),
                 datetime(2030, 1, 2, tzinfo=timezone.utc))
    # a customer with no poor hour: a clear answer, not an error
    quiet = self_check(score_ws.lake, trained, "S00000001", lookback=__import__("datetime").timedelta(hours=1))
    assert quiet["poor_cases"] >= 0 and quiet["customer_text"]


@pytest.mark.parametrize("bad", sorted(FIXTURES.glob("*.bad.yaml")), ids=lambda p: p.stem)
def test_bad_rule_files_report_every_problem_with_file_line_and_field(bad):
    from opencem.diagnose.evidence import empty_feature_types
    from opencem.diagnose.rules import load_rules

    with pytest.raises(SpecError) as err:
        load_rules(bad, empty_feature_types())
    assert err.value.sentences == bad.with_suffix(".txt").read_text().splitlines()


def test_the_library_rules_check_clean():
    from opencem.diagnose.evidence import empty_feature_types
    from opencem.diagnose.rules import load_rules

    rules = load_rules(None, empty_feature_types())
    assert len(rules.rules) >= 20 and not rules.warnings and set(rules.poor_sql) == {
        "voice", "mobile_data", "video", "home_broadband"}
