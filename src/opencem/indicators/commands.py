"""CLI commands of the indicator engine: ``evaluate``, ``kpi check|list|preview``, ``cei calibrate``.

Mounted on the main ``opencem`` app by :mod:`opencem.cli`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table as RichTable

from ..cli import STATE, _parse_date, _progress, console, err_console, user_errors
from .catalog import Catalog, load_catalog
from .spec import GRAINS

kpi_app = typer.Typer(help="Check, list and preview KPI/KQI definitions.", no_args_is_help=True)
cei_app = typer.Typer(help="The Customer Experience Index: calibrate its weights from NPS or complaints.",
                      no_args_is_help=True)

EngineOpt = Annotated[str, typer.Option(help="duckdb (embedded, default) or spark (PySpark).")]


def workspace_catalog(extra: list[Path] = ()) -> Catalog:
    """The standard library, the workspace's indicators/*.yaml, then ``extra`` files."""
    ws = STATE["ws"]
    return load_catalog(ws.tables(), [*ws.definition_files(), *extra])


def evaluate_with_progress(cat: Catalog, engine: str = "duckdb", **options):
    """``evaluate`` on the workspace's lake behind a progress bar (one step per cube-day)."""
    from .evaluate import evaluate

    with _progress() as bar:
        task = bar.add_task(f"evaluating on {engine}", total=None)
        return evaluate(STATE["ws"].lake, cat, engine, **options,
                        progress=lambda step, done, total: bar.update(task, completed=done, total=total,
                                                                      description=step))


def _print_issues(cat: Catalog) -> None:
    for issue in cat.issues:
        if issue.level == "warning" and issue.in_library:
            continue  # intended (e.g. NR counters no bundled dictionary maps); see the docs
        colour = "red" if issue.level == "error" else "yellow"
        err_console.print(f"[{colour}]{issue.level}:[/{colour}] {issue.sentence}", soft_wrap=True)


@kpi_app.command("check")
@user_errors
def check_cmd(files: Annotated[list[Path], typer.Argument(help="Definition files (YAML) to check.")]) -> None:
    """Validate definition files against the lake's tables and the standard library; every
    problem is reported with its file, line and field."""
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        err_console.print(f"[red]error:[/red] no such file: {', '.join(missing)}")
        raise typer.Exit(2)
    cat = workspace_catalog(files)
    _print_issues(cat)
    if cat.errors:
        raise typer.Exit(1)
    mine = {str(f.resolve()) for f in files}
    counts = {s: sum(1 for (kind, _), (p, _r, _l) in cat.origin.items() if kind == s and str(p.resolve()) in mine)
              for s in ("kpis", "kqis", "dimensions")}
    console.print(f"[green]ok[/green]: {counts['kpis']} KPIs, {counts['kqis']} KQIs, "
                  f"{counts['dimensions']} dimensions in {len(files)} file(s); "
                  f"{len(cat.kpis)} KPIs and {len(cat.kqis)} KQIs in force with the library.")


@kpi_app.command("list")
@user_errors
def list_cmd(source: Annotated[str | None, typer.Option(help="Only KPIs of this source table.")] = None) -> None:
    """List the KPIs and KQIs in force (library plus workspace)."""
    cat = workspace_catalog()
    _print_issues(cat)
    table = RichTable("KPI", "source", "unit", "description", title="KPIs")
    for name, k in sorted(cat.kpis.items()):
        if source is None or k.source == source:
            table.add_row(name, k.source, k.unit, k.description)
    console.print(table)
    if source is None:
        table = RichTable("KQI", "attached to", "unit", "scores 0 .. 100 at", "description", title="KQIs")
        for name, q in sorted(cat.kqis.items()):
            pts = q.score.breakpoints()
            table.add_row(name, "=".join(q.attached_to), q.unit,
                          f"{pts[0][0]:g} .. {pts[-1][0]:g}" if pts[0][1] < pts[-1][1] else f"{pts[-1][0]:g} .. {pts[0][0]:g}",
                          q.description)
        console.print(table)


