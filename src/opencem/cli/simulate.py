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


def simulate_into(out: Path, force: bool = False, quiet: bool = False, **options) -> object:
    """Simulate behind a progress bar and print what was written (used by ``demo`` too);
    ``quiet`` leaves out the table of rows (the stream prints its own)."""
    from ..errors import ConfigError
    from ..simulate.config import make_config
    from ..simulate.run import simulate, total_steps

    cfg = make_config(**{k: v for k, v in options.items() if v is not None})
    started = time.perf_counter()
    try:
        with output.progress("simulating") as update:
            update(total=total_steps(cfg))
            result = simulate(cfg, out, lambda msg: update(advance=1, description=msg), force=force)
    except ConfigError as err:
        if options.get("scenario") and str(err).startswith("injections"):  # say which file
            from ..simulate.config import scenario_path

            raise ConfigError(f"Scenario {scenario_path(options['scenario']).name}, field {err}") from None
        raise
    elapsed = time.perf_counter() - started
    rows = sum(v for k, v in result.rows.items() if k != "pm_counter_values")
    table = output.arrow([{"table": name, "rows": n} for name, n in sorted(result.rows.items())]
                         + [{"table": f"truth/{name}", "rows": n} for name, n in result.truth_rows.items()])
    if not quiet:
        output.emit(table, title=f"Simulated operator in {out}")
    output.say(stderr=True, text=f"{rows:,} records and {result.pm_files} vendor PM files in {elapsed:.1f} s "
               f"({rows / max(elapsed, 1e-9):,.0f} records/s)")
    return result


@app.command("simulate", rich_help_panel="Data")
def simulate_cmd(
    subscribers: Annotated[int | None, typer.Option(help="Mobile subscribers to simulate [default: 20000].",
                                                    show_default=False)] = None,
    days: Annotated[int | None, typer.Option(help="Days of traffic [default: 2].", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; same seed, same output [default: 7].",
                                             show_default=False)] = None,
    out: Annotated[Path, typer.Option(metavar="DIR", help=(
        "Output folder. An earlier simulator output there is replaced; a folder holding anything "
        "else is refused unless --force."))] = Path("opencem-sim"),
    force: Annotated[bool, typer.Option("--force", help="Replace --out even if it holds other files.")] = False,
    start_date: Annotated[str | None, typer.Option(metavar="DATE", help="First day, YYYY-MM-DD (UTC).")] = None,
    fault_rate: Annotated[float | None, typer.Option(help="Multiplier on injected faults (0: none) [default: 1].",
                                                     show_default=False)] = None,
    scenario: Annotated[str | None, typer.Option(metavar="FILE|NAME", help=(
        "A scenario file (territory, time zone, services, devices, fault rates and shapes, injections; "
        "docs/simulator.md) or a shipped one by name: benchmark, default. Options given here win over it."))] = None,
    stream: Annotated[bool, typer.Option("--stream", rich_help_panel="Real-time mode", help=(
        "Deliver the world as it happens: records in arrival order, with delays, out-of-order and "
        "duplicate deliveries, to --to DIR or --nats URL. The batch output and its truth stay in --out."))] = False,
    to: Annotated[Path | None, typer.Option(metavar="DIR", rich_help_panel="Real-time mode", help=(
        "Landing folder for --stream: micro-batch files under DIR/tables and DIR/pm/<vendor> (an earlier "
        "stream's folder is replaced)."))] = None,
    nats: Annotated[str | None, typer.Option(metavar="URL", rich_help_panel="Real-time mode", help=(
        "NATS server with JetStream for --stream, e.g. nats://127.0.0.1:4222: subjects opencem.RUN.<table>."))] = None,
    speedup: Annotated[float, typer.Option(min=0, rich_help_panel="Real-time mode", help=(
        "Simulated seconds per real second (60: a day in 24 minutes; 0: as fast as possible)."))] = 60.0,
    no_wait: Annotated[bool, typer.Option("--no-wait", rich_help_panel="Real-time mode",
                                          help="Do not pace the stream (as --speedup 0).")] = False,
    every: Annotated[float, typer.Option(min=1, metavar="SECONDS", rich_help_panel="Real-time mode", help=(
        "Simulated seconds per micro-batch: one file per source, or one round of messages."))] = 60.0,
    replay: Annotated[Path | None, typer.Option(metavar="SIM", rich_help_panel="Real-time mode", help=(
        "Stream this earlier simulator output instead of simulating again (its size and seed apply)."))] = None,
    run: Annotated[str, typer.Option(metavar="NAME", rich_help_panel="Real-time mode", help=(
        "Subject token of the run on NATS: opencem.NAME.<table>, stream OPENCEM_NAME."))] = "twin",
) -> None:
    """Simulate a digital-twin operator: network, traffic, faults, customers. What really
    happened goes to DIR/truth/, which `opencem ingest` refuses; `opencem truth load DIR/truth`
    keeps it apart in the workspace. With --stream, the same world is then delivered as it
    happens (docs/simulator.md, Real-time mode)."""
    options = dict(subscribers=subscribers, days=days, seed=seed, fault_rate=fault_rate,
                   start_date=parse_date(start_date, "--start-date"), scenario=scenario)
    if not stream:
        given = [name for name, value in (("--to", to), ("--nats", nats), ("--replay", replay),
                                          ("--no-wait", no_wait or None)) if value is not None]
        if given:
            output.fail(f"{given[0]} belongs to real-time mode; add --stream")
        simulate_into(out, force, **options)
        return
    if (to is None) == (nats is None):
        output.fail("--stream needs one place to deliver to: --to DIR (a landing folder) or --nats URL")
    stream_into(out if replay is None else replay, to, nats, run, 0.0 if no_wait else speedup, every,
                force, None if replay is not None else options)


