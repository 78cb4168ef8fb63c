"""``opencem stream spark``: the streamed cubes (and per-subscriber counters) on Spark
Structured Streaming (docs/stream-spark.md). Registers itself on the ``stream`` group."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from . import output
from .context import workspace
from .stream import app, seconds

APPS: list = []  # mounted through the stream group's app


@app.command("spark")
def spark_cmd(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help=(
        "Where the window rows, late records, counts and batch-id log go (a folder local to the driver)."))],
    folder: Annotated[Path | None, typer.Option("--from", metavar="DIR", help=(
        "Landing folder to follow (DIR/tables/TABLE_STAMP.parquet, DIR/pm/VENDOR/FILE)."))] = None,
    kafka: Annotated[str | None, typer.Option(metavar="SERVERS", help=(
        "Kafka bootstrap servers instead: topics opencem.RUN.TABLE (needs OPENCEM_SPARK_PACKAGES, see the docs)."))] = None,
    run: Annotated[str, typer.Option(metavar="NAME", help="The run on Kafka (topics opencem.NAME.TABLE).")] = "twin",
    window: Annotated[str, typer.Option(metavar="GRAIN", help="Window length: 1min, 5min, 15min or hour.")] = "15min",
    lateness: Annotated[str, typer.Option(metavar="DURATION", help=(
        "Allowed lateness: a record whose window closed longer ago than this (by its source's watermark) "
        "is set aside as late."))] = "1h",
    cube: Annotated[list[str] | None, typer.Option(metavar="TABLE", help=(
        "Stream this cube table instead of those marked stream: true; repeatable."))] = None,
    kpi: Annotated[list[str] | None, typer.Option(metavar="NAME", hidden=True, help="Only these KPIs.")] = None,
    max_files: Annotated[int, typer.Option(min=1, metavar="N", help=(
        "Files per table per micro-batch at most (Kafka: N x 1,000 messages)."))] = 1000,
    until_finished: Annotated[bool, typer.Option("--until-finished", help=(
        "Stop once the feed says it has ended (Kafka: once caught up) and everything is taken."))] = False,
    checkpoint: Annotated[Path | None, typer.Option(metavar="DIR", help=(
        "Spark's checkpoints (default OUT/checkpoint); keep them with OUT."))] = None,
    count: Annotated[str | None, typer.Option(metavar="CONDITION", help=(
        "Per-subscriber counter: onsets where --at-least records matching this Spark SQL condition on "
        "--count-table fall within --within, e.g. dropped."))] = None,
    count_table: Annotated[str, typer.Option(metavar="TABLE", help="The counter's table.")] = "xdr_voice",
    at_least: Annotated[int, typer.Option(min=1, metavar="N", help="The counter's threshold.")] = 3,
    within: Annotated[str, typer.Option(metavar="DURATION", help="The counter's sliding window.")] = "60min",
    threads: Annotated[int | None, typer.Option(min=1, metavar="N", help="Spark local threads (default all cores).")] = None,
) -> None:
    """Keep each streamed cube's windows up to date on Spark Structured Streaming, with the same
    compiled plans as `opencem evaluate --engine spark`; Ctrl-C stops (a batch cut short runs again)."""
    from ..errors import MissingDependency
    from ..stream.spark_counters import SubscriberCount
    from .indicators import print_issues, workspace_catalog

    if (folder is None) == (kafka is None):
        output.fail("give one source: --from DIR or --kafka SERVERS")
    if folder is not None and not (folder / "tables").is_dir():
        output.fail(f"--from {folder} is not a landing folder (it has no tables/ folder)")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise MissingDependency("opencem stream spark", "spark", "pyspark") from None
    from ..stream.spark import FileSource, KafkaSource, SparkStreamConfig, run_spark_stream

    ws = workspace(ctx)
    tables = ws.tables()
    cat = workspace_catalog(ws)
    print_issues(cat)
    source = FileSource(folder, max_files) if folder is not None else \
        KafkaSource(kafka, f"opencem.{run}", max_offsets=max_files * 1000)
    counter = SubscriberCount(count_table, count, at_least, seconds(within, "--within")) if count else None
    config = SparkStreamConfig(window=window, lateness_s=seconds(lateness, "--lateness"), cubes=cube or None,
                               kpis=kpi or None, until_finished=until_finished, checkpoint=checkpoint,
                               dictionaries=ws.dictionaries_dir, counter=counter)
    stopping = []
    previous = signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    try:
        report = run_spark_stream(source, out, cat, tables, config, lake=ws.lake if ws.exists else None,
                                  threads=threads, stop=lambda: bool(stopping),
                                  progress=lambda r: output.say(f"batch {r.batches}: {r.records:,} records, "
                                                                f"{r.rows_written:,} window rows written", stderr=True))
    finally:
        signal.signal(signal.SIGINT, previous)
    output.say(f"{report.records:,} records in {report.batches:,} micro-batches, {report.seconds:.1f} s; windows of "
               f"{', '.join(report.cubes)} in {output.escape(str(out))}", stderr=True)
    if stopping:
        raise typer.Exit(130)
