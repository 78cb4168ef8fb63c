"""The stream runner: poll a source, take its records into the state, evaluate the windows
that changed with the cubes' compiled plans, commit, then acknowledge.

Order of one batch (the exactly-once effect rests on it)::

    poll -> BEGIN -> records (dedup, lateness) -> changed spans re-evaluated, rows replaced
         -> the batch's tokens -> COMMIT -> ack the source

A crash before COMMIT leaves the state as it was and the source delivers the batch again (it
resumes after the committed tokens); a crash after COMMIT and before the ack makes the source
deliver it again, and the committed tokens say it is done. Since lateness is judged record by
record in arrival order, not per batch, how batches are cut does not change any result.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..indicators.catalog import Catalog
from ..indicators.evaluate import _lookups
from ..lake import Lake
from ..schema import Table
from .sources import Batch, PMFile, Source, StreamError
from .state import COUNTS, StreamState, canonical
from .windows import StreamCube, stream_cubes


@dataclass
class StreamConfig:
    window: str = "15min"
    lateness_s: int = 3600
    cubes: list[str] | None = None  # cube tables; default: the cubes marked stream: true
    kpis: list[str] | None = None  # only these KPIs (tests, benchmarks)
    max_records: int = 1_000_000  # per batch (commit): each cube's plan costs about a second per batch
    poll_s: float = 1.0
    idle_exit_s: float | None = None  # stop after this long without records (None: run until stopped)
    until_finished: bool = False  # stop when the source says the feed has ended and all is taken
    dictionaries: Path | None = None  # the workspace's own counter dictionaries (win over the bundled ones)
    # Records of closed spans are deleted once this much older than their source's watermark
    # (rules counting per subscriber over the last minutes extend it); None keeps every record.
    retain_s: int | None = 3600
    publish_s: float | None = 1.0  # publish changed windows as Parquet at most this often (None: never)

    def settings(self, cubes: list[StreamCube]) -> dict:
        return {"window": self.window, "lateness_s": self.lateness_s,
                "cubes": {c.table: c.version for c in cubes}}


@dataclass
class BatchChanges:
    """What one batch changed, handed to ``on_batch`` inside the batch's open transaction (the
    rules run there, so their state and alerts commit with the windows). ``spans``: per cube
    table, its span length in seconds and the span numbers (epoch seconds // span) evaluated
    again; ``records``: per source, the temporary table (``_id``, ``_t`` epoch ms) of the
    records the batch kept or replaced, whose full rows are in ``rec_<source>``."""

    state: StreamState
    cubes: list[StreamCube]
    spans: dict[str, tuple[int, set[int]]]
    records: dict[str, str]

    @property
    def con(self):
        return self.state.con

    @property
    def watermarks(self) -> dict[str, int]:
        return dict(self.state.watermarks)


@dataclass
class StreamReport:
    state: Path
    batches: int = 0
    records: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    evaluate_s: float = 0.0  # batches: records taken, windows evaluated, committed
    cube_s: dict[str, float] = field(default_factory=dict)  # of which evaluating each cube
    cubes: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # what the source could not take, per table
    evicted: int = 0  # records of closed spans deleted from the state
    kept: int = 0  # records in the state after the last commit
    peak_kept: int = 0


def open_state(path: Path, cat: Catalog, tables: dict[str, Table], config: StreamConfig
               ) -> tuple[StreamState, list[StreamCube]]:
    cubes = stream_cubes(cat, tables, config.window, config.cubes, config.kpis)
    if not cubes:
        raise StreamError("no cube is marked for streaming (stream: true in a cubes: section), and none was "
                          "named with --cube")
    sources = {s for c in cubes for s in c.plan.sources}
    lookups = {name for c in cubes for name in _lookups(c.plan)}
    if "pm_counters" in sources:
        lookups.add("cells")  # PM object DNs are keyed to the cells inventory, as ingest keys them
    state = StreamState(path, tables, sources, lookups)
    kept = state.check_meta(config.settings(cubes))
    if kept is not None:
        state.close()
        raise StreamError(f"the stream state {path} was kept with other settings (window {kept['window']}, lateness "
                          f"{kept['lateness_s']} s, cubes {', '.join(kept['cubes'])}) or other definitions; give "
                          "them again, or start anew with --reset or another --state")
    return state, cubes


def run_stream(state_path: Path, source: Source, cat: Catalog, tables: dict[str, Table],
               config: StreamConfig, lake: Lake | None = None, stop: Callable[[], bool] = lambda: False,
               progress: Callable[[StreamReport], None] | None = None,
               on_batch: Callable[[BatchChanges], None] | None = None) -> StreamReport:
    """Consume ``source`` into the state at ``state_path`` until stopped, idle or finished
    (per ``config``); ``lake`` supplies snapshot lookups the stream did not carry. ``on_batch``
    runs inside each batch's transaction after its windows are evaluated (the rules)."""
    state, cubes = open_state(state_path, cat, tables, config)
    report = StreamReport(state_path, cubes=[c.table for c in cubes])
    lake_lookups = {}
    if lake is not None:
        manifest = lake.manifest()
        lake_lookups = {n: lake.paths(lake.files(n, manifest)) for n in state.lookups}
    state.retain({s: sorted({c.span_s for c in cubes if s in c.plan.sources}) for s in state.sources},
                 config.lateness_s, config.retain_s)
    started = time.perf_counter()
    idle_since = time.monotonic()
    publisher = None
    try:
        if config.publish_s is not None:
            from .publish import Publisher, outputs_folder

            publisher = Publisher(outputs_folder(state_path), config.publish_s)
            publisher.publish(state, report, running=True)  # what a crash left unpublished, and the status
        source.start(state.committed())
        while not stop():
            batch = source.poll(config.max_records, config.poll_s)
            if batch is None:
                if publisher is not None and publisher.dirty:  # idle: publish what the last commits changed
                    publisher.publish(state, report, running=True)
                if config.until_finished and source.finished():
                    break
                if config.idle_exit_s is not None and time.monotonic() - idle_since >= config.idle_exit_s:
                    break
                continue
            idle_since = time.monotonic()
            took = time.perf_counter()
            with state.transaction():
                spans: dict[str, tuple[int, set[int]]] = {}
                report.rows_written += take(state, cubes, batch, cat, config, lake_lookups, report.cube_s, spans)
                if on_batch is not None:
                    on_batch(BatchChanges(state, cubes, spans, {n: f"_changed_{n}" for n in sorted(state.changed)}))
                report.evicted += state.evict()
                if publisher is not None:
                    publisher.mark(state, spans)
                state.consume(batch.tokens)
            source.ack(batch)  # only now: the batch's effects are committed
            report.evaluate_s += time.perf_counter() - took
            report.kept = state.kept()
            report.peak_kept = max(report.peak_kept, report.kept)
            report.batches += 1
            report.records += batch.records
            if publisher is not None and publisher.due():
                publisher.publish(state, report, running=True)
            if progress:
                progress(report)
    finally:
        report.skipped = dict(getattr(source, "skipped", {}))
        report.seconds = time.perf_counter() - started
        source.close()
        try:
            if publisher is not None and sys.exc_info()[0] is None:  # after a failure: on restart
                publisher.publish(state, report, running=False)
        finally:
            state.close()
    return report


def take(state: StreamState, cubes: list[StreamCube], batch: Batch, cat: Catalog, config: StreamConfig,
         lake_lookups: dict, timings: dict[str, float], spans_out: dict | None = None) -> int:
    """One batch into the open transaction: records, then the spans they changed evaluated.
    When the source asks, ``batch.receipts`` gets each delivery's counts."""
    from ..indicators.spec import GRAINS

    import numpy as np
    import pyarrow as pa

    window_s = GRAINS[config.window]
    changed: dict[str, list] = {}
    receipts: list[dict] = [dict.fromkeys(COUNTS, 0) for _ in batch.deliveries]
    by_table: dict[str, list[tuple[int, pa.Table]]] = {}  # (delivery number, records) per table
    pm_files = [(i, d) for i, d in enumerate(batch.deliveries) if isinstance(d, PMFile)]
    for i, d in enumerate(batch.deliveries):  # a table's deliveries in arrival order: lateness is per source
        if not isinstance(d, PMFile) and d.table in state.tables:
            by_table.setdefault(d.table, []).append((i, d.records))
    for name, parts in by_table.items():  # snapshots first: the batch's PM files are keyed to its cells
        if name in state.lookups and state.tables[name].is_snapshot:
            state.snapshot(name, parts[-1][1])
    if pm_files and "pm_counters" in state.sources:
        from .pm import read_pm_files

        reads = read_pm_files(state, [d for _, d in pm_files], state.cells(lake_lookups.get("cells")), config.dictionaries)
        batch.pm_rows = sum(r.duplicates + (r.rows.num_rows if r.rows is not None else 0) for r in reads)
        for (i, _), read in zip(pm_files, reads):
            receipts[i].update(delivered=read.duplicates, duplicates=read.duplicates, rejected=read.rejected)
            if read.error:
                receipts[i]["error"] = read.error
            if read.rows is not None:
                by_table.setdefault("pm_counters", []).append((i, read.rows))
    elif pm_files:  # no streamed cube reads PM counters: the files are counted, not read
        state.ignore("pm_files", len(pm_files))
        for i, _ in pm_files:
            receipts[i]["ignored"] = True
    for name, parts in by_table.items():
        spec = state.tables[name]
        if name in state.lookups and spec.is_snapshot:
            for i, p in parts:
                receipts[i].update(delivered=p.num_rows, snapshot=True)
        elif name in state.sources:
            rows = pa.concat_tables([canonical(p, spec) for _, p in parts])
            sizes = [p.num_rows for _, p in parts] if batch.want_receipts else None
            times, counts = state.add(name, rows, window_s, config.lateness_s, sizes)
            changed.setdefault(name, []).append(times)
            for (i, _), part in zip(parts, counts or []):
                receipts[i].update({k: receipts[i][k] + part[k] for k in COUNTS})
        else:
            state.ignore(name, sum(p.num_rows for _, p in parts))
            for i, p in parts:
                receipts[i].update(delivered=p.num_rows, ignored=True)
    if batch.want_receipts:
        batch.receipts = receipts

    rows = 0
    for cube in cubes:
        times = [t for s in cube.plan.sources for t in changed.get(s, [])]
        if not times:
            continue
        spans = set(np.unique(np.floor_divide(np.concatenate(times), cube.span_s * 1000)).tolist())
        took = time.perf_counter()
        if spans_out is not None:
            spans_out[cube.table] = (cube.span_s, spans)
        rows += state.evaluate(cube, spans, cat, lake_lookups)
        timings[cube.table] = timings.get(cube.table, 0.0) + time.perf_counter() - took
    return rows
