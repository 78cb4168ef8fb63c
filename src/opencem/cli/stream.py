"""``opencem stream``: keep the streamed cubes up to date per window as records arrive
(docs/stream.md), and show what a stream's state holds."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Annotated

import typer

from . import output
from .context import workspace
from .output import Format, FormatOpt, OutputOpt

app = typer.Typer(no_args_is_help=True, help=(
    "Stream processing: the cubes marked stream: true kept up to date per window, with the same "
    "compiled plans as `opencem evaluate`."))
APPS = [(app, "stream", "Indicators")]

UNITS = {"s": 1, "min": 60, "m": 60, "h": 3600, "d": 86_400}


def seconds(value: str, option: str) -> int:
    m = re.fullmatch(r"(\d+)\s*(s|min|m|h|d)?", value.strip())
    if m is None:
        output.fail(f"{option} {value!r} is not a duration such as 90s, 15min, 2h or 1d")
    return int(m[1]) * UNITS[m[2] or "s"]


def _state_path(ws, state: Path | None, name: str) -> Path:
    return state or ws.root / "stream" / f"{name}.duckdb"


@app.command("run")
def run_cmd(
    ctx: typer.Context,
    folder: Annotated[Path | None, typer.Option("--from", metavar="DIR", help=(
        "Landing folder to follow (DIR/tables/<table>_<stamp>.parquet, as `opencem simulate --stream --to` "
        "writes it)."))] = None,
    nats: Annotated[str | None, typer.Option(metavar="URL", help=(
        "NATS server with JetStream, e.g. nats://127.0.0.1:4222: the run's subjects opencem.RUN.<table>."))] = None,
    run: Annotated[str, typer.Option(metavar="NAME", help="The run on NATS (stream OPENCEM_NAME).")] = "twin",
    http: Annotated[str | None, typer.Option(metavar="HOST:PORT", help=(
        "Listen for POST /v1/records/<table> (JSON Lines or Arrow IPC stream), POST /v1/pm/<vendor>/<file> "
        "and POST /v1/end; a bare PORT listens on 127.0.0.1. Each reply is sent after its commit."))] = None,
    http_token_file: Annotated[Path | None, typer.Option(metavar="FILE", help=(
        "A file holding the bearer token every POST must carry (Authorization: Bearer TOKEN); "
        "required to listen beyond this machine."))] = None,
    http_max_mib: Annotated[int, typer.Option(min=1, metavar="MIB", help=(
        "Largest request body, in MiB (also once gunzipped); larger ones get 413."))] = 64,
    state: Annotated[Path | None, typer.Option(metavar="FILE", help=(
        "The stream's state and window outputs (DuckDB); default WORKSPACE/stream/<landing|RUN>.duckdb."))] = None,
    window: Annotated[str, typer.Option(metavar="GRAIN", help="Window length: 1min, 5min, 15min or hour.")] = "15min",
    lateness: Annotated[str, typer.Option(metavar="DURATION", help=(
        "Allowed lateness: a record whose window closed longer ago than this (by its source's watermark) "
        "goes to the late_records table."))] = "1h",
    retain: Annotated[str, typer.Option(metavar="DURATION", help=(
        "Delete the records of spans that can no longer change once they are this much older than their "
        "source's watermark (window outputs stay), or 'forever' to keep every record."))] = "1h",
    cube: Annotated[list[str] | None, typer.Option(metavar="TABLE", help=(
        "Stream this cube table (e.g. cube_cell_15min) instead of those marked stream: true; repeatable."))] = None,
    kpi: Annotated[list[str] | None, typer.Option(metavar="NAME", hidden=True, help="Only these KPIs.")] = None,
    max_records: Annotated[int, typer.Option(min=1, metavar="N", help=(
        "Records per commit at most (a commit costs about a second per streamed cube, whatever its size)."))] = 1_000_000,
    until_finished: Annotated[bool, typer.Option("--until-finished", help=(
        "Stop once the feed says it has ended and everything is taken."))] = False,
    idle_exit: Annotated[str | None, typer.Option(metavar="DURATION", help=(
        "Stop after this long without records."))] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Start the state anew (its outputs are deleted).")] = False,
    rules: Annotated[list[str] | None, typer.Option(metavar="FILE", help=(
        "Evaluate these alert rule files on every commit (docs/rules.md); 'standard' for the workspace's "
        "rules/*.rules.yaml, else the standard rules. Alerts go to the operational store; repeatable."))] = None,
    alerting: Annotated[Path | None, typer.Option(metavar="FILE", help=(
        "The alerting config (routes, receivers, inhibition; docs/alerting.md); default the shipped one."))] = None,
) -> None:
    """Consume records continuously and keep each streamed cube's windows up to date; Ctrl-C
    stops between commits. With --rules, evaluate alert rules in each commit and relay the
    alerts to the operational store."""
    from ..rules.stream import relay_state
    from ..stream import StreamConfig, run_stream
    from .indicators import print_issues, workspace_catalog

    if sum(x is not None for x in (folder, nats, http)) != 1:
        output.fail("give one source: --from DIR, --nats URL or --http HOST:PORT")
    ws = workspace(ctx)
    tables = ws.tables()
    cat = workspace_catalog(ws)
    print_issues(cat)
    path = _state_path(ws, state, "landing" if folder is not None else "http" if http is not None else run)
    if folder is not None:
        from ..stream.landing import LandingSource

        source = LandingSource(folder, tables)
    elif http is not None:
        source = _http_source(http, http_token_file, http_max_mib, tables)
    else:
        from ..stream.nats import NatsSource

        source = NatsSource(nats, run, tables)
    if reset:
        from ..stream.publish import outputs_folder, remove_outputs

        for p in (path, path.with_name(path.name + ".wal")):
            p.unlink(missing_ok=True)
        remove_outputs(outputs_folder(path))
    config = StreamConfig(window=window, lateness_s=seconds(lateness, "--lateness"), cubes=cube or None,
                          kpis=kpi or None, max_records=max_records, until_finished=until_finished,
                          idle_exit_s=seconds(idle_exit, "--idle-exit") if idle_exit else None,
                          dictionaries=ws.dictionaries_dir,
                          retain_s=None if retain.strip() == "forever" else seconds(retain, "--retain"))
    on_batch, after_commit, store, alerting_config = (_stream_rules(ws, cat, tables, rules, alerting, config)
                                                      if rules else (None, lambda: 0, None, None))

    def progress(r) -> None:
        relayed = after_commit()  # the alerts this commit caused, to the operational store
        output.say(f"batch {r.batches}: {r.records:,} records, {r.rows_written:,} window rows written"
                   + (f", {relayed:,} alert events" if relayed else ""), stderr=True)

    stopping = []
    previous = signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    try:
        if store is not None:  # what a crash left between a commit and its relay
            relay_state(path, store.transaction, alerting_config)
        report = run_stream(path, source, cat, tables, config, lake=ws.lake if ws.exists else None,
                            stop=lambda: bool(stopping), progress=progress, on_batch=on_batch)
        if store is not None:
            relay_state(path, store.transaction, alerting_config)
    finally:
        signal.signal(signal.SIGINT, previous)
        if store is not None:
            store.close()
    if on_batch is not None:
        for name, why in sorted(on_batch.skipped.items()):
            output.note(f"rule {name} did not run: {why}")
    output.say(f"{report.records:,} records in {report.batches:,} commits, {report.seconds:.1f} s; windows of "
               f"{', '.join(report.cubes)} in {output.escape(str(path))}", stderr=True)
    for table, n in sorted(report.skipped.items()):
        output.note(f"{n:,} {table} file(s) or message(s) not read (not a table the stream reads)")
    if stopping:
        raise typer.Exit(130)


def _stream_rules(ws, cat, tables, files: list[str], alerting: Path | None, config):
    """The rules' on_batch, what relays their alerts after each commit, and the store it opened."""
    from ..rules.alerting_spec import load_config
    from ..rules.catalog import RuleContext, load_rules, raise_issues
    from ..rules.stream import StreamRules
    from .rules import chosen_rule_files

    paths = chosen_rule_files(ws, files)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        output.fail(f"--rules: no such file: {', '.join(missing)}")
    ctx = RuleContext(cat, tables)
    checked, issues = load_rules(paths, ctx)
    for issue in issues:
        if issue.level == "warning":
            output.warn(str(issue))
    raise_issues(issues)
    alerting_config = load_config(alerting)
    on_batch = StreamRules(checked, {c: ctx.better(c) for cr in checked for c in getattr(cr.query, "anomaly_of", ())})
    if config.retain_s is not None:
        config.retain_s = max(config.retain_s, on_batch.retain_s)  # counts and bursts read past records
    store = ws.store()
    return on_batch, lambda: on_batch.relay(store.transaction, alerting_config), store, alerting_config


