"""The indicator engine's commands: ``evaluate``, ``kpi check|list|preview``, ``cei calibrate``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from . import output
from .context import workspace
from .options import EngineOpt, FromOpt, ToOpt, completes, grains, parse_date
from .output import Format, FormatOpt, OutputOpt

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="A KPI or KQI name (see `opencem kpi list`), or cei.")]
ByOpt = Annotated[str | None, typer.Option(metavar="DIMS", help=(
    "Dimensions, comma-separated, e.g. cell_id or segment,city; none: network-wide."))]
GrainOpt = Annotated[str, typer.Option(metavar="GRAIN", autocompletion=completes(grains), help="15min, hour or day.")]
MinSamplesOpt = Annotated[int | None, typer.Option("--min-samples", min=1, metavar="N", help=(
    "Leave out (and score no KQI on) groups with fewer records than this; default: the "
    "min_samples of the configured cube with these dimensions, else 1."))]

evaluate_app = typer.Typer()
kpi_app = typer.Typer(help="Check, list and preview KPI/KQI definitions.", no_args_is_help=True)
cei_app = typer.Typer(help="The Customer Experience Index: calibrate its weights from NPS or complaints.",
                      no_args_is_help=True)
APPS = [(evaluate_app, None), (kpi_app, "kpi", "Indicators"), (cei_app, "cei", "Indicators")]


def workspace_catalog(ws, extra: list[Path] = ()):
    """The standard library, the workspace's indicators/*.yaml, then ``extra`` files."""
    from ..indicators.catalog import load_catalog

    return load_catalog(ws.tables(), [*ws.definition_files(), *extra])


def evaluate_with_progress(ws, cat, engine: str = "duckdb", **options):
    """``evaluate`` on the workspace's lake behind a progress bar (one step per cube-day)."""
    from ..indicators.evaluate import evaluate

    with output.progress(f"evaluating on {engine}") as update:
        return evaluate(ws.lake, cat, engine, **options,
                        progress=lambda step, done, total: update(completed=done, total=total, description=step))


def print_issues(cat) -> None:
    from ..indicators.catalog import from_library

    for issue in cat.issues:
        if issue.level == "warning" and from_library(issue):
            continue  # intended (e.g. NR counters no bundled dictionary maps); see the docs
        (output.error if issue.level == "error" else output.warn)(str(issue))


def calibration_targets():
    from ..analytics.calibrate import TARGETS

    return TARGETS


def _window(start: str | None, end: str | None):
    first, last = parse_date(start, "--from"), parse_date(end, "--to")
    if first and last and first > last:
        output.fail(f"--from {first} is after --to {last}")
    return first, last


def _grain(value: str) -> str:
    from ..indicators.spec import GRAINS

    if value not in GRAINS:
        output.fail(f"--grain {value!r} is not one of {', '.join(GRAINS)}")
    return value


@evaluate_app.command("evaluate", rich_help_panel="Indicators")
def evaluate_cmd(
    ctx: typer.Context,
    start: FromOpt = None,
    end: ToOpt = None,
    grain: Annotated[list[str] | None, typer.Option(metavar="GRAIN", autocompletion=completes(grains), help=(
        "Evaluate every configured dimension set at this grain (1min, 5min, 15min, hour, day) instead of the "
        "configured grains; repeatable."))] = None,
    cube: Annotated[list[str] | None, typer.Option(metavar="TABLE", help=(
        "Only this cube table, e.g. cube_cell_15min; repeatable."))] = None,
    engine: EngineOpt = "duckdb",
    full: Annotated[bool, typer.Option("--full", help="Recompute every day, even unchanged ones.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=(
        "Also list the sources each cube leaves out because its dimensions cannot split them."))] = False,
    fmt: FormatOpt = Format.table,
    out: OutputOpt = None,
) -> None:
    """Compute KPIs, KQIs and the CEI over the experience cube and write the cube tables to
    the lake. Only days whose inputs or definitions changed are recomputed."""
    grains = [_grain(g) for g in grain or []]
    first, last = _window(start, end)
    ws = workspace(ctx).require()
    cat = workspace_catalog(ws)
    print_issues(cat)
    started = time.perf_counter()
    report = evaluate_with_progress(ws, cat, engine, start=first, end=last,
                                    grains=grains or None, only=cube or None, full=full)
    rows = [{"cube_table": c.table, "days_computed": len(c.days_computed), "days_unchanged": c.days_unchanged,
             "rows_written": c.rows, "seconds": round(c.seconds, 3), "engine": engine} for c in report.cubes]
    output.emit(output.arrow(rows, {"seconds": "s"}, columns=["cube_table", "days_computed", "days_unchanged",
                                                              "rows_written", "seconds", "engine"]),
                fmt, out, title=f"Evaluated on {engine} into {ws.lake.root}")
    for sentence in report.notes(left_out=verbose):
        output.note(sentence)
    left_out = {s for c in report.cubes for s in c.omitted}
    if left_out and not verbose:
        output.note(f"{len(left_out)} source(s) are left out of cubes whose dimensions cannot split them "
                    "(PM counters have no subscriber, say); --verbose lists them")
    output.say(f"{output.count(sum(c.rows for c in report.cubes), 'row')} in {time.perf_counter() - started:.1f} s. "
               "Query them with: opencem sql \"SELECT * FROM cube_cell_day ORDER BY cei LIMIT 10\"",
               stderr=True)


