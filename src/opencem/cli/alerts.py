"""``opencem alerts`` and ``opencem silences``: what the store holds about alerts, sending what
is queued, checking the alerting config, and muting alerts for a while (docs/alerting.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from . import output
from .context import workspace
from .output import Format, FormatOpt, OutputOpt

alerts_app = typer.Typer(no_args_is_help=True, help=(
    "Alerts in the operational store, their evidence, and delivering their notifications."))
silences_app = typer.Typer(no_args_is_help=True, help="Silences: alerts matching them are not notified until they end.")
APPS = [(alerts_app, "alerts", "Operate"), (silences_app, "silences", "Operate")]

ConfigOpt = Annotated[Path | None, typer.Option("--config", metavar="FILE", help=(
    "The alerting config (default WORKSPACE/alerting.yaml, else the shipped one)."))]


def config_path(ctx: typer.Context, given: Path | None) -> Path | None:
    if given is not None:
        return given
    own = workspace(ctx).root / "alerting.yaml"
    return own if own.is_file() else None


def _matchers(values: list[str] | None, option: str):
    from ..rules.matchers import Matcher

    out = []
    for value in values or []:
        try:
            out.append(Matcher.parse(value))
        except ValueError as err:
            output.fail(f"{option} {value!r}: {err}")
    return out


def _now() -> datetime:
    return datetime.now(UTC)


@alerts_app.command("list")
def list_cmd(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(metavar="STATE", help="pending, firing, resolved or inactive.")] = None,
    rule: Annotated[str | None, typer.Option(metavar="NAME", help="Only this rule's alerts.")] = None,
    label: Annotated[list[str] | None, typer.Option(metavar="K=V", help=(
        "Only alerts whose labels match (=, !=, =~, !~); repeatable."))] = None,
    limit: Annotated[int, typer.Option(min=0, metavar="N", help="At most N alerts, newest first (0: all).")] = 100,
    fmt: FormatOpt = Format.table,
    out: OutputOpt = None,
) -> None:
    """Alerts, newest first."""
    from ..rules.records import ALERT_COLUMNS, alert_rows

    states = ("pending", "firing", "resolved", "inactive")
    if state is not None and state not in states:
        output.fail(f"--state {state!r} is not one of {', '.join(states)}")
    matchers = _matchers(label, "--label")
    with workspace(ctx).store() as store, store.transaction() as session:
        found = alert_rows(session, state, rule, matchers, limit or None)
    output.emit(output.arrow(found, {"value": ""}, ALERT_COLUMNS), fmt, out, title="Alerts")


@alerts_app.command("show")
def show_cmd(ctx: typer.Context, alert_id: Annotated[int, typer.Argument(metavar="ID")],
             fmt: FormatOpt = Format.table) -> None:
    """One alert with its evidence (the rule, its values, the window), what muted it last, and
    the notifications and actions it caused."""
    import json

    from ..rules.records import alert_detail

    with workspace(ctx).store() as store, store.transaction() as session:
        detail = alert_detail(session, alert_id)
    if fmt is not Format.table:
        print(json.dumps(detail, indent=1, default=str))
        return
    for key, value in detail.items():
        shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else output.cell(value)
        output.say(f"[bold]{key}[/bold]: {output.escape(shown)}")


@alerts_app.command("dispatch")
def dispatch_cmd(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Send once what is queued and due now (SMS, push, webhooks, outbox lines, work orders
    for a registered sink); failures are retried by later runs with backoff."""
    from ..rules.alerting_spec import load_config
    from ..rules.dispatch import dispatch
    from ..rules.gateways import build_gateways

    ws = workspace(ctx)
    cfg = load_config(config_path(ctx, config))
    gateways = build_gateways(cfg, ws.root / "outbox")
    with ws.store() as store:
        report = dispatch(store.transaction, gateways, _now())
    output.say(f"{output.count(report.due, 'notification')} due: {report.sent} sent, {report.retrying} to retry, "
               f"{report.failed} given up; {output.count(report.work_orders, 'work order')} handed over")
    if report.failed:
        raise typer.Exit(output.EXIT_PROBLEMS)