def _http_source(address: str, token_file: Path | None, max_mib: int, tables):
    from ..stream.http import HttpSource, is_loopback, parse_address

    host, port = parse_address(address)
    token = None
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except (OSError, UnicodeError) as err:
            output.fail(f"--http-token-file {token_file} cannot be read ({getattr(err, 'strerror', None) or err})")
        if len(token) < 16:
            output.fail(f"--http-token-file {token_file} holds {len(token)} characters; a token needs at least 16")
    elif not is_loopback(host):
        output.fail(f"--http {address} listens beyond this machine; give --http-token-file so that only holders "
                    "of the token can post records (or listen on 127.0.0.1)")
    return HttpSource(host, port, tables, token=token, max_request_bytes=max_mib << 20,
                      on_listening=lambda a: output.say(f"listening on http://{a}/v1/", stderr=True))


StateOpt = Annotated[Path | None, typer.Option(metavar="FILE", help="The stream's state file.")]
RunOpt = Annotated[str, typer.Option(metavar="NAME", help=(
    "The state of this run: landing, http or the NATS run's name (default: the landing folder's)."))]


@app.command("status")
def status_cmd(
    ctx: typer.Context,
    state: StateOpt = None,
    run: RunOpt = "landing",
    fmt: FormatOpt = Format.table,
    out: OutputOpt = None,
) -> None:
    """Per source: records delivered, kept, updates, duplicates, late ones (past the lateness,
    kept in late_records) and evicted ones; the watermark. Works while the stream runs (it
    reads what the run publishes after its commits)."""
    import pyarrow as pa

    from ..stream.publish import outputs_folder, read_status as published
    from ..stream.state import read_status

    path = _state_path(workspace(ctx), state, run)
    folder = outputs_folder(path)
    if (folder / "status.json").is_file():
        status = published(folder)
        rows = status["sources"]
        table = pa.Table.from_pylist(rows) if rows else pa.table({"source": pa.array([], pa.string())})
        how = "running" if status["running"] else "stopped"
        output.emit(table, fmt, out, title=f"Stream state {path} ({how}; {status['batches']:,} commits this run, "
                                            f"published {status['published_at']})")
        return
    if not path.is_file():
        output.fail(f"no stream state at {path}; run `opencem stream run` first or give --state")
    output.emit(read_status(path), fmt, out, title=f"Stream state {path}")


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    cube: Annotated[str, typer.Option(metavar="TABLE", help="The streamed cube, e.g. cube_cell_15min.")],
    last: Annotated[int | None, typer.Option(min=1, metavar="N", help="Only the last N windows.")] = None,
    state: StateOpt = None,
    run: RunOpt = "landing",
    fmt: FormatOpt = Format.table,
    out: OutputOpt = None,
) -> None:
    """The window rows of a streamed cube as the run last published them (while it runs, too)."""
    from ..stream.publish import outputs_folder, read_windows

    path = _state_path(workspace(ctx), state, run)
    rows = read_windows(outputs_folder(path), cube, last)
    output.emit(rows.drop_columns([c for c in ("definition_version",) if c in rows.column_names]), fmt, out,
                title=f"{cube}: {rows.num_rows:,} rows")
