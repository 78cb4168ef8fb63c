"""``opencem diagnose`` and ``opencem problems``: why a customer's experience is poor and where
(docs/diagnose.md).

    opencem diagnose SUBSCRIBER [--at T] [--json]        one customer's self-check
    opencem diagnose --from T --to T --out FILE.parquet  every poor case of a period
    opencem diagnose score --truth DIR                   accuracy against simulator truth
    opencem diagnose train --truth DIR                   fit the learned layer on labelled cases
    opencem diagnose rules check FILE                    validate a rule file
    opencem problems --from T --to T [--format ...]      the clustered problems
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from . import output
from .context import workspace
from .output import Format, FormatOpt, OutputOpt

SUBCOMMANDS = ("score", "train", "rules", "check", "cases")


class DiagnoseGroup(TyperGroup):
    """``diagnose SUBSCRIBER`` runs the self-check, ``diagnose --from ...`` the period: both
    live beside the subcommands, so a first word that is none of them is a subscriber."""

    def parse_args(self, ctx, args):
        args = list(args)
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args.insert(0, "cases" if args[0].startswith("-") else "check")
        return super().parse_args(ctx, args)


app = typer.Typer(cls=DiagnoseGroup, no_args_is_help=True, help=(
    "Diagnosis: the fault domain (cloud, pipe, device, account or none), cause and location of poor "
    "experience, with its evidence. `opencem diagnose SUBSCRIBER` is the customer's self-check."))
rules_app = typer.Typer(no_args_is_help=True, help="The expert rule file.")
app.add_typer(rules_app, name="rules")
problems_app = typer.Typer(help="Problems: poor cases clustered by common cause and location.")
APPS = [(app, "diagnose", "Diagnosis"), (problems_app, "problems", "Diagnosis")]

TimeOpt = Annotated[str | None, typer.Option(metavar="TIME", help="UTC time, e.g. 2026-11-02 or 2026-11-02T14:00.")]
RulesOpt = Annotated[Path | None, typer.Option("--rules", metavar="FILE", help=(
    "Rule file to use (default WORKSPACE/diagnose/rules.yaml, else the library's)."))]


def parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        output.fail(f"{option} {value!r} is not a time like 2026-11-02 or 2026-11-02T14:00")
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _setup(ctx: typer.Context, rules: Path | None):
    from ..diagnose.run import setup

    ws = workspace(ctx).require()
    run = setup(ws.root, rules)
    if run.model is None:
        output.note("no learned layer is trained in this workspace (`opencem diagnose train`): the rules decide alone")
    return ws, run


@app.command("check", hidden=True)
def check_cmd(
    ctx: typer.Context,
    subscriber: Annotated[str, typer.Argument(metavar="SUBSCRIBER", help="Subscriber id.")],
    at: TimeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The diagnosis as one JSON object.")] = False,
    rules: RulesOpt = None,
) -> None:
    """One customer's self-check: the cause of their latest poor experience, their side or the network's."""
    from ..diagnose.run import self_check

    ws, run = _setup(ctx, rules)
    result = self_check(ws.lake, run, subscriber, parse_time(at, "--at"))
    if as_json:
        print(json.dumps(result, indent=1, default=str))
        return
    if not result["poor_cases"]:
        output.say(result["customer_text"])
        return
    side = {"user": "on the customer's side (they can fix it)", "network": "on the network's side",
            "none": "no fault (ordinary conditions)"}[result["side"]]
    output.say(f"[bold]{subscriber}[/bold]: {result['poor_cases']} poor case(s); latest diagnosis {side}")
    output.say(f"  domain {result['domain']}, cause {result['cause_words']} at {result['location_type']} "
               f"{result['location_id']} (confidence {result['confidence']:.2f}, {result['decided_by']})")
    output.say(f"  evidence: {output.escape(result['evidence'] or '')}")
    output.say(f"  for the customer: {output.escape(result['customer_text'])}")


@app.command("cases", hidden=True)
def cases_cmd(
    ctx: typer.Context,
    start: Annotated[str | None, typer.Option("--from", metavar="TIME", help="First hour (UTC).")] = None,
    end: Annotated[str | None, typer.Option("--to", metavar="TIME", help="End (UTC, exclusive).")] = None,
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE.parquet", help="Write the cases here.")] = None,
    fmt: FormatOpt = Format.table,
    rules: RulesOpt = None,
) -> None:
    """Every poor (subscriber, service, hour) of the period and its conclusion."""
    from ..diagnose.run import diagnose

    ws, run = _setup(ctx, rules)
    result = diagnose(ws.lake, run, parse_time(start, "--from"), parse_time(end, "--to"))
    if out is not None:
        import pyarrow.parquet as pq

        pq.write_table(result, out)
        output.say(f"{result.num_rows:,} poor cases diagnosed into {out}", stderr=True)
        return
    output.emit(result.select(list(_shown(result))), fmt, title="Diagnosed poor cases", limit=50)


def _shown(table):
    from ..diagnose.decide import OUTPUT_COLUMNS

    return [c for c in OUTPUT_COLUMNS if c in table.column_names]


@problems_app.callback(invoke_without_command=True)
def problems_cmd(
    ctx: typer.Context,
    start: Annotated[str | None, typer.Option("--from", metavar="TIME", help="First hour (UTC).")] = None,
    end: Annotated[str | None, typer.Option("--to", metavar="TIME", help="End (UTC, exclusive).")] = None,
    fmt: FormatOpt = Format.table,
    out: OutputOpt = None,
    rules: RulesOpt = None,
) -> None:
    """The period's problems: one per common cause and location, with affected customers and value."""
    from ..diagnose.run import diagnose, find_problems

    ws, run = _setup(ctx, rules)
    found, _ = find_problems(diagnose(ws.lake, run, parse_time(start, "--from"), parse_time(end, "--to")))
    output.emit(found, fmt, out, title="Problems")