@alerts_app.command("check-config")
def check_config_cmd(ctx: typer.Context, file: Annotated[Path | None, typer.Argument(metavar="FILE", help=(
        "The config to check (default: the one dispatch would use)."))] = None) -> None:
    """Validate an alerting config: every problem with its line and field. Exits 1 on errors."""
    from ..rules.alerting_spec import DEFAULT_CONFIG, check_config

    path = file or config_path(ctx, None) or DEFAULT_CONFIG
    config, issues = check_config(path)
    for issue in issues:
        (output.error if issue.level == "error" else output.warn)(str(issue))
    if config is None:
        raise typer.Exit(output.EXIT_PROBLEMS)
    routes = len(config.routes_by_id)
    output.say(f"{output.escape(str(path))}: ok ({output.count(routes, 'route')}, "
               f"{output.count(len(config.receivers), 'receiver')}, "
               f"{output.count(len(config.inhibit_rules), 'inhibit rule')})")


@silences_app.command("add")
def silence_add(
    ctx: typer.Context,
    matcher: Annotated[list[str], typer.Option(metavar="K=V", help="A label matcher (=, !=, =~, !~); repeatable.")],
    duration: Annotated[str | None, typer.Option(metavar="DURATION", help="How long from now: 2h, 30m, 1d.")] = None,
    until: Annotated[str | None, typer.Option(metavar="TIME", help="Until this UTC time, e.g. 2026-11-02T18:00Z.")] = None,
    starts: Annotated[str | None, typer.Option(metavar="TIME", help="From this UTC time (default now).")] = None,
    comment: Annotated[str, typer.Option(metavar="TEXT", help="Why (planned works, a known fault).")] = "",
    author: Annotated[str | None, typer.Option(metavar="NAME", help="Who adds it (default $USER).")] = None,
) -> None:
    """Mute alerts matching every matcher until the silence ends."""
    import getpass
    from datetime import timedelta

    from ..rules.silences import add_silence
    from ..rules.spec import parse_duration

    if (duration is None) == (until is None):
        output.fail("give --duration or --until, one of them")
    start = _time(starts, "--starts") if starts else _now()
    if duration is not None:
        try:
            end = start + timedelta(seconds=parse_duration(duration))
        except ValueError as err:
            output.fail(f"--duration: {err}")
    else:
        end = _time(until, "--until")
    matchers = _matchers(matcher, "--matcher")
    with workspace(ctx).store() as store, store.transaction() as session:
        silence = add_silence(session, matchers, start, end, author or getpass.getuser(), comment)
        sid = silence.id
    output.say(f"silence {sid} added, until {end.isoformat()}")


def _time(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        output.fail(f"{option} {text!r} is not a time like 2026-11-02T18:00Z")
    if value.tzinfo is None:
        output.fail(f"{option} {text!r} has no time zone; add Z for UTC (2026-11-02T18:00Z)")
    return value.astimezone(UTC)


@silences_app.command("list")
def silence_list(ctx: typer.Context,
                 all_: Annotated[bool, typer.Option("--all", help="Expired silences too.")] = False,
                 fmt: FormatOpt = Format.table, out: OutputOpt = None) -> None:
    """Silences that have not ended (with --all, every one)."""
    from ..rules.records import silence_rows

    with workspace(ctx).store() as store, store.transaction() as session:
        found = silence_rows(session, _now(), all_)
    columns = ["id", "state", "matchers", "starts_at", "ends_at", "created_by", "comment"]
    output.emit(output.arrow(found, None, columns), fmt, out, title="Silences")


@silences_app.command("expire")
def silence_expire(ctx: typer.Context, silence_id: Annotated[int, typer.Argument(metavar="ID")],
                   author: Annotated[str | None, typer.Option(metavar="NAME", help="Who (default $USER).")] = None
                   ) -> None:
    """End a silence now; the alerts it muted are notified at their group's next tick."""
    import getpass

    from ..rules.silences import expire_silence

    with workspace(ctx).store() as store, store.transaction() as session:
        expire_silence(session, silence_id, author or getpass.getuser(), _now())
    output.say(f"silence {silence_id} expired")
