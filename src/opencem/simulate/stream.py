"""Real-time mode: a simulated world delivered as it happens, the way its systems deliver it.

:func:`stream` replays a simulator output (``opencem simulate --out SIM``) in arrival order into
a sink (:mod:`.stream_sinks`: a landing folder, NATS JetStream). Every observable record is
delivered once as written in the batch output, plus what a real feed adds:

- a **delay** after the record exists at its source (a call's record when the call ends, an
  hourly broadband record when its hour ends, a PM file when its period ends): lognormal per
  source (:data:`FEEDS`), capped;
- **stragglers**: :data:`LATE_SHARE` of records (:data:`PM_LATE_SHARE` of PM files) come later
  still (a probe buffer flushed late, a transfer retried);
- **duplicates**: :data:`DUPLICATE_SHARE` of records (:data:`PM_DUPLICATE_SHARE` of PM files)
  are delivered a second time, an exact copy, a little later;
- **updates**: an alarm is first delivered when raised with ``cleared_at`` empty, then again,
  complete, when it clears (a complaint likewise with ``resolved_at``): nothing arrives before it
  could be known. The complete copy supersedes the first.

So a consumer deduplicating by record id (:func:`record_ids`; per id the copy whose closing
column is set, else any) holds exactly the batch output's records. Snapshot tables (cells,
subscribers) and history older than the stream's start (billing) arrive at the start. Records
whose time comes after the stream ends (churn observed weeks later, complaints resolved days
later) are flushed at the end, :data:`DRAIN_MS` after the simulated window. The truth folder is
never read. Delivery is in micro-batches every ``every_s`` of simulated time, paced at
``speedup`` times real time (0: as fast as possible). Draws come from the run's seed: the same
output streams the same way every time.
"""

from __future__ import annotations

import json
import math
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import OpencemError
from ..schema import TABLES
from .config import rng_for

DAY_MS, HOUR_MS = 86_400_000, 3_600_000
FIRST, UPDATE, DUPLICATE = 0, 1, 2  # what a delivery is: first sight, the closing update, a copy
KINDS = ("first", "update", "duplicate")


@dataclass(frozen=True)
class Feed:
    """How one source's records reach the landing side. A record exists at its source at
    its time column plus the ``after`` terms (column, milliseconds per unit: a call's duration)
    and ``after_ms``; it arrives a lognormal delay later (median ``median_s``, shape ``sigma``,
    at most ``cap_s``)."""

    system: str
    median_s: float
    sigma: float
    cap_s: float
    after: tuple[tuple[str, float], ...] = ()
    after_ms: int = 0
    group: str | None = None  # records that travel together: one drive test's log
    closes: str | None = None  # set when the record closes: delivered first without it


FEEDS: dict[str, Feed] = {
    "xdr_voice": Feed("IMS/SIP probe, when the call ends", 15, 0.8, 120,
                      after=(("setup_time_ms", 1), ("duration_s", 1000))),
    "xdr_data": Feed("user-plane probe, when the session ends", 15, 0.8, 120, after=(("duration_ms", 1),)),
    "xdr_video": Feed("user-plane probe, when playback ends", 15, 0.8, 120,
                      after=(("initial_buffering_ms", 1), ("stall_time_ms", 1), ("play_duration_s", 1000))),
    "iot_events": Feed("IoT platform", 5, 0.8, 60),
    "broadband_sessions": Feed("CPE/OLT hourly record, when its hour ends", 120, 0.6, 900, after_ms=HOUR_MS),
    "drive_tests": Feed("drive-test log, uploaded when the test ends", 900, 0.5, 3600, group="test_id"),
    "alarms": Feed("OSS northbound interface: raise, then clear", 3, 0.8, 60, closes="cleared_at"),
    "complaints": Feed("CRM: opened, then resolved", 120, 0.7, 900, closes="resolved_at"),
    "interactions": Feed("contact centre, when the contact ends", 120, 0.7, 900,
                         after=(("wait_time_s", 1000), ("handle_time_s", 1000))),
    "surveys": Feed("survey platform", 600, 0.8, 3600),
    "social_posts": Feed("social listening API", 60, 0.8, 600),
    "subscriber_events": Feed("BSS account change log", 300, 0.6, 1800),
    "churn_events": Feed("BSS order management", 1800, 0.6, 3 * 3600),
    "billing": Feed("BSS billing run", 3600, 0.5, 6 * 3600),
}
DEFAULT_FEED = Feed("a source without a delay model of its own", 60, 0.8, 600)
PM_FEED = Feed("OSS file collection, after the granularity period ends", 300, 0.4, 900)
LATE_SHARE, LATE_S = 0.01, (300, 1800)  # stragglers: 5-30 min more
PM_LATE_SHARE, PM_LATE_S = 0.02, (900, 3600)  # a PM file collected on a later attempt
DUPLICATE_SHARE, PM_DUPLICATE_SHARE = 0.005, 0.01
RESEND_S = (30, 600)  # a copy follows the first delivery by 30 s-10 min
DRAIN_MS = 2 * HOUR_MS  # the stream goes on this long after the simulated window
DELAY_BINS_S = 4 * 3600  # delay histogram: 1 s bins, the last one open