@kpi_app.command("check")
def check_cmd(ctx: typer.Context,
              files: Annotated[list[Path], typer.Argument(metavar="FILE", help="Definition files (YAML) to check.")]) -> None:
    """Validate definition files against the lake's tables and the standard library; every
    problem is reported with its file, line and field. Exit code 1 when there are errors."""
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        output.fail(f"no such file: {', '.join(missing)}")
    files = list(dict.fromkeys(f.resolve() for f in files))
    cat = workspace_catalog(workspace(ctx), files)
    print_issues(cat)
    if cat.errors:
        raise typer.Exit(output.EXIT_PROBLEMS)
    mine = {str(f.resolve()) for f in files}
    counts = {s: sum(1 for (kind, _), (p, _r, _l) in cat.origin.items() if kind == s and str(p.resolve()) in mine)
              for s in ("kpis", "kqis", "dimensions")}
    output.say(f"[green]ok[/green]: {counts['kpis']} KPIs, {counts['kqis']} KQIs, "
               f"{counts['dimensions']} dimensions in {len(files)} file(s); "
               f"{len(cat.kpis)} KPIs and {len(cat.kqis)} KQIs in force with the library.")


@kpi_app.command("list")
def list_cmd(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(metavar="TABLE", help="Only KPIs of this source table.")] = None,
    fmt: FormatOpt = Format.table,
    out: OutputOpt = None,
) -> None:
    """List the KPIs and KQIs in force (library plus workspace), with units and sources."""
    from ..indicators.listing import indicator_table

    cat = workspace_catalog(workspace(ctx))
    print_issues(cat)
    sources = {k.source for k in cat.kpis.values()}
    if source is not None and source not in sources:
        from ..errors import suggest

        output.fail(f"no KPI reads {source!r}{suggest(source, sources)}; sources with KPIs: {', '.join(sorted(sources))}")
    output.emit(indicator_table(cat, source), fmt, out, title="KPIs and KQIs in force")


@kpi_app.command("preview")
def preview_cmd(
    ctx: typer.Context,
    name: NameArg,
    by: ByOpt = None,
    grain: GrainOpt = "day",
    limit: Annotated[int | None, typer.Option(min=1, metavar="N", help="Rows to show (default 10 in table format, all in the others).")] = None,
    start: FromOpt = None,
    end: ToOpt = None,
    engine: EngineOpt = "duckdb",
    worst: Annotated[bool, typer.Option("--worst", help=(
        "Worst rows first, by the definition's direction (better: higher or lower; a KQI by its "
        "score); ties by value, then by more records."))] = False,
    min_samples: MinSamplesOpt = None,
    fmt: FormatOpt = Format.table,
    out: OutputOpt = None,
) -> None:
    """Compute one KPI or KQI over the lake without writing anything, and show the rows.
    Without --by, the network-wide value per period."""
    from ..indicators.preview import preview

    ws = workspace(ctx).require()
    cat = workspace_catalog(ws)
    _grain(grain)
    dims = _dims(by)
    started = time.perf_counter()
    table, note = preview(ws.lake, cat, name, dims, grain, *_window(start, end), engine, worst, min_samples)
    shown = limit if limit is not None else (10 if fmt is Format.table else None)
    total = table.num_rows
    if shown is not None:
        table = table.slice(0, shown)
    output.emit(table, fmt, out, title=f"{name} by {', '.join(dims) or 'time'} per {grain}")
    output.note(f"{output.count(total, 'row')} in {time.perf_counter() - started:.1f} s on {engine}"
                f"{'; showing ' + format(shown, ',') if shown is not None and total > shown else ''}"
                f"{'; ' + note if note else ''}")


