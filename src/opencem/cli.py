"""The ``opencem`` command."""

from __future__ import annotations

import functools
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from .workspace import ENV_VAR, Workspace

app = typer.Typer(help="opencem: open-source Customer Experience Management for telecom operators.",
                  no_args_is_help=True, add_completion=False)
console = Console()
err_console = Console(stderr=True)
STATE: dict[str, Workspace] = {}

WorkspaceOpt = Annotated[Path | None, typer.Option(
    "--workspace", "-w", help=f"Workspace folder (default: ${ENV_VAR} or ./opencem-workspace).")]


@app.callback()
def main(workspace: WorkspaceOpt = None) -> None:
    STATE["ws"] = Workspace.resolve(workspace)


def user_errors(fn):
    """Turn expected user-facing errors into one red sentence and exit code 2."""
    from .engines.duckdb import QueryError
    from .indicators.evaluate import EvaluateError
    from .indicators.plan import PlanError
    from .ingest.lake import LakeError
    from .specfile import SpecError
    from .ingest.validate import IngestError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (IngestError, LakeError, QueryError, PlanError, EvaluateError) as err:
            err_console.print(f"[red]error:[/red] {err}", soft_wrap=True)
            raise typer.Exit(2) from None
        except SpecError as err:
            for issue in err.issues:
                err_console.print(f"[red]error:[/red] {issue}", soft_wrap=True)
            raise typer.Exit(2) from None
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            err_console.print(f"[red]error:[/red] {where}: {first['msg']}")
            raise typer.Exit(2) from None
    return wrapper


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def _simulate(subscribers: int, days: int, seed: int, out: Path, start_date: date | None,
              fault_rate: float):
    from .simulate.config import SimConfig
    from .simulate.run import simulate, total_steps

    kwargs = {"subscribers": subscribers, "days": days, "seed": seed, "fault_rate": fault_rate}
    if start_date:
        kwargs["start_date"] = start_date
    cfg = SimConfig(**kwargs)
    started = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("simulating", total=total_steps(cfg))
        result = simulate(cfg, out, lambda msg: bar.update(task, advance=1, description=msg))
    elapsed = time.perf_counter() - started
    rows = sum(v for k, v in result.rows.items() if k != "pm_counter_values")
    table = RichTable("table", "rows", title=f"Simulated operator in {out}")
    for name, n in sorted(result.rows.items()):
        table.add_row(name, f"{n:,}")
    console.print(table)
    console.print(f"{rows:,} records and {result.pm_files} vendor PM files in {elapsed:.1f} s "
                  f"({rows / elapsed:,.0f} records/s)")
    return result