class StreamError(OpencemError):
    """A stream that cannot start or go on: a folder, a server, a simulator output."""


class Sink(Protocol):
    """Where deliveries go (:mod:`.stream_sinks`). ``records`` and ``file`` are called for each
    source with something due in a micro-batch, then ``tick`` once; ``close`` at the end."""

    def start(self, manifest: dict) -> None: ...
    def records(self, source: str, tick_ms: int, rows: pa.Table, kinds: np.ndarray) -> None: ...
    def file(self, vendor: str, name: str, data: bytes, tick_ms: int, kind: int) -> None: ...
    def tick(self, tick_ms: int) -> None: ...
    def close(self, manifest: dict | None, complete: bool) -> None: ...  # None: never started


@dataclass
class _Due:
    """Deliveries of one source not sent yet, or one micro-batch of them."""

    rows: pa.Table | list  # records, or (vendor, name, bytes) for PM files
    arrival_ms: np.ndarray
    event_ms: np.ndarray
    ready_ms: np.ndarray  # when the record existed at its source (for a copy: its first delivery)
    kind: np.ndarray
    clamped: np.ndarray  # 1: arrived before the start (backlog), 2: after the end (flushed)

    def take(self, index: np.ndarray) -> _Due:
        rows = self.rows.take(pa.array(index, pa.int64())) if isinstance(self.rows, pa.Table) \
            else [self.rows[i] for i in index]
        return _Due(rows, *(a[index] for a in (self.arrival_ms, self.event_ms, self.ready_ms, self.kind,
                                               self.clamped)))

    def slice(self, start: int, stop: int) -> _Due:
        rows = self.rows.slice(start, stop - start) if isinstance(self.rows, pa.Table) else self.rows[start:stop]
        return _Due(rows, *(a[start:stop] for a in (self.arrival_ms, self.event_ms, self.ready_ms, self.kind,
                                                    self.clamped)))

    @staticmethod
    def concat(parts: list[_Due]) -> _Due:
        rows = pa.concat_tables([p.rows for p in parts]) if isinstance(parts[0].rows, pa.Table) \
            else [r for p in parts for r in p.rows]
        return _Due(rows, *(np.concatenate([getattr(p, a) for p in parts])
                            for a in ("arrival_ms", "event_ms", "ready_ms", "kind", "clamped")))