@kpi_app.command("show")
def show_cmd(
    ctx: typer.Context,
    what: Annotated[str, typer.Argument(metavar="WHAT", help=(
        "cei (the CEI tree in force), cubes (the cubes in force) or a KPI or KQI name."))],
    fmt: FormatOpt = Format.table,
    out: OutputOpt = None,
) -> None:
    """Show what is in force and where each part of it is defined (file:line): the CEI tree,
    the cubes, or one KPI or KQI."""
    from ..indicators.listing import cei_table, cubes_table, definition_table

    cat = workspace_catalog(workspace(ctx))
    print_issues(cat)
    if what == "cei":
        table, title = cei_table(cat), "The CEI tree in force: index -> KQIs"
        if cat.cei is not None:
            title += f" (CEI poor below {cat.cei.poor_below:g})"
    elif what == "cubes":
        table, title = cubes_table(cat), "Cubes in force (opencem evaluate writes each table)"
    else:
        table, title = definition_table(cat, what), what
    output.emit(table, fmt, out, title=title)


@kpi_app.command("sql")
def sql_cmd(
    ctx: typer.Context,
    name: NameArg,
    by: ByOpt = None,
    grain: GrainOpt = "day",
    engine: EngineOpt = "duckdb",
    min_samples: MinSamplesOpt = None,
) -> None:
    """Print the SQL an engine runs for NAME (as `kpi preview` and `evaluate` run it), so you
    can see, and run by hand, what is computed."""
    from ..indicators.preview import preview_sql

    from ..indicators.render import RENDERERS

    if engine not in RENDERERS:
        output.fail(f"unknown engine {engine!r}; choose {' or '.join(RENDERERS)}")
    ws = workspace(ctx)
    cat = workspace_catalog(ws)
    print_issues(cat)
    if cat.errors:
        raise typer.Exit(output.EXIT_PROBLEMS)
    print(preview_sql(cat, ws.tables(), name, _dims(by), _grain(grain), engine, min_samples))


def _dims(by: str | None) -> list[str]:
    dims = [d.strip() for d in by.split(",")] if by else []
    if any(not d for d in dims):
        output.fail(f"--by {by!r} has an empty dimension; give names separated by commas, e.g. cell_id,segment")
    return dims


@cei_app.command("calibrate")
def calibrate_cmd(
    ctx: typer.Context,
    target: Annotated[str, typer.Option(metavar="TARGET", autocompletion=completes(calibration_targets),
                                        help="nps (survey answers) or complaints.")] = "nps",
    weights_out: Annotated[Path | None, typer.Option("--out", metavar="FILE", callback=output.outside_lake, help=(
        "Write the calibrated cei: section here (YAML); put it in the workspace's indicators/ "
        "folder to use it."))] = None,
    fmt: FormatOpt = Format.table,
    out: OutputOpt = None,
) -> None:
    """Fit the CEI weights to NPS answers or complaints and report how well the hand-set and
    the calibrated index correlate with them (on customers held out of the fit)."""
    from ..analytics.calibrate import calibrate

    ws = workspace(ctx).require()
    cat = workspace_catalog(ws)
    cat.raise_errors()
    result = calibrate(ws.lake, cat, target)
    output.emit(result.fit_table(), fmt, out,
                title=f"CEI vs {target} on {result.holdout:,} held-out of {result.customers:,} customers")
    (output.note if result.better else output.warn)(result.verdict())
    text = result.yaml(cat)
    if weights_out:
        try:
            weights_out.write_text(text)
        except OSError as err:
            output.fail(f"cannot write {weights_out}: {err.strerror or err}")
        output.say(f"Calibrated weights written to {weights_out}", stderr=True)
    elif fmt is Format.table and out is None:
        print(text, end="")  # plain: Rich would wrap long lines and break the YAML
    else:
        output.note("the calibrated cei: section is written only with --out FILE in this format")
