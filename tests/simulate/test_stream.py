"""Real-time mode (issue 11, item 8): ``opencem simulate --stream`` delivers the batch world
as it happens. Same seed, same records (deduplicated by record id, ignoring arrival order);
arrivals within the documented delays, with out-of-order records, stragglers and exact
duplicates at their documented shares; no truth; no half-written file; ingest reads the
landing folder; NATS JetStream subjects carry the same records."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest

from opencem.ingest.load import discover, ingest
from opencem.lake import Lake
from opencem.schema import TABLES
from opencem.schema.truth import TRUTH_MARKER, TRUTH_TABLES
from opencem.simulate import stream_sinks
from opencem.simulate.config import SimConfig
from opencem.simulate.run import simulate
from opencem.simulate.stream import (DEFAULT_FEED, DUPLICATE_SHARE, FEEDS, LATE_S, LATE_SHARE, PM_FEED, PM_LATE_S, RESEND_S,
                                     StreamError, record_ids, stream)
from opencem.simulate.stream_sinks import LandingSink, NatsSink

from ..cli.conftest import cli
from ..conftest import require_service

SIM = SimConfig(subscribers=1500, days=1, seed=5)
EVERY_S = 900
SESSION_SOURCES = ("xdr_voice", "xdr_data", "xdr_video")


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stream") / "batch"
    simulate(SIM, out)
    return out


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):
    """A second simulation of the same seed, streamed into a landing folder as fast as possible."""
    root = tmp_path_factory.mktemp("streamed")
    simulate(SIM, root / "sim")
    result = stream(root / "sim", LandingSink(root / "landing"), speedup=0, every_s=EVERY_S)
    return root / "landing", result


def landing_tables(landing: Path) -> dict[str, list[tuple[int, pa.Table]]]:
    """Per table, its micro-batch files as (delivery ms, rows), in delivery order."""
    out: dict[str, list[tuple[int, pa.Table]]] = {}
    for path in sorted((landing / "tables").glob("*.parquet")):
        table, stamp = path.stem.rsplit("_", 1)
        at = int(datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp() * 1000)
        out.setdefault(table, []).append((at, pq.read_table(path)))
    return {t: sorted(files, key=lambda f: f[0]) for t, files in out.items()}


def batch_table(batch: Path, name: str) -> pa.Table:
    single = batch / "tables" / f"{name}.parquet"
    return pq.read_table(single) if single.exists() else pa.concat_tables(
        pq.read_table(p) for p in sorted((batch / "tables" / name).glob("*.parquet")))


def dedup(name: str, rows: pa.Table) -> pa.Table:
    """One copy per record id; of an alarm or complaint, the one whose closing column is set."""
    closes = FEEDS.get(name, DEFAULT_FEED).closes
    ids = record_ids(name, rows).to_numpy(zero_copy_only=False)
    open_ = pc.is_null(rows[closes]).to_numpy(zero_copy_only=False) if closes else np.zeros(len(ids), bool)
    order = np.lexsort((open_, ids))
    _, first = np.unique(ids[order], return_index=True)
    return rows.take(pa.array(order[first]))


def by_key(name: str, rows: pa.Table) -> pa.Table:
    return rows.sort_by([(k, "ascending") for k in TABLES[name].keys])


def test_same_seed_streams_exactly_the_batch_records(batch, streamed):
    landing, result = streamed
    got = landing_tables(landing)
    names = {p.name.split(".")[0] for p in (batch / "tables").iterdir()}
    assert set(got) == names
    for name in names:
        expected = batch_table(batch, name)
        rows = pa.concat_tables(t for _, t in got[name])
        assert rows.schema == expected.schema, name
        records = dedup(name, rows)
        assert records.num_rows == expected.num_rows == result.sources[name].records, name
        assert by_key(name, records).equals(by_key(name, expected)), name
        stats = result.sources[name]
        assert rows.num_rows == stats.records + stats.updates + stats.duplicates, name


def test_pm_files_arrive_whole_as_the_batch_wrote_them(batch, streamed):
    landing, result = streamed
    alpha = {p.name: p.read_bytes() for p in (landing / "pm" / "alpha").iterdir()}
    sent = {n: b for n, b in alpha.items() if "_resent" not in n}
    assert sent == {p.name: p.read_bytes() for p in (batch / "pm" / "alpha").iterdir()}
    for name, data in alpha.items():
        if "_resent" in name:
            assert data == alpha[name.replace("_resent", "")]
    # beta's daily exports (LTE cells, NR cells) arrive per period: the export's header, then
    # the period's lines as written
    exports = sorted((batch / "pm" / "beta").glob("*.csv"))
    pieces = {p.name: p.read_bytes().splitlines() for p in (landing / "pm" / "beta").iterdir()}
    assert {e.stem.rsplit("_", 1)[0] for e in exports} == {"beta_pm", "beta_nr_pm"}
    for export in exports:
        header, *lines = export.read_bytes().splitlines()
        prefix = export.stem.rsplit("_", 1)[0] + "_"
        mine = {n: piece for n, piece in pieces.items() if n.startswith(prefix) and n[len(prefix)].isdigit()}
        assert mine and all(piece[0] == header for piece in mine.values())
        first = [line for name, piece in sorted(mine.items()) if "_resent" not in name for line in piece[1:]]
        assert sorted(first) == sorted(lines) and len(first) == len(lines)
        assert {line[:19] for name, p in mine.items() for line in p[1:2]} == {line[:19] for line in lines}
    n_files = len(sent) + sum("_resent" not in n for n in pieces)
    assert result.sources["pm/alpha"].records + result.sources["pm/beta"].records == n_files


def test_duplicates_are_exact_copies_at_the_documented_share(streamed):
    landing, result = streamed
    records = copies = 0
    for name, files in landing_tables(landing).items():
        rows = pa.concat_tables(t for _, t in files)
        if TABLES[name].is_snapshot:
            assert rows.num_rows == pc.count_distinct(record_ids(name, rows)).as_py(), name
            continue
        closes = FEEDS.get(name, DEFAULT_FEED).closes
        if closes:  # the closing update is not a copy: compare the copies of the first version only
            rows = rows.filter(pc.is_null(rows[closes]))
        ids = record_ids(name, rows).to_numpy(zero_copy_only=False)
        unique, first, count = np.unique(ids, return_index=True, return_counts=True)
        records, copies = records + len(unique), copies + int((count - 1).sum())
        for i in np.flatnonzero(count > 1)[:50]:
            same = rows.filter(pc.equal(record_ids(name, rows), unique[i]))
            assert all(r == same.slice(0, 1).to_pylist()[0] for r in same.to_pylist()), (name, unique[i])
    assert copies == sum(s.duplicates for n, s in result.sources.items() if not n.startswith("pm/"))
    assert 0.4 * DUPLICATE_SHARE < copies / records < 1.8 * DUPLICATE_SHARE


def ready_ms(name: str, rows: pa.Table) -> np.ndarray:
    """When each record existed at its source, by the documented rule (time column plus the
    feed's terms), recomputed here from the delivered columns."""
    feed = FEEDS.get(name, DEFAULT_FEED)
    ms = pc.cast(rows[TABLES[name].time_column], pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)
    for column, per in feed.after:
        ms = ms + (np.nan_to_num(pc.cast(rows[column], pa.float64()).to_numpy(zero_copy_only=False)) * per).astype(np.int64)
    return ms + feed.after_ms


def test_arrivals_keep_to_the_documented_delays_and_out_of_order_share(streamed):
    landing, result = streamed
    end_ms = result.end_ms
    stragglers = sessions = 0
    for name, files in landing_tables(landing).items():
        spec = TABLES[name]
        if spec.is_snapshot:
            assert [at for at, _ in files] == [result.started_ms], name  # the inventory comes first
            continue
        feed = FEEDS.get(name, DEFAULT_FEED)
        seen: set[str] = set()
        watermark, out_of_order, behind_max, first_total = -(2 ** 62), 0, 0, 0
        for at, rows in files:
            if feed.closes:
                rows = rows.filter(pc.is_null(rows[feed.closes]))
            ids = record_ids(name, rows).to_numpy(zero_copy_only=False)
            new = np.zeros(len(ids), bool)  # first sight: not in an earlier file, nor earlier in this one
            new[np.unique(ids, return_index=True)[1]] = True
            new &= np.array([i not in seen for i in ids], bool)
            seen.update(ids)
            rows = rows.filter(pa.array(new))
            event = pc.cast(rows[spec.time_column], pa.int64()).to_numpy(zero_copy_only=False)
            assert (np.diff(event) >= 0).all(), (name, at)  # a micro-batch is in event-time order
            behind = watermark - event
            out_of_order += int((behind > 0).sum())
            behind_max = max([behind_max, *behind.tolist()])
            watermark = max([watermark, *event.tolist()])
            first_total += len(event)
            if feed.group:
                continue
            ready = ready_ms(name, rows)
            delay = (at - ready)[ready >= result.started_ms]  # history older than the start is backlog
            on_time = at < end_ms  # what the stream's end flushed came early, not late
            assert (delay[on_time] >= 0).all(), name
            assert (delay <= (feed.cap_s + LATE_S[1] + EVERY_S) * 1000).all(), name
            if name in SESSION_SOURCES:
                sessions += len(delay)
                stragglers += int((delay > (feed.cap_s + EVERY_S) * 1000).sum())
        stats = result.sources[name]
        # measured from the files alone, the same as the stream reported
        assert (out_of_order, behind_max if out_of_order else 0) == (stats.out_of_order, stats.max_behind_ms), name
        assert first_total == stats.records
    # the documented straggler share, with room for a micro-batch's rounding
    assert 0.3 * LATE_SHARE < stragglers / sessions < 1.5 * LATE_SHARE
    # session records arrive when they end, so long sessions come after later-started short ones
    for name in SESSION_SOURCES:
        assert result.sources[name].out_of_order > 0
    voice = result.sources["xdr_voice"]
    assert voice.max_behind_ms <= (2100 + FEEDS["xdr_voice"].cap_s + LATE_S[1] + EVERY_S) * 1000
    pm = result.sources["pm/alpha"]
    assert pm.max_delay_ms <= (PM_FEED.cap_s + PM_LATE_S[1]) * 1000


def test_the_stream_holds_no_truth(batch, streamed):
    landing, _ = streamed
    truth_only = {f.name for t in TRUTH_TABLES.values() for f in t.columns} - {
        f.name for t in TABLES.values() for f in t.columns}
    assert {"fault_id", "domain", "cause", "precedence"} <= truth_only
    for path in landing.rglob("*"):
        assert path.name != TRUTH_MARKER and "truth" not in path.relative_to(landing).parts, path
        if path.suffix == ".parquet":
            table = path.stem.rsplit("_", 1)[0]
            assert table in TABLES and table not in TRUTH_TABLES
            names = set(pq.read_schema(path).names)
            assert names <= set(TABLES[table].observed_schema.names) and not names & truth_only, path
    manifest = json.loads((landing / "manifest.json").read_text())
    text = json.dumps(manifest)
    # not the simulation's config (its injections, fault rates) nor the truth's row counts
    assert manifest["complete"] is True and not any(w in text for w in ("truth", "injection", "fault", "seed"))
    assert set(manifest) == {"generator", "config", "stream", "complete"} and set(manifest["config"]) == {"start_date"}


def test_a_stream_of_several_days_runs_to_the_end(tmp_path):
    # a source whose records all went out on an earlier day left nothing pending (a crash once)
    simulate(SimConfig(subscribers=500, days=3, seed=2), tmp_path / "sim")
    result = stream(tmp_path / "sim", LandingSink(tmp_path / "landing"), speedup=0, every_s=900)
    assert not result.interrupted and result.reached_ms == result.end_ms
    batch_rows = sum(pq.read_metadata(p).num_rows for p in (tmp_path / "sim" / "tables" / "xdr_voice").glob("*.parquet"))
    assert result.sources["xdr_voice"].records == batch_rows


def test_landing_files_are_never_seen_half_written(batch, streamed, tmp_path, monkeypatch):
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def replace(src, dst):
        assert Path(src).name.startswith(".") and Path(src).name.endswith(".tmp")
        assert Path(dst).name == "manifest.json" or not Path(dst).exists()  # a data file is written once
        renames.append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(stream_sinks.os, "replace", replace)
    landing = tmp_path / "landing"
    done = threading.Event()
    errors: list[BaseException] = []

    def run():
        try:
            stream(batch, LandingSink(landing), speedup=0, every_s=EVERY_S)
        except BaseException as err:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(err)
        finally:
            done.set()

    writer = threading.Thread(target=run)
    writer.start()
    checked: set[Path] = set()
    while not done.is_set() or not checked:
        for path in list(landing.rglob("*")) if landing.exists() else []:
            if path in checked or not path.is_file() or path.name.startswith("."):
                continue
            if path.suffix == ".parquet":
                pq.read_table(path)
            elif path.suffix == ".xml":
                assert path.read_bytes().endswith(b"</measCollecFile>\n"), path
            elif path.suffix == ".csv":
                assert path.read_bytes().endswith(b"\n"), path
            checked.add(path)
        if done.is_set():
            break
    writer.join()
    assert not errors, errors
    assert len(checked) > 100 and len(renames) > len(checked) / 2
    assert not [p for p in landing.rglob(".*.tmp")]
    # same output, same stream: the files are those of the other run of the same seed
    other, _ = streamed
    for path in (landing / "tables").iterdir():
        assert path.read_bytes() == (other / "tables" / path.name).read_bytes(), path.name


def test_ingest_reads_the_landing_folder(batch, streamed, tmp_path):
    landing, result = streamed
    sources, as_of = discover([landing], TABLES)
    assert as_of == SIM.start_date
    assert not [s for s in sources if s.kind == "unknown"]
    assert {s.table for s in sources} == set(result.sources) - {"pm/alpha", "pm/beta"} | {"pm_counters"}
    assert {s.vendor for s in sources if s.table == "pm_counters"} == {"alpha", "beta"}
    # every micro-batch file, and a few PM files with a re-sent one, into a lake
    pm = [s.path for s in sources if s.table == "pm_counters"]
    resent = [p for p in pm if "_resent" in p.name][:1]
    chosen = sorted(set(pm[:3] + pm[-3:] + resent + [p.with_name(p.name.replace("_resent", "")) for p in resent]))
    report = ingest(Lake(tmp_path / "lake"), [landing / "tables", *chosen], as_of=SIM.start_date)
    assert not report.count("rejected")
    rows = report.rows()
    for name, stats in result.sources.items():
        if not name.startswith("pm/"):
            quarantined = sum(f.rows_quarantined for f in report.files if f.table == name)
            assert rows[name] + quarantined == stats.records + stats.updates + stats.duplicates, name
    assert rows["pm_counters"] > 0
    assert report.count("duplicate") == len(resent)  # a re-sent PM file is the same content


def test_pacing_follows_the_speedup(batch, tmp_path):
    now = [0.0]
    slept: list[float] = []
    delivered: list[tuple[int, float]] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    def progress(tick, ticks, at_ms, so_far):
        delivered.append((at_ms, now[0]))

    result = stream(batch, LandingSink(tmp_path / "landing"), speedup=60, every_s=3600, progress=progress,
                    sleep=sleep, clock=lambda: now[0])
    assert slept and all(s > 0 for s in slept)
    for at_ms, wall in delivered:  # each micro-batch goes out when its simulated time comes, at 60x
        assert wall == pytest.approx((at_ms - result.started_ms) / 1000 / 60)
    assert delivered[-1][0] == result.end_ms


def test_ctrl_c_stops_after_a_whole_micro_batch(batch, tmp_path):
    before = signal.getsignal(signal.SIGINT)
    reached = []

    def progress(tick, ticks, at_ms, so_far):
        reached.append(at_ms)
        if tick >= 20 and len(reached) < 30:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C: noted, acted on once this micro-batch is out

    landing = tmp_path / "landing"
    result = stream(batch, LandingSink(landing), speedup=0, every_s=EVERY_S, progress=progress)
    assert result.interrupted and result.started_ms < result.reached_ms < result.end_ms
    assert result.reached_ms == reached[-1] and signal.getsignal(signal.SIGINT) is before
    manifest = json.loads((landing / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["stream"]["interrupted"] is True
    assert not list(landing.rglob(".*.tmp"))
    for path in (landing / "tables").iterdir():
        pq.read_table(path)
    delivered = sum(s.records + s.updates + s.duplicates for n, s in result.sources.items() if not n.startswith("pm/"))
    assert delivered == sum(pq.read_metadata(p).num_rows for p in (landing / "tables").iterdir())


def test_cli_refusals_are_one_sentence(batch, tmp_path):
    out = cli("simulate", "--stream", "--replay", batch, "--nats", "nats://127.0.0.1:1")
    assert out.exit_code == 2 and "cannot reach NATS at nats://127.0.0.1:1" in out.stderr
    assert "Traceback" not in out.output and len(out.stderr.strip().splitlines()) == 1
    out = cli("simulate", "--to", tmp_path / "x")
    assert out.exit_code == 2 and "--to belongs to real-time mode; add --stream" in out.stderr
    out = cli("simulate", "--stream", "--replay", batch)
    assert out.exit_code == 2 and "--to DIR" in out.stderr
    out = cli("simulate", "--stream", "--replay", tmp_path / "nothing", "--to", tmp_path / "landing")
    assert out.exit_code == 2 and "not a finished simulator output" in out.stderr
    with pytest.raises(StreamError, match="--run"):
        NatsSink("nats://127.0.0.1:4222", "a.b")


def test_cli_streams_a_replay_to_a_landing_folder(batch, tmp_path):
    out = cli("simulate", "--stream", "--replay", batch, "--to", tmp_path / "landing", "--no-wait",
              "--every", 3600)
    assert out.exit_code == 0, out.output
    assert "records out of order" in out.stderr and "truth for scoring" in out.stderr
    assert json.loads((tmp_path / "landing" / "manifest.json").read_text())["complete"] is True


async def _drain(url: str, stream_name: str, expected: int) -> list:
    import nats

    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=5)
        info = await js.stream_info(stream_name)
        assert info.state.messages == expected
        from nats.js.api import AckPolicy, ConsumerConfig

        sub = await js.pull_subscribe(">", stream=stream_name, config=ConsumerConfig(ack_policy=AckPolicy.NONE))
        got: list = []
        while len(got) < expected:
            got += await sub.fetch(min(5000, expected - len(got)), timeout=5)
        return [(m.subject, m.data, dict(m.headers or {})) for m in got]
    finally:
        await nc.close()


async def _delete(url: str, stream_name: str) -> None:
    import nats

    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        await nc.jetstream(timeout=5).delete_stream(stream_name)
    finally:
        await nc.close()


def test_nats_subjects_carry_the_batch_records(batch):
    host, port = require_service("nats")
    url, run = f"nats://{host}:{port}", f"test-{uuid.uuid4().hex[:12]}"
    sink = NatsSink(url, run)
    try:
        result = stream(batch, sink, speedup=0, every_s=EVERY_S)
        n_files = sum(s.records + s.duplicates for n, s in result.sources.items() if n.startswith("pm/"))
        assert sink.dropped_by_server == 0
        messages = asyncio.run(_drain(url, f"OPENCEM_{run}", result.deliveries + n_files + 2))
    finally:
        asyncio.run(_delete(url, f"OPENCEM_{run}"))
    ids = [h["Nats-Msg-Id"] for _, _, h in messages]
    assert len(set(ids)) == len(ids)  # every delivery, duplicates included, reached the consumer
    by_subject: dict[str, list[bytes]] = {}
    for subject, data, _ in messages:
        by_subject.setdefault(subject, []).append(data)
    control = [json.loads(d) for d in by_subject.pop(f"opencem.{run}.control")]
    assert [c["event"] for c in control] == ["start", "end"] and control[1]["complete"] is True
    for vendor in ("alpha", "beta"):
        files = by_subject.pop(f"opencem.{run}.pm.{vendor}")
        assert len(files) == result.sources[f"pm/{vendor}"].records + result.sources[f"pm/{vendor}"].duplicates
    alpha = {h["Opencem-File"]: d for s, d, h in messages if s.endswith(".pm.alpha")}
    assert alpha == {p.name: p.read_bytes() for p in (batch / "pm" / "alpha").iterdir()}
    assert {s.removeprefix(f"opencem.{run}.") for s in by_subject} == {
        p.name.split(".")[0] for p in (batch / "tables").iterdir()}
    for subject, payloads in by_subject.items():
        name = subject.removeprefix(f"opencem.{run}.")
        expected = batch_table(batch, name)
        schema = pa.schema([pa.field(f.name, pa.string() if pa.types.is_timestamp(f.type) else f.type)
                            for f in expected.schema])
        rows = pajson.read_json(pa.BufferReader(b"\n".join(payloads) + b"\n"),
                                parse_options=pajson.ParseOptions(explicit_schema=schema))
        rows = pa.table([rows[f.name].cast(f.type) for f in expected.schema], schema=expected.schema)
        assert by_key(name, dedup(name, rows)).equals(by_key(name, expected)), name
    msg_ids = {h["Nats-Msg-Id"].split("#")[0] for s, _, h in messages if s == f"opencem.{run}.xdr_voice"}
    assert msg_ids == set(record_ids("xdr_voice", batch_table(batch, "xdr_voice")).to_pylist())
    assert any(i.endswith("#resent") for i in ids) and any(i.endswith("#update") for i in ids)


def test_stream_start_is_the_first_simulated_day(streamed):
    _, result = streamed
    midnight = datetime.combine(SIM.start_date, datetime.min.time(), UTC)
    assert result.started_ms == int(midnight.timestamp() * 1000)
    assert result.end_ms == result.started_ms + SIM.days * 86_400_000 + 2 * 3_600_000
    assert isinstance(SIM.start_date, date) and RESEND_S[1] < LATE_S[1]