@dataclass
class SourceStats:
    """What one source delivered. ``out_of_order``: first deliveries arriving after a record
    of the same source with a later event time had already been delivered; ``max_behind_ms``:
    the most such a record's event time lay behind that source's latest one."""

    records: int = 0
    updates: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    max_behind_ms: int = 0
    backlog: int = 0
    flushed: int = 0
    watermark_ms: int = -(2 ** 62)
    delay_hist: np.ndarray = field(default_factory=lambda: np.zeros(DELAY_BINS_S + 1, np.int64))
    max_delay_ms: int = 0

    def add(self, due: _Due) -> None:
        first = due.kind == FIRST
        self.records += int(first.sum())
        self.updates += int((due.kind == UPDATE).sum())
        self.duplicates += int((due.kind == DUPLICATE).sum())
        self.backlog += int(((due.clamped == 1) & first).sum())
        self.flushed += int(((due.clamped == 2) & (due.kind != DUPLICATE)).sum())
        if first.any():
            event = due.event_ms[first]
            behind = self.watermark_ms - event
            self.out_of_order += int((behind > 0).sum())
            self.max_behind_ms = max(self.max_behind_ms, int(behind.max()))
            self.watermark_ms = max(self.watermark_ms, int(event.max()))
        timed = (due.kind != DUPLICATE) & (due.clamped == 0)
        if timed.any():
            delay = due.arrival_ms[timed] - due.ready_ms[timed]
            self.max_delay_ms = max(self.max_delay_ms, int(delay.max()))
            self.delay_hist += np.bincount(np.minimum(delay // 1000, DELAY_BINS_S), minlength=DELAY_BINS_S + 1)

    def delay_quantile_s(self, q: float) -> float | None:
        total = self.delay_hist.sum()
        if total == 0:
            return None
        return float(np.searchsorted(np.cumsum(self.delay_hist), q * total, side="left"))


@dataclass
class StreamResult:
    """What a stream delivered, per source (tables by name, PM files as ``pm/<vendor>``)."""

    sources: dict[str, SourceStats] = field(default_factory=dict)
    started_ms: int = 0  # the simulated time the stream started at and reached
    reached_ms: int = 0
    end_ms: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    skipped: list[str] = field(default_factory=list)  # tables under tables/ that are not canonical

    @property
    def deliveries(self) -> int:
        return sum(s.records + s.updates + s.duplicates for n, s in self.sources.items() if not n.startswith("pm/"))

    def totals(self) -> dict[str, int]:
        tables = [s for n, s in self.sources.items() if not n.startswith("pm/")]
        return {k: sum(getattr(s, k) for s in tables) for k in ("records", "updates", "duplicates", "out_of_order")}

    def summary(self) -> list[dict]:
        """One row per source: counts, shares of duplicates and out-of-order records (%), delays
        in seconds (p50 and p99 to the second)."""
        rows = []
        for name, s in sorted(self.sources.items()):
            rows.append({
                "source": name, "records": s.records, "updates": s.updates, "duplicates": s.duplicates,
                "duplicate_pct": round(100 * s.duplicates / s.records, 2) if s.records else 0.0,
                "out_of_order_pct": round(100 * s.out_of_order / s.records, 2) if s.records else 0.0,
                "max_behind_s": round(s.max_behind_ms / 1000, 1),
                "delay_p50_s": s.delay_quantile_s(0.5), "delay_p99_s": s.delay_quantile_s(0.99),
                "delay_max_s": round(s.max_delay_ms / 1000, 1), "backlog": s.backlog, "flushed": s.flushed,
            })
        return rows


Progress = Callable[[int, int, int, StreamResult], None]  # (tick, ticks, simulated ms, so far)


def stream(sim_dir: Path, sink: Sink, speedup: float = 60.0, every_s: float = 60.0,
           progress: Progress | None = None, sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic) -> StreamResult:
    """Deliver the observable records of the simulator output ``sim_dir`` to ``sink`` in
    arrival order, one micro-batch per ``every_s`` seconds of simulated time, at ``speedup``
    times real time (0: no waiting). Ctrl-C stops after the micro-batch being written; the
    result then says ``interrupted``."""
    if every_s <= 0 or speedup < 0 or not math.isfinite(speedup):
        raise StreamError("the micro-batch interval must be positive and the speed-up 0 or more")
    try:
        layout = _Layout.of(Path(sim_dir))
    except BaseException:
        sink.close(None, complete=False)  # nothing was started
        raise
    schedule = _Schedule(layout.seed, layout.start_ms, layout.end_ms, int(every_s * 1000))
    result = StreamResult(schedule.stats, layout.start_ms, layout.start_ms, layout.end_ms, skipped=layout.skipped)
    # what an operator's feed would say of itself: who wrote it and for when, never the
    # simulation's config (its injections) or the truth's row counts
    observable = {"generator": layout.manifest.get("generator"),
                  "config": {"start_date": layout.manifest.get("config", {}).get("start_date")}}
    manifest = {**observable, "stream": {
        "speedup": speedup, "every_s": every_s,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "simulated_start": _iso(layout.start_ms), "simulated_end": _iso(layout.end_ms)}}
    sink.start(manifest)
    n_ticks = schedule.tick_of(layout.end_ms) + 1
    wall0 = clock()
    interrupt = _Interrupt()
    try:
        for day, horizon in enumerate(layout.horizons):
            for source, path in layout.whole if day == 0 else ():
                schedule.add_records(source, pq.read_table(path), "all")
            for source, path in layout.daily[day]:
                schedule.add_records(source, pq.read_table(path), path.stem)
            for vendor, path in layout.pm[day]:
                for name, data, begin_ms, end_ms in _pm_pieces(path):
                    schedule.add_file(vendor, name, data, begin_ms, end_ms)
            for tick_ms, batches in schedule.due(horizon):
                while speedup > 0 and (wait := wall0 + (tick_ms - layout.start_ms) / 1000 / speedup - clock()) > 0:
                    sleep(min(wait, 0.25))  # in steps, so Ctrl-C is seen soon
                    interrupt.check()
                for source, due in batches:
                    if isinstance(due.rows, pa.Table):
                        sink.records(source, tick_ms, due.rows, due.kind)
                    else:
                        for (vendor, name, data), kind in zip(due.rows, due.kind):
                            sink.file(vendor, name, data, tick_ms, int(kind))
                    schedule.stats.setdefault(source, SourceStats()).add(due)
                sink.tick(tick_ms)
                result.reached_ms = tick_ms
                if progress:
                    progress(schedule.tick_of(tick_ms), n_ticks, tick_ms, result)
                interrupt.check()
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        interrupt.restore()
        result.elapsed_s = clock() - wall0
        manifest["stream"].update(reached=_iso(result.reached_ms), interrupted=result.interrupted,
                                  elapsed_s=round(result.elapsed_s, 3), delivered=result.summary())
        sink.close(manifest, complete=not result.interrupted)
    return result


class _Interrupt:
    """Ctrl-C (SIGINT) while streaming: noted, and acted on between micro-batches, so no file
    or round of messages is left half done; a second Ctrl-C interrupts at once. Only the main
    thread receives signals: elsewhere this does nothing."""

    def __init__(self):
        self.requested = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._note)

    def _note(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


class _Schedule:
    """Arrival times drawn per record, kept until their micro-batch is due."""

    def __init__(self, seed: int, start_ms: int, end_ms: int, every_ms: int):
        self.seed, self.start_ms, self.end_ms, self.every_ms = seed, start_ms, end_ms, every_ms
        self.pending: dict[str, list[_Due]] = {}
        self.stats: dict[str, SourceStats] = {}
        self.last_tick_ms = start_ms - every_ms

    def tick_of(self, ms: int | np.ndarray):
        """Micro-batch index: batch k delivers what arrived in (start + (k-1) every, start + k every]."""
        return -((self.start_ms - np.asarray(ms)) // self.every_ms)  # ceil division

    def add_records(self, source: str, table: pa.Table, label: str) -> None:
        spec = TABLES[source]
        feed = FEEDS.get(source, DEFAULT_FEED)
        rng = rng_for(self.seed, f"stream-{source}-{label}")
        n = table.num_rows
        if spec.is_snapshot:  # the inventory as of the start, all at once
            at = np.full(n, self.start_ms, np.int64)
            self._keep(source, _Due(table, at, at, at, np.zeros(n, np.int8), np.zeros(n, np.int8)))
            return
        event = _ms(table[spec.time_column])
        ready = event + sum((np.nan_to_num(pc.cast(table[c], pa.float64()).to_numpy(zero_copy_only=False)) * per)
                            .astype(np.int64) for c, per in feed.after if c in table.column_names) + feed.after_ms
        unit, n_units = _units(table, feed.group)
        if feed.group:  # the log is uploaded once its last sample is taken
            last = np.full(n_units, np.iinfo(np.int64).min)
            np.maximum.at(last, unit, ready)
            ready = last[unit]
        arrival = ready + _delays(rng, feed, n_units, LATE_SHARE, LATE_S)[unit]
        copied = (rng.random(n_units) < DUPLICATE_SHARE)[unit]
        resend = (rng.uniform(*RESEND_S, n_units) * 1000).astype(np.int64)[unit]
        parts = []
        first_rows = table
        if feed.closes:
            close = table[feed.closes]
            closed = pc.is_valid(close).to_numpy(zero_copy_only=False)
            field_ = table.schema.field(feed.closes)
            first_rows = table.set_column(table.schema.get_field_index(feed.closes), field_,
                                          pc.if_else(pa.array(closed), pa.nulls(n, field_.type), close))
            at = np.flatnonzero(closed)
            close_ms = _ms(close.take(pa.array(at, pa.int64())))
            update_arrival = close_ms + _delays(rng, feed, len(at), LATE_SHARE, LATE_S)
            parts.append(_Due(table.take(pa.array(at, pa.int64())), update_arrival, event[at], close_ms,
                              np.full(len(at), UPDATE, np.int8), np.zeros(len(at), np.int8)))
        parts.insert(0, _Due(first_rows, arrival, event, ready, np.full(n, FIRST, np.int8), np.zeros(n, np.int8)))
        at = np.flatnonzero(copied)
        parts.append(_Due(first_rows.take(pa.array(at, pa.int64())), arrival[at] + resend[at], event[at],
                          arrival[at], np.full(len(at), DUPLICATE, np.int8), np.zeros(len(at), np.int8)))
        self._keep(source, _Due.concat(parts))

    def add_file(self, vendor: str, name: str, data: bytes, begin_ms: int, end_ms: int) -> None:
        """A PM file: it exists when its period ends; it may be collected late or twice."""
        rng = rng_for(self.seed, f"stream-pm-{vendor}-{name}")
        arrival = end_ms + int(_delays(rng, PM_FEED, 1, PM_LATE_SHARE, PM_LATE_S)[0])
        kinds = [FIRST] + ([DUPLICATE] if rng.random() < PM_DUPLICATE_SHARE else [])
        resend = int(rng.uniform(*RESEND_S) * 1000)
        arrivals = [arrival, arrival + resend][:len(kinds)]
        self._keep(f"pm/{vendor}", _Due([(vendor, name, data)] * len(kinds), np.array(arrivals, np.int64),
                                        np.full(len(kinds), begin_ms), np.array([end_ms, arrival][:len(kinds)]),
                                        np.array(kinds, np.int8), np.zeros(len(kinds), np.int8)))

    def _keep(self, source: str, due: _Due) -> None:
        due.clamped[due.arrival_ms < self.start_ms] = 1
        due.clamped[due.arrival_ms > self.end_ms] = 2
        due.arrival_ms = np.clip(due.arrival_ms, self.start_ms, self.end_ms)
        self.pending.setdefault(source, []).append(due)

    def due(self, horizon_ms: float) -> list[tuple[int, list[tuple[str, _Due]]]]:
        """The micro-batches delivered before ``horizon_ms`` (nothing later can still arrive in
        them), in time order; within one, each source's records in event-time order."""
        by_tick: dict[int, list[tuple[str, _Due]]] = {}
        for source in sorted(self.pending):
            if not self.pending[source]:  # all of this source went out with an earlier batch
                continue
            waiting = _Due.concat(self.pending[source])
            # never into a batch already sent: a file name is written once
            tick = np.maximum(self.start_ms + self.tick_of(waiting.arrival_ms) * self.every_ms,
                              self.last_tick_ms + self.every_ms)
            now = tick < horizon_ms
            later = np.flatnonzero(~now)
            self.pending[source] = [waiting.take(later)] if len(later) else []
            index = np.flatnonzero(now)
            if not len(index):
                continue
            index = index[np.lexsort((waiting.event_ms[index], tick[index]))]
            ready = waiting.take(index)
            ticks = tick[index]
            starts = np.flatnonzero(np.r_[True, ticks[1:] != ticks[:-1]])
            for a, b in zip(starts, np.r_[starts[1:], len(ticks)]):
                by_tick.setdefault(int(ticks[a]), []).append((source, ready.slice(a, b)))
        out = sorted(by_tick.items())
        if out:
            self.last_tick_ms = out[-1][0]
        return out


@dataclass
class _Layout:
    """What a simulator output holds, in the order a stream reads it."""

    manifest: dict
    seed: int
    start_ms: int
    end_ms: int
    horizons: list[float]  # per day: before this, nothing of a later day can arrive
    whole: list[tuple[str, Path]]  # tables/<table>.parquet
    daily: list[list[tuple[str, Path]]]  # per day: tables/<table>/<day>[-part<k>].parquet
    pm: list[list[tuple[str, Path]]]  # per day: (vendor, file)
    skipped: list[str]

    @staticmethod
    def of(sim_dir: Path) -> _Layout:
        try:
            manifest = json.loads((sim_dir / "manifest.json").read_text())
            config = manifest["config"]
            seed, first_day, days = int(config["seed"]), date.fromisoformat(config["start_date"]), int(config["days"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise StreamError(f"{sim_dir} is not a finished simulator output (its manifest.json cannot be read: "
                              f"{type(err).__name__}); run `opencem simulate --out {sim_dir}` first") from None
        tables = sim_dir / "tables"
        skipped = sorted({p.name.split(".")[0] for p in tables.iterdir()} - set(TABLES))
        whole = [(p.stem, p) for p in sorted(tables.glob("*.parquet")) if p.stem in TABLES]
        labels = sorted({p.stem[:10] for d in tables.iterdir() if d.is_dir() and d.name in TABLES
                         for p in d.glob("*.parquet")})
        daily = [[(p.parent.name, p) for p in sorted(tables.glob(f"*/{label}*.parquet")) if p.parent.name in TABLES]
                 for label in labels] or [[]]
        starts = [min((_first_event(source, path) for source, path in files), default=None) for files in daily]
        midnight = int(datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC).timestamp() * 1000)
        start_ms = min([midnight] + [s // HOUR_MS * HOUR_MS for s in starts[:1] if s is not None])
        end_ms = max([midnight + days * DAY_MS] + [s + DAY_MS for s in starts[-1:] if s is not None]) + DRAIN_MS
        horizons = [float(s) if s is not None else math.inf for s in starts[1:]] + [math.inf]
        pm: list[list[tuple[str, Path]]] = [[] for _ in daily]
        day_starts = np.array([s if s is not None else start_ms for s in starts])
        for path in sorted((sim_dir / "pm").glob("*/*")):
            if path.is_file() and not path.name.startswith("."):
                day = max(int(np.searchsorted(day_starts, _pm_begin_ms(path), side="right")) - 1, 0)
                pm[day].append((path.parent.name, path))
        return _Layout(manifest, seed, start_ms, end_ms, horizons, whole, daily, pm, skipped)


def _first_event(source: str, path: Path) -> int | None:
    """The earliest event time in a per-day file, from its Parquet statistics."""
    column = TABLES[source].time_column
    if column is None:
        return None
    meta = pq.ParquetFile(path).metadata
    index = meta.schema.to_arrow_schema().get_field_index(column)
    mins = [meta.row_group(i).column(index).statistics for i in range(meta.num_row_groups)]
    values = [s.min for s in mins if s is not None and s.has_min_max]
    if not values:
        return None
    return min(int(pa.scalar(v).cast(pa.timestamp("ms", tz="UTC")).value) if isinstance(v, datetime) else int(v)
               for v in values)


_XML_BEGIN = re.compile(rb'<measCollec\s+beginTime="([^"]+)"')
_XML_END = re.compile(rb'<measCollec\s+endTime="([^"]+)"')


def _pm_begin_ms(path: Path) -> int:
    with open(path, "rb") as f:
        head = f.read(4096)
    if path.suffix.lower() == ".xml":
        found = _XML_BEGIN.search(head)
        if found:
            return _parse_ms(found[1].decode())
    elif path.suffix.lower() == ".csv":
        lines = head.split(b"\n")
        if len(lines) > 2:
            return _parse_ms(lines[1].split(b",")[0].decode())
    raise StreamError(f"{path}: cannot tell which period this PM file measures (an XML measCollec "
                      "beginTime, or a CSV whose first field is the start time)")


def _pm_pieces(path: Path) -> list[tuple[str, bytes, int, int]]:
    """(name, content, begin ms, end ms) of the files a PM export is delivered as: an XML
    file as it is; a CSV export per granularity period (its header, then the period's lines
    exactly as written), as an OSS hands a period over when it is complete."""
    data = path.read_bytes()
    if path.suffix.lower() == ".xml":
        begin, end = _XML_BEGIN.search(data[:4096]), _XML_END.search(data[-1024:])
        if not begin or not end:
            raise StreamError(f"{path}: no measCollec beginTime and endTime, so its period is unknown")
        return [(path.name, data, _parse_ms(begin[1].decode()), _parse_ms(end[1].decode()))]
    header_end = data.index(b"\n") + 1
    header, pieces, pos = data[:header_end], [], header_end
    while pos < len(data):
        stamp = data[pos:data.index(b",", pos)]
        last = data.rfind(b"\n" + stamp + b",", pos - 1) + 1
        stop = data.find(b"\n", last)
        stop = len(data) if stop < 0 else stop + 1
        body = data[pos:stop]
        if body.count(b"\n") != (b"\n" + body).count(b"\n" + stamp + b","):
            raise StreamError(f"{path}: lines are not in time order, so it cannot be split per period")
        minutes = int(body.split(b",", 2)[1])
        begin = _parse_ms(stamp.decode())
        stamp_name = datetime.fromtimestamp(begin / 1000, UTC).strftime("%Y%m%dT%H%M")
        pieces.append((f"{path.stem.rsplit('_', 1)[0]}_{stamp_name}{path.suffix}", header + body, begin,
                       begin + minutes * 60_000))
        pos = stop
    return pieces


def _parse_ms(text: str) -> int:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _ms(column) -> np.ndarray:
    return pc.cast(column, pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)


def _units(table: pa.Table, group: str | None) -> tuple[np.ndarray, int]:
    """Which delivery unit each record belongs to: itself, or its group (a drive test)."""
    if group is None:
        return np.arange(table.num_rows), table.num_rows
    codes = pc.dictionary_encode(table[group].combine_chunks())
    return codes.indices.to_numpy(zero_copy_only=False).astype(np.int64), len(codes.dictionary)


def _delays(rng: np.random.Generator, feed: Feed, n: int, late_share: float, late_s: tuple[int, int]) -> np.ndarray:
    """Transport delays in ms: the feed's capped lognormal, plus a straggler's extra wait."""
    delay = np.minimum(rng.lognormal(math.log(feed.median_s * 1000), feed.sigma, n), feed.cap_s * 1000)
    late = rng.random(n) < late_share
    extra = rng.uniform(late_s[0] * 1000, late_s[1] * 1000, n)
    return (delay + np.where(late, extra, 0)).astype(np.int64)


def record_ids(source: str, rows: pa.Table) -> pa.Array:
    """Stable record ids, ``<table>:<key>|<key>`` (times as ISO 8601 UTC): what a consumer
    deduplicates by. The same record delivered twice has the same id."""
    keys = [iso_strings(rows[k]) if pa.types.is_timestamp(rows.schema.field(k).type)
            else pc.cast(rows[k], pa.string()) for k in TABLES[source].keys]
    return pc.binary_join_element_wise(pa.scalar(f"{source}:"),
                                       pc.binary_join_element_wise(*keys, "|") if len(keys) > 1 else keys[0], "")


def iso_strings(column) -> pa.ChunkedArray:
    """Timestamps as ISO 8601 UTC text with milliseconds: 2026-11-02T08:15:00.000Z."""
    return pc.strftime(pc.cast(column, pa.timestamp("ms", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
