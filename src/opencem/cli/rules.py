"""``opencem rules``: alert rule files (docs/rules.md): check them, run their unit tests
(as ``promtool test rules`` does), list the rules in force."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import output
from .context import workspace
from .output import Format, FormatOpt, OutputOpt

app = typer.Typer(no_args_is_help=True, help=(
    "Alert rules in Prometheus's shape over opencem's KPIs, KQIs and CEI: threshold, anomaly against a "
    "learned baseline, per-subscriber counts in a sliding window, bursts of complaints."))
APPS = [(app, "rules", "Operate")]


def rule_files(ws, extra: list[Path] = ()) -> list[Path]:
    """The standard rules unless the workspace has its own (WORKSPACE/rules/*.rules.yaml), then ``extra``."""
    from importlib.resources import files

    own = sorted((ws.root / "rules").glob("*.rules.yaml")) if ws.exists else []
    library = [Path(str(files("opencem.rules") / "library" / "standard.rules.yaml"))]
    return list(dict.fromkeys(p.resolve() for p in [*(own or library), *extra]))


def chosen_rule_files(ws, given: list[str]) -> list[Path]:
    """``--rules`` values: ``standard`` stands for :func:`rule_files` wherever it is given, so
    ``--rules standard --rules mine.rules.yaml`` runs both; each file once."""
    return list(dict.fromkeys(p for f in given for p in (rule_files(ws) if f == "standard" else [Path(f)])))


def rule_context(ws):
    from ..rules.catalog import RuleContext
    from .indicators import workspace_catalog

    return RuleContext(workspace_catalog(ws), ws.tables())


def _existing(files: list[Path]) -> list[Path]:
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        output.fail(f"no such file: {', '.join(missing)}")
    return [f.resolve() for f in files]


@app.command("check")
def check_cmd(ctx: typer.Context, files: Annotated[list[Path], typer.Argument(
        metavar="FILE", help="Rule files (YAML) to check.")]) -> None:
    """Validate rule files against the cubes and tables in force: every problem with its file,
    line and field. Exit code 1 when there are errors."""
    from ..rules.catalog import load_rules

    files = _existing(files)
    rules, issues = load_rules(files, rule_context(workspace(ctx)))
    for issue in issues:
        (output.error if issue.level == "error" else output.warn)(str(issue))
    if any(i.level == "error" for i in issues):
        raise typer.Exit(output.EXIT_PROBLEMS)
    kinds: dict[str, int] = {}
    for cr in rules:
        kinds[cr.query.kind] = kinds.get(cr.query.kind, 0) + 1
    output.say(f"[green]ok[/green]: {output.count(len(rules), 'rule')} in {output.count(len(files), 'file')} ("
               + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")")


@app.command("test")
def test_cmd(ctx: typer.Context, files: Annotated[list[Path], typer.Argument(
        metavar="FILE", help="Rule test files (YAML): rule_files, tests[] with input series and expected alerts.")]) -> None:
    """Run rules' unit tests: input series and records, and the alerts expected firing at given
    times. Exit code 1 when a test fails."""
    from ..rules.testing import run_rule_tests

    ws = workspace(ctx)
    context = rule_context(ws)
    failed = 0
    for f in _existing(files):
        checks, failures = run_rule_tests(f, context)
        failed += len(failures)
        if failures:
            output.say(f"[red]FAILED[/red] {output.escape(str(f))}: {len(failures)} of {output.count(checks, 'check')}")
            for failure in failures:
                output.say(output.escape(str(failure)))
        else:
            output.say(f"[green]SUCCESS[/green] {output.escape(str(f))}: {output.count(checks, 'check')}")
    if failed:
        raise typer.Exit(output.EXIT_PROBLEMS)


@app.command("list")
def list_cmd(ctx: typer.Context, fmt: FormatOpt = Format.table, out: OutputOpt = None) -> None:
    """The rules in force: the workspace's rules/*.rules.yaml, else the standard ones."""
    from ..rules.catalog import load_rules, raise_issues

    ws = workspace(ctx)
    rules, issues = load_rules(rule_files(ws), rule_context(ws))
    raise_issues(issues)
    rows = [{"alert": cr.rule.name, "group": cr.rule.group, "kind": cr.query.kind,
             "for_s": cr.rule.for_s, "severity": cr.rule.labels.get("severity", ""), "expr": cr.rule.expr,
             "file": cr.rule.file.name} for cr in rules]
    output.emit(output.arrow(rows), fmt, out, title="alert rules")
