"""``opencem simulate``: the digital-twin operator."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from . import output
from .context import workspace
from .options import parse_date

app = typer.Typer()
truth_app = typer.Typer(help="The simulator's truth: what was injected and what caused each poor case, "
                        "kept apart from the lake.", no_args_is_help=True)
APPS = [(app, None), (truth_app, "truth", "Data")]


def simulate_into(out: Path, force: bool = False, **options) -> object:
    """Simulate behind a progress bar and print what was written (used by ``demo`` too)."""
    from ..simulate.config import make_config

    from ..simulate.run import simulate, total_steps

    cfg = make_config(**{k: v for k, v in options.items() if v is not None})
    started = time.perf_counter()
    with output.progress("simulating") as update:
        update(total=total_steps(cfg))
        result = simulate(cfg, out, lambda msg: update(advance=1, description=msg), force=force)
    elapsed = time.perf_counter() - started
    rows = sum(v for k, v in result.rows.items() if k != "pm_counter_values")
    table = output.arrow([{"table": name, "rows": n} for name, n in sorted(result.rows.items())]
                         + [{"table": f"truth/{name}", "rows": n} for name, n in result.truth_rows.items()])
    output.emit(table, title=f"Simulated operator in {out}")
    output.say(stderr=True, text=f"{rows:,} records and {result.pm_files} vendor PM files in {elapsed:.1f} s "
               f"({rows / max(elapsed, 1e-9):,.0f} records/s)")
    return result


@app.command("simulate", rich_help_panel="Data")
def simulate_cmd(
    subscribers: Annotated[int, typer.Option(help="Mobile subscribers to simulate.")] = 20_000,
    days: Annotated[int, typer.Option(help="Days of traffic.")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same output.")] = 7,
    out: Annotated[Path, typer.Option(metavar="DIR", help=(
        "Output folder. An earlier simulator output there is replaced; a folder holding anything "
        "else is refused unless --force."))] = Path("opencem-sim"),
    force: Annotated[bool, typer.Option("--force", help="Replace --out even if it holds other files.")] = False,
    start_date: Annotated[str | None, typer.Option(metavar="DATE", help="First day, YYYY-MM-DD (UTC).")] = None,
    fault_rate: Annotated[float, typer.Option(help="Multiplier on injected faults (0: none).")] = 1.0,
) -> None:
    """Simulate a digital-twin operator: network, traffic, faults, customers. What really
    happened goes to DIR/truth/, which `opencem ingest` refuses; `opencem truth load DIR/truth`
    keeps it apart in the workspace."""
    simulate_into(out, force, subscribers=subscribers, days=days, seed=seed, fault_rate=fault_rate,
                  start_date=parse_date(start_date, "--start-date"))


def load_truth_into(ws, folder: Path) -> dict[str, int]:
    """Load a truth folder into the workspace's truth area and say what it holds (used by
    ``demo`` too)."""
    from ..simulate.truth import load_truth

    rows = load_truth(folder, ws.truth_dir)
    output.say(f"truth of {folder} kept in {ws.truth_dir}: "
               + ", ".join(f"{output.count(n, 'row')} in {name}" for name, n in rows.items()))
    return rows


@truth_app.command("load")
def truth_load_cmd(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A simulator truth folder (SIM/truth).")],
) -> None:
    """Keep a simulation's truth in the workspace's truth area (replacing an earlier one), apart
    from the lake: the demo and the scoring benchmarks read it, the indicator engine never does."""
    load_truth_into(workspace(ctx), folder)


@truth_app.command("show")
def truth_show_cmd(ctx: typer.Context) -> None:
    """Faults per type and poor-experience cases per service and domain in the truth area."""
    from ..simulate.truth import summary

    ws = workspace(ctx).require()
    faults, cases = summary(ws.lake, ws.truth_dir)
    output.emit(faults, title="Injected faults (truth)")
    output.emit(cases, title="Poor-experience cases by service and true domain (truth)")
