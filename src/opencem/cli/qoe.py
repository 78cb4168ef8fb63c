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


def _g107_defaults() -> str:
    from dataclasses import fields

    return ", ".join(f"{f.name} {f.default:g}" for f in fields(emodel.G107Parameters))


def _parameters(pairs: list[str]) -> dict[str, float]:
    """--param NAME=VALUE pairs as G.107 overrides, each checked."""
    from dataclasses import fields

    names = {f.name.lower(): f.name for f in fields(emodel.G107Parameters)}
    out: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or number is None or number != number or number in (float("inf"), float("-inf")):
            output.fail(f"--param {pair!r} must be NAME=NUMBER, e.g. --param WEPL=110")
        out[names.get(name.strip().lower(), name.strip())] = number
    try:
        emodel.parameters(**out)
    except ValueError as err:
        output.fail(f"--param: {err}")
    return out


@app.command("voice")
def voice_cmd(
    codec: Annotated[str, typer.Option(metavar="CODEC", autocompletion=completes(lambda: emodel.CODECS),
                                       help=f"Speech codec (any case or punctuation): {emodel.known_codecs()}.")] = "AMR-WB",
    one_way_delay_ms: Annotated[float, typer.Option(
        min=0, metavar="MS", help="Mouth-to-ear delay Ta, ms.")] = 100.0,
    packet_loss_pct: Annotated[float, typer.Option(
        min=0, max=100, metavar="PCT", help="Packet loss, % (0-100).")] = 0.0,
    burst_ratio: Annotated[float, typer.Option(
        min=1, metavar="RATIO", help="G.107 BurstR: 1 for random loss, above 1 for bursty loss.")] = 1.0,
    talker_echo_ms: Annotated[float | None, typer.Option(
        min=0, metavar="MS", help="Mean one-way delay of the talker-echo path T, ms (default: Ta).")] = None,
    listener_echo_ms: Annotated[float | None, typer.Option(
        min=0, metavar="MS", help="Round-trip delay of the listener-echo path Tr, ms (default: 2 Ta).")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", metavar="NAME=VALUE", help=(
            "A G.107 transmission parameter, repeatable; defaults (G.107 Table 3): " + _g107_defaults()
            + "."))] = None,
    as_json: JsonOpt = False,
) -> None:
    """Voice MOS and R factor of a call from delay, loss and codec (E-model). Every G.107
    parameter can be set, so a published test vector can be reproduced."""
    overrides = _parameters(param or [])
    if talker_echo_ms is not None:
        overrides["T"] = talker_echo_ms
    if listener_echo_ms is not None:
        overrides["Tr"] = listener_echo_ms
    try:
        name = emodel.canonical_codec(codec)
        result = emodel.emodel_call(one_way_delay_ms, packet_loss_pct, name, burst_ratio, **overrides)
    except ValueError as err:
        output.fail(str(err))
    t_ms = overrides.get("T", one_way_delay_ms)
    tr_ms = overrides.get("Tr", 2 * one_way_delay_ms)
    notes = emodel.assumptions(name)
    if "T" not in overrides or "Tr" not in overrides:
        notes.append(f"echo paths: T = {t_ms:g} ms{' (= Ta)' if 'T' not in overrides else ''}, Tr = {tr_ms:g} ms"
                     f"{' (= 2 Ta)' if 'Tr' not in overrides else ''}; --talker-echo-ms and --listener-echo-ms set them")
    wideband = result["band"] == "wb"
    components = {key: result[key] for key in ("Ro", "Is", "Id", "Idte", "Idle", "Idd", "Ie_eff")}
    if as_json:
        _print_json({"codec": name, "band": result["band"], "one_way_delay_ms": one_way_delay_ms,
                     "talker_echo_ms": t_ms, "listener_echo_ms": tr_ms,
                     "packet_loss_pct": packet_loss_pct, "burst_ratio": burst_ratio,
                     "parameters": {k: v for k, v in overrides.items() if k not in ("T", "Tr")},
                     "r": result["r"], "r_nb": result["r_nb"], "mos": result["mos"],
                     "components": components, "assumptions": notes})
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
    for note in notes:
        output.note(f"assumed: {note}")


@app.command("web")
def web_cmd(
    page_load_ms: Annotated[float, typer.Option(min=0, metavar="MS", help="Page load time, ms.")] = 2500.0,
    fastest_ms: Annotated[float, typer.Option(
        min=0, metavar="MS", help="Load time that scores MOS 5 (the context's shortest), ms.")] = web.FASTEST_S * 1000,
    slowest_ms: Annotated[float, typer.Option(
        min=0, metavar="MS", help="Load time that scores MOS 1 (the context's longest), ms.")] = web.SLOWEST_S * 1000,
    as_json: JsonOpt = False,
) -> None:
    """Web-browsing MOS of a page load (G.1030 logarithmic opinion model). All times in ms."""
    if not fastest_ms < slowest_ms or fastest_ms <= 0:
        output.fail(f"--fastest-ms ({fastest_ms:g}) must be above 0 and below --slowest-ms ({slowest_ms:g})")
    mos = web.web_mos(page_load_ms, fastest_ms / 1000, slowest_ms / 1000)
    if as_json:
        _print_json({"page_load_ms": page_load_ms, "fastest_ms": fastest_ms, "slowest_ms": slowest_ms, "mos": mos})
        return
    # Plain print: one sentence needs no Rich (70 ms to import).
    print(f"Web-browsing MOS {mos:.2f} for a {page_load_ms:g} ms page load "
          f"(MOS 5 at {fastest_ms:g} ms, 1 at {slowest_ms:g} ms, logarithmic in between)")


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
        return
    from rich.table import Table

    per_second = result["per_second"]
    table = Table("quantity", "value", title=f"{input_path.name}: P.1203 video session",
                  caption="--json prints every value (O.22 and O.34 per second, the compensations)")
    table.add_row("Session MOS (O.46)", f"[bold]{result['mos']:.2f}[/bold]")
    table.add_row("Audiovisual quality without stalls (O.35)", f"{result['O.35']:.2f}")
    table.add_row("Stalling quality (O.23)", f"{result['O.23']:.2f}")
    table.add_row("Video quality per second (O.22)", f"{min(per_second):.2f} to {max(per_second):.2f}")
    table.add_row("Media length", f"{result['media_length_s']:g} s")
    table.add_row("Stalls (initial loading included)", f"{result['num_stalls']}")
    table.add_row("Stall time weighted by distance to the end", f"{result['total_stall_len_weighted_s']:.2f} s")
    output.console().print(table)
    for note in result["assumptions"]:
        output.note(f"assumed: {note}")
