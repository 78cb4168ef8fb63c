"""``opencem qoe``: score one call, one page load or one video session from the command line.

One-number calculators: they import neither NumPy nor Arrow (the E-model and web formulas run
on plain floats, :class:`~opencem.indicators.qoe.emodel.ScalarOps`), so they answer at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..indicators.qoe import emodel, web
from . import output
from .options import completes

app = typer.Typer(
    help="Quality-of-experience models: voice (ITU-T G.107/G.107.1 E-model), web browsing "
         "(G.1030 log model) and video (ITU-T P.1203).",
    no_args_is_help=True)
APPS = [(app, "qoe", "Tools")]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _print_json(payload: dict, indent: int | None = 1) -> None:
    print(json.dumps(payload, indent=indent, default=_jsonable))


def _jsonable(value):
    """NumPy scalars and arrays (as a model may return them) as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@app.command("voice")
def voice_cmd(
    codec: Annotated[str, typer.Option(metavar="CODEC", autocompletion=completes(lambda: emodel.CODECS),
                                       help=f"Speech codec: {emodel.known_codecs()}.")] = "AMR-WB",
    one_way_delay_ms: Annotated[float, typer.Option(
        min=0, metavar="MS", help="Mouth-to-ear delay, ms (used as Ta; T = Ta, Tr = 2 Ta).")] = 100.0,
    packet_loss_pct: Annotated[float, typer.Option(
        min=0, max=100, metavar="PCT", help="Packet loss, % (0-100).")] = 0.0,
    burst_ratio: Annotated[float, typer.Option(
        min=1, metavar="RATIO", help="G.107 BurstR: 1 for random loss, above 1 for bursty loss.")] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Voice MOS and R factor of a call from delay, loss and codec (E-model)."""
    try:
        name = emodel.canonical_codec(codec)
        result = emodel.emodel_call(one_way_delay_ms, packet_loss_pct, name, burst_ratio)
    except ValueError as err:
        output.fail(str(err))
    wideband = result["band"] == "wb"
    components = {key: result[key] for key in ("Ro", "Is", "Id", "Idte", "Idle", "Idd", "Ie_eff")}
    if as_json:
        _print_json({"codec": name, "band": result["band"], "one_way_delay_ms": one_way_delay_ms,
                     "packet_loss_pct": packet_loss_pct, "burst_ratio": burst_ratio,
                     "r": result["r"], "r_nb": result["r_nb"], "mos": result["mos"],
                     "components": components})
        return
    from rich.table import Table

    model = "G.107.1 wideband E-model, R on its 0-129 scale" if wideband else "G.107 E-model"
    table = Table("quantity", "value", caption=model, title=f"{name}, {one_way_delay_ms:g} ms, "
                  f"{packet_loss_pct:g} % loss, BurstR {burst_ratio:g}")
    table.add_row("R", f"{result['r']:.2f}")
    if wideband:
        table.add_row("R narrowband-equivalent (R / 1.29)", f"{result['r_nb']:.2f}")
    labels = {"Ro": "Ro basic signal-to-noise", "Is": "Is simultaneous impairments",
              "Id": "Id delay impairments", "Idte": "  Idte talker echo",
              "Idle": "  Idle listener echo", "Idd": "  Idd absolute delay",
              "Ie_eff": "Ie,eff codec and packet loss"}
    for key, label in labels.items():
        table.add_row(label, f"{components[key]:.2f}")
    table.add_row("MOS", f"[bold]{result['mos']:.2f}[/bold]")
    output.console().print(table)


@app.command("web")
def web_cmd(
    page_load_ms: Annotated[float, typer.Option(metavar="MS", help="Page load time, ms.")] = 2500.0,
    fastest_s: Annotated[float, typer.Option(
        metavar="S", help="Load time that scores MOS 5 (the context's shortest), s.")] = web.FASTEST_S,
    slowest_s: Annotated[float, typer.Option(
        metavar="S", help="Load time that scores MOS 1 (the context's longest), s.")] = web.SLOWEST_S,
    as_json: JsonOpt = False,
) -> None:
    """Web-browsing MOS of a page load (G.1030 logarithmic opinion model)."""
    try:
        mos = web.web_mos(page_load_ms, fastest_s, slowest_s)
    except ValueError as err:
        output.fail(str(err))
    if as_json:
        _print_json({"page_load_ms": page_load_ms, "fastest_s": fastest_s, "slowest_s": slowest_s, "mos": mos})
        return
    # Plain print: one sentence needs no Rich (70 ms to import).
    print(f"Web-browsing MOS {mos:.2f} for a {page_load_ms:g} ms page load "
          f"(MOS 5 at {fastest_s:g} s, 1 at {slowest_s:g} s, logarithmic in between)")


@app.command("video")
def video_cmd(
    input_path: Annotated[Path, typer.Option(
        "--input", metavar="FILE", help="Session JSON file (segments and stalls, as P.1203 mode 0 needs).")],
    as_json: JsonOpt = False,
) -> None:
    """Video MOS of a streaming session (ITU-T P.1203: O.22 per second, O.46 overall)."""
    try:
        session = json.loads(input_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        output.fail(f"{input_path}: no such file")
    except (OSError, UnicodeDecodeError) as err:
        output.fail(f"{input_path}: cannot be read ({err.__class__.__name__})")
    except json.JSONDecodeError as err:
        output.fail(f"{input_path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})")
    if not isinstance(session, dict):
        output.fail(f"{input_path} must hold a JSON object describing one session")
    from ..indicators.qoe.p1203 import evaluate_session

    try:
        result = evaluate_session(session)
    except ValueError as err:
        output.fail(f"{input_path}: {err}")
    if as_json:
        _print_json(result, indent=None)
    else:
        output.console().print_json(json.dumps(result, default=_jsonable))