@app.command("score")
def score_cmd(
    ctx: typer.Context,
    truth: Annotated[Path, typer.Option("--truth", metavar="DIR", help=(
        "Simulator truth: SIM/truth or the workspace's truth area (WORKSPACE/truth)."))],
    start: Annotated[str | None, typer.Option("--from", metavar="TIME", help="First hour (UTC).")] = None,
    end: Annotated[str | None, typer.Option("--to", metavar="TIME", help="End (UTC, exclusive).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Every figure as JSON.")] = False,
    rules: RulesOpt = None,
) -> None:
    """Diagnose the lake and score it against the simulator's labelled cases."""
    from ..diagnose import score
    from ..diagnose.run import diagnose, find_problems

    ws, run = _setup(ctx, rules)
    labels, faults = read_truth(truth)
    t0, t1 = parse_time(start, "--from"), parse_time(end, "--to")
    conclusions = diagnose(ws.lake, run, t0, t1)
    labels = _in_period(labels, conclusions, t0, t1)
    figures = score.figures(conclusions, labels)
    problems, membership = find_problems(conclusions)
    figures["problems"] = score.problem_figures(membership, problems, labels, faults)
    if as_json:
        print(json.dumps(figures, indent=1, default=str))
        return
    print_figures(figures)


def _in_period(labels, conclusions, t0, t1):
    import pyarrow.compute as pc

    mask = None
    if t0 is not None:
        mask = pc.greater_equal(labels.column("hour_start"), t0)
    if t1 is not None:
        m = pc.less(labels.column("hour_start"), t1)
        mask = m if mask is None else pc.and_(mask, m)
    return labels if mask is None else labels.filter(mask)


def read_truth(folder: Path):
    """(cases, faults) of a simulator truth folder, through the simulator's loader, as plain tables."""
    import duckdb

    from ..simulate.truth import register_truth

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    register_truth(con, folder)
    cases = con.sql("SELECT * FROM truth.cases").to_arrow_table()
    faults = con.sql("SELECT * FROM truth.faults").to_arrow_table()
    con.close()
    return cases, faults


