"""Rule files: every problem at once with file, line and field; the standard rules check and
pass their unit tests; `opencem rules check|test` exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from opencem.rules.catalog import load_rules
from opencem.rules.expr import CountQuery, CubeQuery
from opencem.rules.testing import expand_values, run_rule_tests

FIXTURES = Path(__file__).parent / "fixtures"
LIBRARY = Path(__file__).parents[2] / "src" / "opencem" / "rules" / "library" / "standard.rules.yaml"


@pytest.mark.parametrize("name", ["shape", "semantics"])
def test_a_bad_rule_file_names_every_problem_with_its_line_and_field(ctx, name):
    _, issues = load_rules([FIXTURES / f"{name}.bad.yaml"], ctx)
    assert [str(i) for i in issues] == (FIXTURES / f"{name}.bad.txt").read_text().splitlines()


def test_the_standard_rules_check_clean_and_cover_every_kind(ctx):
    rules, issues = load_rules([LIBRARY], ctx)
    assert [i for i in issues if i.level == "error"] == []
    assert {cr.query.kind for cr in rules} == {"threshold", "anomaly", "count", "burst"}
    drops = next(cr for cr in rules if cr.rule.name == "RepeatedDroppedCalls")
    assert isinstance(drops.query, CountQuery) and drops.query.min_count == 3 and drops.query.range_s == 3600
    assert drops.query.by == ("subscriber_id",)
    stall = next(cr for cr in rules if cr.rule.name == "CellVideoStallHigh")
    assert isinstance(stall.query, CubeQuery) and stall.query.dimensions == ("cell_id",)
    assert stall.rule.for_s == 1800 and stall.rule.keep_firing_for_s == 900


def test_the_standard_rules_pass_their_unit_tests(ctx):
    checks, failures = run_rule_tests(FIXTURES / "standard.test.yaml", ctx)
    assert checks == 8 and [str(f) for f in failures] == []


def test_a_wrong_expectation_fails_and_shows_what_fired(ctx, tmp_path):
    text = (FIXTURES / "standard.test.yaml").read_text().replace(
        "rule_files: [../../../src", f"rule_files: [{LIBRARY.parents[4]}/src").replace(
        "- eval_time: 45m\n        alertname: CellVideoStallHigh\n",
        "- eval_time: 45m\n        alertname: CellVideoStallHigh\n        exp_alerts:\n"
        "          - exp_labels: {cell_id: C1}\n", 1)
    (tmp_path / "wrong.test.yaml").write_text(text)
    checks, failures = run_rule_tests(tmp_path / "wrong.test.yaml", ctx)
    assert checks == 8 and len(failures) == 1
    assert failures[0].eval_time == "45m" and failures[0].got == []  # pending at 45m, not firing yet


def test_promtool_value_notation():
    assert expand_values("1 2 _ 3") == [1, 2, None, 3]
    assert expand_values("5x3") == [5, 5, 5, 5]
    assert expand_values("1+2x3 10-1x2") == [1, 3, 5, 7, 10, 9, 8]
    assert expand_values("_x2") == [None, None, None]
    with pytest.raises(ValueError, match="'abc' is not a value"):
        expand_values("1 abc")


def _opencem(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "opencem", "--workspace", str(cwd / "ws"), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def test_the_commands_exit_1_on_problems_and_0_when_clean(tmp_path):
    bad = _opencem("rules", "check", str(FIXTURES / "semantics.bad.yaml"), cwd=tmp_path)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.count("error: Rule file semantics.bad.yaml") == 9
    good = _opencem("rules", "check", str(LIBRARY), cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert "8 rules in 1 file" in good.stdout
    passed = _opencem("rules", "test", str(FIXTURES / "standard.test.yaml"), cwd=tmp_path)
    assert passed.returncode == 0 and "SUCCESS" in passed.stdout, passed.stdout + passed.stderr
    missing = _opencem("rules", "check", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_a_malicious_filter_or_unsafe_expression_is_refused(ctx, tmp_path):
    f = tmp_path / "evil.rules.yaml"
    f.write_text("""groups:
  - name: g
    rules:
      - alert: Injection
        expr: "count_over_time(xdr_voice[60m] where dropped) or 1=1; DROP TABLE rules_series; --) >= 3"
      - alert: FileRead
        expr: "count_over_time(xdr_voice[60m] where subscriber_id in (select * from read_text('/etc/passwd'))) >= 1"
      - alert: Function
        expr: "cube_cell_15min.cei < getenv('HOME')"
""")
    rules, issues = load_rules([f], ctx)
    assert rules == [] and len([i for i in issues if i.level == "error"]) == 3


def test_standard_and_a_file_of_ones_own_run_together(tmp_path):
    from opencem.cli.rules import chosen_rule_files, rule_files
    from opencem.workspace import Workspace

    ws = Workspace.resolve(tmp_path / "ws")
    mine = tmp_path / "mine.rules.yaml"
    standard = rule_files(ws)
    assert len(standard) == 1 and standard[0].name == "standard.rules.yaml"
    # `--rules standard --rules mine.rules.yaml` once meant a file called "standard"
    assert chosen_rule_files(ws, ["standard", str(mine)]) == [*standard, mine]
    assert chosen_rule_files(ws, [str(mine), "standard", "standard"]) == [mine, *standard]
    assert chosen_rule_files(ws, [str(mine)]) == [mine]