@app.command("simulate")
@user_errors
def simulate_cmd(
    subscribers: Annotated[int, typer.Option(help="Mobile subscribers to simulate.")] = 20_000,
    days: Annotated[int, typer.Option(help="Days of traffic.")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same output.")] = 7,
    out: Annotated[Path, typer.Option(help="Output folder (replaced).")] = Path("opencem-sim"),
    start_date: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD (UTC).")] = None,
    fault_rate: Annotated[float, typer.Option(help="Multiplier on injected faults (0: none).")] = 1.0,
) -> None:
    """Simulate a digital-twin operator: network, traffic, faults (with ground truth), customers."""
    _simulate(subscribers, days, seed, out, _parse_date(start_date, "--start-date"), fault_rate)


def _parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        err_console.print(f"[red]error:[/red] {option} {value!r} is not a date like 2026-11-02")
        raise typer.Exit(2) from None


def _ingest(paths: list[Path], as_of: date | None, mapping: Path | None = None):
    from .ingest.load import ingest

    ws = STATE["ws"]
    lake = ws.lake
    started = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("ingesting", total=None)
        report = ingest(lake, paths, as_of=as_of, mapping=mapping, rejected_dir=ws.rejected_dir,
                        dictionaries=ws.dictionaries_dir,
                        progress=lambda name, rows, total: bar.update(
                            task, advance=1, total=total, description=Path(name).name))
    elapsed = time.perf_counter() - started
    rows = report.rows()
    table = RichTable("table", "rows loaded", title=f"Ingested into {lake.root}")
    for name, n in sorted(rows.items()):
        table.add_row(name, f"{n:,}")
    console.print(table)
    total = sum(rows.values())
    console.print(f"{report.count('loaded')} files loaded, {report.count('replaced')} replaced earlier "
                  f"content, {report.count('duplicate')} already loaded, {report.count('rejected')} "
                  f"rejected; {total:,} rows in {elapsed:.1f} s; {report.quarantined:,} rows quarantined")
    for f in report.files:
        if f.status == "rejected":
            err_console.print(f"[yellow]rejected:[/yellow] {f.message} (copy kept in {ws.rejected_dir})")
        elif f.message and f.status != "duplicate":
            console.print(f"[dim]{f.source.path.name}: {f.message}[/dim]")
    return report


@app.command("ingest")
@user_errors
def ingest_cmd(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files or folders to load.")] = None,
    as_of: Annotated[str | None, typer.Option(help="Snapshot date for cells/subscribers, and the "
                                                   "date mapping files can use (YYYY-MM-DD).")] = None,
    mapping: Annotated[Path | None, typer.Option(help="Column mapping file for sources whose "
                                                      "columns differ from the canonical ones.")] = None,
    watch: Annotated[Path | None, typer.Option(help="Watch this landing folder and load files as "
                                                    "they arrive (Ctrl-C to stop).")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between scans with --watch.")] = 5.0,
    report: Annotated[bool, typer.Option("--report", help="Show the ingest log instead.")] = False,
) -> None:
    """Load source files into the workspace lake: validated, atomic, nothing loaded twice."""
    if report:
        _show_ingest_log()
    elif watch is not None:
        _watch(watch, interval, mapping)
    elif not paths:
        err_console.print("[red]error:[/red] give at least one file or folder to ingest, or --watch DIR")
        raise typer.Exit(2)
    else:
        _ingest(paths, _parse_date(as_of, "--as-of"), mapping)


def _watch(folder: Path, interval: float, mapping: Path | None) -> None:
    from .ingest.watch import watch

    console.print(f"watching {folder} every {interval:g} s (Ctrl-C to stop); loaded files move to "
                  f"{folder / '.done'}, unreadable ones to {folder / '.rejected'}")

    def on_file(path: Path, rep) -> None:
        f = rep.files[0]
        rows = sum(rep.rows().values())
        console.print(f"{time.strftime('%H:%M:%S')} {path.name}: {f.status}, {rows:,} rows, "
                      f"{rep.quarantined:,} quarantined" + (f" ({f.message})" if f.message else ""))

    try:
        ws = STATE["ws"]
        stats = watch(ws.lake, folder, interval, mapping, on_file=on_file, dictionaries=ws.dictionaries_dir)
    except KeyboardInterrupt:
        return
    console.print(f"{stats.loaded} files loaded, {stats.duplicates} duplicates, {stats.rejected} rejected")


def _show_ingest_log() -> None:
    from .engines.duckdb import run_user_sql

    lake = STATE["ws"].lake
    _print_relation(run_user_sql(lake, """
        SELECT table_name, status, count(*) AS files, sum(rows_read) AS rows_read,
               sum(rows_accepted) AS rows_accepted, sum(rows_quarantined) AS rows_quarantined
        FROM ingest_log GROUP BY ALL ORDER BY table_name, status"""), "Ingest log (all batches)")
    _print_relation(run_user_sql(lake, """
        SELECT table_name, field, reason, count(*) AS records, min(source_path) AS example_file,
               min(row_number) AS example_row
        FROM quarantine GROUP BY ALL ORDER BY records DESC"""), "Quarantine by reason", limit=20)
    _print_relation(run_user_sql(lake, """
        SELECT ingested_at, source_path, message FROM ingest_log
        WHERE status = 'rejected' ORDER BY ingested_at DESC"""), "Rejected files (newest first)", limit=20)


def _columns(cursor) -> list[str]:
    return [d[0] for d in cursor.description]


WIDE = 12  # columns beyond which rows print as one column-value list each


def _print_relation(cursor, title: str | None = None, limit: int = 50) -> None:
    columns = _columns(cursor)
    rows = cursor.fetchmany(limit + 1)
    if len(columns) > WIDE:  # a cube table has a hundred columns: print rows as records
        for i, row in enumerate(rows[:limit]):
            record = RichTable("column", "value", title=f"{title or 'row'} {i + 1}", title_justify="left")
            for name, v in zip(columns, row):
                record.add_row(name, "" if v is None else str(v))
            console.print(record)
    else:
        table = RichTable(*columns, title=title)
        for row in rows[:limit]:
            table.add_row(*["" if v is None else str(v) for v in row])
        console.print(table)
    if len(rows) > limit:
        console.print(f"(first {limit} rows; use --limit or --format csv for more)")


@app.command("sql")
@user_errors
def sql_cmd(
    query: Annotated[str, typer.Argument(help="One read-only SQL query over the lake's tables.")],
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    limit: Annotated[int, typer.Option(help="Rows to show in table format.")] = 50,
) -> None:
    """Run ad-hoc read-only SQL (DuckDB dialect) over the lake."""
    from .engines.duckdb import run_user_sql

    rel = run_user_sql(STATE["ws"].lake, query)
    if fmt == "table":
        _print_relation(rel, limit=limit)
    elif fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(_columns(rel))
        writer.writerows(rel.fetchall())
    elif fmt == "json":
        rows = [dict(zip(_columns(rel), r)) for r in rel.fetchall()]
        print(json.dumps(rows, default=str, indent=1))
    else:
        err_console.print(f"[red]error:[/red] --format {fmt!r} is not one of table, csv, json")
        raise typer.Exit(2)


@app.command("tables")
@user_errors
def tables_cmd() -> None:
    """List the tables (canonical and the workspace's own) with their committed row counts."""
    lake = STATE["ws"].lake
    manifest = lake.manifest()
    table = RichTable("table", "domain", "rows", "description", title=str(lake.root))
    for name, spec in lake.tables.items():
        table.add_row(name, spec.domain, f"{lake.rows(name, manifest):,}", spec.description)
    console.print(table)


sources_app = typer.Typer(help="The workspace's own tables: new feeds defined by a schema file.",
                          no_args_is_help=True)
app.add_typer(sources_app, name="sources")


@sources_app.command("add")
@user_errors
def sources_add(schema: Annotated[Path, typer.Argument(help="A <name>.schema.yaml file.")]) -> None:
    """Check a table schema file and add it to the workspace (replacing one of the same name)."""
    import shutil

    from .schema import TABLES
    from .schema.user import SCHEMA_SUFFIX, load_table_spec

    ws = STATE["ws"]
    if not schema.is_file():
        err_console.print(f"[red]error:[/red] {schema}: no such file")
        raise typer.Exit(2)
    table = load_table_spec(schema, TABLES)
    ws.sources_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(schema, ws.sources_dir / f"{table.name}{SCHEMA_SUFFIX}")
    console.print(f"table [bold]{table.name}[/bold] ({len(table.columns)} columns) added; load it with "
                  f"opencem ingest FILE --mapping MAPPING.yaml, or name files {table.name}.csv")


@sources_app.command("list")
@user_errors
def sources_list() -> None:
    """List the workspace's own tables."""
    from .schema import TABLES
    from .schema.docs import render_spec

    ws = STATE["ws"]
    extra = {n: t for n, t in ws.tables().items() if n not in TABLES}
    if not extra:
        console.print(f"no tables of its own in {ws.sources_dir} yet (add one with opencem sources add)")
        return
    for name in extra:
        console.print(render_spec(extra[name]))


@app.command("schema")
def schema_cmd(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print docs/data-model.md.")] = False,
    table: Annotated[str | None, typer.Argument(help="One table to show.")] = None,
) -> None:
    """Show the canonical data model."""
    from .schema.docs import render_markdown, render_table

    if markdown:
        print(render_markdown(), end="")
        return
    from .schema import TABLES

    if table and table not in TABLES:
        err_console.print(f"[red]error:[/red] unknown table {table!r}; known: {', '.join(TABLES)}")
        raise typer.Exit(2)
    for name in [table] if table else TABLES:
        console.print(render_table(name))


@app.command("demo")
@user_errors
def demo_cmd(
    subscribers: Annotated[int, typer.Option(help="Mobile subscribers to simulate.")] = 400_000,
    days: Annotated[int, typer.Option(help="Days of traffic.")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """Simulate an operator, ingest it into the workspace, and show what was built."""
    ws = STATE["ws"]
    sim_dir = ws.root / "sim"
    console.rule("[bold]1. simulate a digital-twin operator")
    _simulate(subscribers, days, seed, sim_dir, None, 1.0)
    console.rule("[bold]2. ingest into the lake")
    _ingest([sim_dir], None)
    console.rule("[bold]3. a first look")
    from .engines.duckdb import run_user_sql

    _print_relation(run_user_sql(ws.lake, """
        SELECT fault_type, domain, count(*) AS faults, min(location_id) AS example_location
        FROM ground_truth GROUP BY ALL ORDER BY faults DESC"""), "Injected faults (ground truth)")
    _print_relation(run_user_sql(ws.lake, """
        SELECT c.city, count(*) AS calls,
               round(100 * avg((v.sip_cause_code IN (500, 503, 504, 408))::INT), 2)
                   AS network_setup_failure_pct,
               round(100 * avg(v.dropped::INT) FILTER (v.setup_success), 2) AS call_drop_pct,
               round(median(v.setup_time_ms) FILTER (v.setup_success)) AS median_setup_ms
        FROM xdr_voice v JOIN cells c USING (cell_id) GROUP BY ALL ORDER BY calls DESC"""),
        "Voice by city")
    console.rule("[bold]4. evaluate KPIs, KQIs and the Customer Experience Index")
    started = time.perf_counter()
    report = evaluate_with_progress(workspace_catalog())
    console.print(f"{len(report.cubes)} cube tables, {sum(c.rows for c in report.cubes):,} rows in "
                  f"{time.perf_counter() - started:.1f} s")
    lake = ws.lake
    _print_relation(run_user_sql(lake, """
        SELECT c.cell, strftime(c.period_start, '%m-%d') AS day, round(c.cei, 1) AS cei,
               round(c.voice_index, 1) AS voice, round(c.mobile_data_index, 1) AS data,
               round(c.video_index, 1) AS video, round(c.home_broadband_index, 1) AS home_bb,
               (SELECT string_agg(DISTINCT g.fault_type, ', ') FROM ground_truth g JOIN cells k
                  ON g.location_id IN (k.cell_id, k.site_id, k.city, k.province)
                WHERE k.cell_id = c.cell AND g.start_time < c.period_start + INTERVAL 1 DAY
                  AND g.end_time > c.period_start) AS fault
        FROM cube_cell_day c WHERE c.cei IS NOT NULL ORDER BY c.cei LIMIT 12"""),
        "Worst cell-days by CEI (indices 0-100), beside the fault the simulator injected there")
    _print_relation(run_user_sql(lake, """
        SELECT segment, count(*) AS customer_days, round(avg(cei), 1) AS mean_cei,
               round(100 * avg(poor_experience::INT), 2) AS poor_experience_pct
        FROM cube_subscriber_day c JOIN subscribers s ON s.subscriber_id = c.subscriber
        GROUP BY ALL ORDER BY poor_experience_pct DESC"""), "Customer experience by segment")
    console.print(f"\nWorkspace: [bold]{ws.root}[/bold]  (lake: {ws.lake.root})")
    console.print("Try: [bold].venv/bin/opencem --workspace " f"{ws.root} kpi preview call_drop_pct "
                  "--by device_model --worst[/bold]")


# Indicator engine and QoE calculators (their modules import the helpers above).
from .indicators.commands import cei_app, evaluate_cmd, evaluate_with_progress, kpi_app, workspace_catalog  # noqa: E402
from .indicators.qoe.cli import qoe_app  # noqa: E402

app.command("evaluate")(evaluate_cmd)
app.add_typer(kpi_app, name="kpi")
app.add_typer(cei_app, name="cei")
app.add_typer(qoe_app, name="qoe")
