"""``opencem demo``: simulate an operator, ingest it, evaluate the indicators, and show them."""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from . import output
from .context import workspace
from .indicators import evaluate_with_progress, print_issues, workspace_catalog
from .simulate import load_truth_into, simulate_into

app = typer.Typer()
APPS = [(app, None)]


@app.command("demo", rich_help_panel="Start here")
def demo_cmd(
    ctx: typer.Context,
    subscribers: Annotated[int, typer.Option(help="Mobile subscribers to simulate.")] = 400_000,
    days: Annotated[int, typer.Option(help="Days of traffic.")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    force: Annotated[bool, typer.Option("--force", help=(
        "Replace WORKSPACE/sim even if it holds files the simulator did not write."))] = False,
) -> None:
    """Simulate an operator into the workspace, ingest it, evaluate the Customer Experience
    Index, and show the worst cells beside the faults that were injected there."""
    from ..ingest.load import ingest
    from ..simulate import tour

    ws = workspace(ctx)
    output.rule("[bold]1. simulate a digital-twin operator")
    simulate_into(ws.root / "sim", force, subscribers=subscribers, days=days, seed=seed)
    output.rule("[bold]2. ingest into the lake")
    started = time.perf_counter()
    with output.progress("ingesting") as update:
        report = ingest(ws.lake, [ws.root / "sim"], rejected_dir=ws.rejected_dir,
                        dictionaries=ws.dictionaries_dir,
                        progress=lambda name, rows, total: update(advance=1, total=total))
    output.say(f"{output.count(len(report.files), 'file')}, {output.count(sum(report.rows().values()), 'row')} in "
               f"{time.perf_counter() - started:.1f} s; {report.count('rejected')} rejected, "
               f"{output.count(report.quarantined, 'row')} quarantined")
    load_truth_into(ws, ws.root / "sim" / "truth")
    output.rule("[bold]3. a first look")
    lake = ws.lake
    output.emit(tour.injected_faults(lake, ws.truth_dir), title="Injected faults (truth area, not in the lake)")
    output.emit(tour.voice_by_city(lake), title="Voice by city")
    output.rule("[bold]4. evaluate KPIs, KQIs and the Customer Experience Index")
    cat = workspace_catalog(ws)
    print_issues(cat)
    started = time.perf_counter()
    result = evaluate_with_progress(ws, cat)
    output.say(f"{output.count(len(result.cubes), 'cube table')}, {output.count(sum(c.rows for c in result.cubes), 'row')} in "
               f"{time.perf_counter() - started:.1f} s")
    lake = ws.lake
    output.emit(tour.worst_cell_days(lake, ws.truth_dir),
                title="Worst cell-days by CEI (indices 0-100), beside the fault the simulator injected there")
    output.emit(tour.experience_by_segment(lake), title="Customer experience by segment")
    output.say(f"\nWorkspace: [bold]{ws.root}[/bold]  (lake: {ws.lake.root})")
    output.say(f"Try: [bold]{output.escape(invoked_as())} kpi preview call_drop_pct --by device_model --worst "
               f"--workspace {shlex.quote(str(ws.root))}[/bold]")


def invoked_as(argv0: str | None = None) -> str:
    """The command line that runs opencem the way the user ran it: ``opencem`` when that name
    on PATH is this program, ``python -m opencem`` for the module, else the path they typed."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    path = Path(argv0)
    if path.name == "__main__.py":
        return f"{shlex.quote(sys.executable)} -m opencem"
    found = shutil.which("opencem")
    if found and path.exists() and Path(found).resolve() == path.resolve():
        return "opencem"
    return shlex.quote(argv0)