def stream_into(sim: Path, to: Path | None, nats: str | None, run: str, speedup: float, every_s: float,
                force: bool, simulate_options: dict | None) -> None:
    """Simulate into ``sim`` (unless ``simulate_options`` is None: replay it), then stream it
    to the landing folder ``to`` or the NATS server ``nats``, and print what was delivered."""
    from ..simulate.stream import stream
    from ..simulate.stream_sinks import LandingSink, NatsSink

    sink = LandingSink(to, force) if to is not None else NatsSink(nats, run)  # before a long simulation
    if simulate_options is not None:
        simulate_into(sim, force, quiet=True, **simulate_options)
    where = str(to) if to is not None else f"{nats} (subjects opencem.{run}.*)"
    pace = "as fast as possible" if speedup == 0 else f"at {speedup:g}x"
    output.say(f"streaming {sim} to {where} {pace}, a micro-batch per {every_s:g} simulated seconds "
               "(Ctrl-C stops)", stderr=True)
    with output.progress("streaming") as update:
        def progress(tick: int, ticks: int, now_ms: int, so_far) -> None:
            update(total=ticks, completed=tick, description=f"{_clock(now_ms)} {so_far.deliveries:,} deliveries")

        result = stream(sim, sink, speedup=speedup, every_s=every_s, progress=progress)
    units = {k: "s" for k in ("max_behind_s", "delay_p50_s", "delay_p99_s", "delay_max_s")}
    units.update(duplicate_pct="%", out_of_order_pct="%")
    output.emit(output.arrow(result.summary(), units), title=f"Streamed to {where}")
    totals = result.totals()
    share = 100 * totals["out_of_order"] / max(totals["records"], 1)
    if result.skipped:
        output.note(f"not streamed (not canonical tables): {', '.join(result.skipped)}")
    output.say(stderr=True, text=(
        f"{'stopped by Ctrl-C at ' + _clock(result.reached_ms) + ': ' if result.interrupted else ''}"
        f"{result.deliveries:,} deliveries ({totals['records']:,} records, {totals['duplicates']:,} duplicates, "
        f"{totals['updates']:,} updates; {share:.1f}% of records out of order) in {result.elapsed_s:.1f} s "
        f"({result.deliveries / max(result.elapsed_s, 1e-9):,.0f}/s); the truth for scoring is in {sim / 'truth'}"))
    if result.interrupted:
        raise typer.Exit(130)


def _clock(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


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

    ws = workspace(ctx)
    faults, cases = summary(ws.lake if ws.exists else None, ws.truth_dir)
    output.emit(faults, title="Injected faults (truth)")
    output.emit(cases, title="Poor-experience cases by service and true domain (truth)")