@kpi_app.command("preview")
@user_errors
def preview_cmd(
    name: Annotated[str, typer.Argument(help="A KPI or KQI name (see `opencem kpi list`), or cei.")],
    by: Annotated[str | None, typer.Option(help="Dimensions, comma-separated, e.g. cell or segment,city.")] = None,
    grain: Annotated[str, typer.Option(help="15min, hour or day.")] = "day",
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 10,
    start: Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day, YYYY-MM-DD.")] = None,
    engine: EngineOpt = "duckdb",
    worst: Annotated[bool, typer.Option(help="Show the lowest-scoring rows first.")] = False,
) -> None:
    """Compute one KPI or KQI over the lake without writing anything, and show a few rows."""
    from .preview import preview

    cat = workspace_catalog()
    if grain not in GRAINS:
        err_console.print(f"[red]error:[/red] --grain {grain!r} is not one of {', '.join(GRAINS)}")
        raise typer.Exit(2)
    dims = [d.strip() for d in by.split(",")] if by else []
    started = time.perf_counter()
    table, note = preview(STATE["ws"].lake, cat, name, dims, grain, _parse_date(start, "--from"),
                          _parse_date(end, "--to"), engine, worst)
    out = RichTable(*table.column_names, title=f"{name} by {', '.join(dims) or 'time'} per {grain}")
    for row in table.slice(0, limit).to_pylist():
        out.add_row(*[_fmt(v) for v in row.values()])
    console.print(out)
    console.print(f"[dim]{table.num_rows:,} rows in {time.perf_counter() - started:.1f} s on {engine}"
                  f"{'; ' + note if note else ''}[/dim]")


def _fmt(v) -> str:
    if v is None:
        return ""
    if hasattr(v, "strftime"):
        return v.strftime("%Y-%m-%d %H:%M")
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


@user_errors
def evaluate_cmd(
    start: Annotated[str | None, typer.Option("--from", help="First day to evaluate, YYYY-MM-DD (default: first day with data).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day to evaluate, inclusive (default: last day with data).")] = None,
    grain: Annotated[list[str] | None, typer.Option(help="Evaluate every configured dimension set at this grain (15min, hour, day) instead of the configured grains; repeatable.")] = None,
    cube: Annotated[list[str] | None, typer.Option(help="Only this cube table, e.g. cube_cell_15min; repeatable.")] = None,
    engine: EngineOpt = "duckdb",
    full: Annotated[bool, typer.Option(help="Recompute every day, even unchanged ones.")] = False,
) -> None:
    """Compute KPIs, KQIs and the CEI over the experience cube and write the cube tables to
    the lake. Only days whose inputs or definitions changed are recomputed."""
    for g in grain or []:
        if g not in GRAINS:
            err_console.print(f"[red]error:[/red] --grain {g!r} is not one of {', '.join(GRAINS)}")
            raise typer.Exit(2)
    cat = workspace_catalog()
    _print_issues(cat)
    ws = STATE["ws"]
    started = time.perf_counter()
    report = evaluate_with_progress(cat, engine, start=_parse_date(start, "--from"), end=_parse_date(end, "--to"),
                                    grains=grain or None, only=cube or None, full=full)
    table = RichTable("cube table", "days computed", "days unchanged", "rows written", "seconds",
                      title=f"Evaluated on {engine} into {ws.lake.root}")
    notes = []
    for c in report.cubes:
        table.add_row(c.table, str(len(c.days_computed)), str(c.days_unchanged), f"{c.rows:,}", f"{c.seconds:.1f}")
        notes += [f"{c.table}: {o}" for o in c.omitted]
    console.print(table)
    for note in notes:
        console.print(f"[dim]{note}[/dim]")
    console.print(f"{sum(c.rows for c in report.cubes):,} rows in {time.perf_counter() - started:.1f} s. "
                  "Query them with: opencem sql \"SELECT * FROM cube_cell_day ORDER BY cei LIMIT 10\"")


@cei_app.command("calibrate")
@user_errors
def calibrate_cmd(
    target: Annotated[str, typer.Option(help="nps (survey answers) or complaints.")] = "nps",
    out: Annotated[Path | None, typer.Option(help="Write the calibrated cei: section here (YAML); put it in the workspace's indicators/ folder to use it.")] = None,
) -> None:
    """Fit the CEI weights to NPS answers or complaints and report how well the hand-set and
    the calibrated index correlate with them (on customers held out of the fit)."""
    from .calibrate import calibrate

    cat = workspace_catalog()
    cat.raise_errors()
    result = calibrate(STATE["ws"].lake, cat, target)
    table = RichTable("weights", "pearson", "spearman", *(["AUC"] if target == "complaints" else []),
                      title=f"CEI vs {target} on {result.holdout:,} held-out of {result.customers:,} customers")
    for label, m in result.fit.items():
        table.add_row(label, f"{m['pearson']:.3f}", f"{m['spearman']:.3f}",
                      *([f"{m.get('auc', float('nan')):.3f}"] if target == "complaints" else []))
    console.print(table)
    text = result.yaml(cat)
    if out:
        out.write_text(text)
        console.print(f"Calibrated weights written to {out}")
    else:
        print(text, end="")  # plain: rich would wrap long lines and break the YAML