def print_figures(f: dict) -> None:
    p = f["pooled"]
    output.say(f"labelled cases {f['labelled_cases']:,}: found {f['found']:,}, missed {f['missed']:,}; "
               f"{f['beyond_labels']:,} diagnosed cases have no label")
    output.say(f"fault-domain accuracy {p['domain_accuracy']:.1%}, macro-F1 over domains {p['macro_f1_domains']:.3f}, "
               f"cause accuracy {p['cause_accuracy']:.1%}")
    output.say(f"location AC@1 {p['location_ac1']:.1%}, AC@3 {p['location_ac3']:.1%} over {p['fault_cases']:,} fault "
               f"cases (network and cloud: {p['network_location_ac1'] or 0:.1%} / {p['network_location_ac3'] or 0:.1%})")
    pr = f.get("problems")
    if pr:
        output.say(f"true network/cloud faults in exactly one problem: {pr['in_exactly_one_problem']} of "
                   f"{pr['network_faults_with_cases']} ({(pr['share'] or 0):.1%}); {pr['problems']:,} problems")
    rows = [{"cause": r["cause"], "cases": r["cases"], "predicted": r["predicted"], "precision": r["precision"],
             "recall": r["recall"], "f1": r["f1"]} for r in f["per_cause"]]
    output.emit(output.arrow(rows), Format.table, title="Per cause")
    regions = [{"region": k, **{m: v[m] for m in ("cases", "domain_accuracy", "macro_f1_domains", "location_ac1",
                                                  "location_ac3")}} for k, v in f["regions"].items()]
    if regions:
        output.emit(output.arrow(regions), Format.table, title="Per region")
    c = f["confusion"]
    output.emit(output.arrow([{"true \\ diagnosed": d, **dict(zip(c["domains"], row))}
                              for d, row in zip(c["domains"], c["rows_true_columns_diagnosed"])]),
                Format.table, title="Domain confusion")


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    truth: Annotated[Path, typer.Option("--truth", metavar="DIR", help=(
        "Labelled cases: a simulator truth folder of THIS workspace's lake (SIM/truth or WORKSPACE/truth)."))],
    into: Annotated[Path | None, typer.Option("--into", metavar="DIR", help=(
        "Where to save the model (default WORKSPACE/diagnose/model)."))] = None,
    threads: Annotated[int, typer.Option(min=1, metavar="N", help="CPU threads for the boosting.")] = 1,
    rules: RulesOpt = None,
) -> None:
    """Fit the learned layer (LightGBM, calibrated) on this lake's labelled cases."""
    from ..diagnose.run import model_dir, train

    ws, run = _setup(ctx, rules)
    labels, _ = read_truth(truth)
    model = train(ws.lake, run, labels, threads)
    model.trained_on = str(truth)
    folder = into or model_dir(ws.root)
    model.save(folder)
    output.say(f"learned layer {model.name} ({len(model.classes)} causes, {len(model.features)} features) saved in {folder}")


@rules_app.command("check")
def rules_check_cmd(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Rule files to validate.")],
) -> None:
    """Validate rule files: every problem at once, with file, line and field; exit 1 on errors."""
    from ..diagnose.evidence import empty_feature_types
    from ..diagnose.rules import load_rules
    from ..specfile import SpecError

    bad = False
    for path in files:
        try:
            rs = load_rules(path, empty_feature_types())
        except SpecError as err:
            bad = True
            for issue in err.issues:
                (output.error if issue.level == "error" else output.warn)(str(issue))
            continue
        for issue in rs.warnings:
            output.warn(str(issue))
        output.say(f"{path}: {len(rs.rules)} rules, poor-session conditions for {', '.join(rs.poor_sql)}: ok")
    if bad:
        raise typer.Exit(output.EXIT_PROBLEMS)
