"""Real-time mode: how fast a simulated world streams with no pacing, and what it delivers.

    .venv/bin/python benchmarks/simulate_stream.py [--subscribers 20000] [--days 1] [--every 60] [--nats URL]

Simulates once, then streams the output as fast as possible (``--speedup 0``) into a landing
folder and, when the NATS server answers, into JetStream (a stream of its own, deleted after).
Prints deliveries/s per sink and, per source, the shares of duplicates and of out-of-order
records and the delays after the record existed at its source (docs/simulator.md, Real-time mode).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from opencem.simulate.config import SimConfig
from opencem.simulate.run import simulate
from opencem.simulate.stream import StreamError, StreamResult, stream
from opencem.simulate.stream_sinks import LandingSink, NatsSink


def table(result: StreamResult) -> str:
    rows = result.summary()
    keys = ["source", "records", "updates", "duplicate_pct", "out_of_order_pct", "max_behind_s",
            "delay_p50_s", "delay_p99_s", "delay_max_s", "backlog", "flushed"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(f"{r[k]:,}" if isinstance(r[k], int) else str(r[k]) for k in keys) + " |"
              for r in rows]
    return "\n".join(lines)


def rate(name: str, result: StreamResult) -> str:
    totals = result.totals()
    return (f"{name}: {result.deliveries:,} deliveries ({totals['records']:,} records, "
            f"{totals['duplicates']:,} duplicates = {100 * totals['duplicates'] / totals['records']:.2f} %, "
            f"{totals['updates']:,} updates; {100 * totals['out_of_order'] / totals['records']:.1f} % of records "
            f"out of order) in {result.elapsed_s:.1f} s: {result.deliveries / result.elapsed_s:,.0f} deliveries/s")


async def _delete(url: str, name: str) -> None:
    import nats

    nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--every", type=float, default=60.0, help="simulated seconds per micro-batch")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="opencem-stream-bench-"))
    try:
        started = time.perf_counter()
        simulate(SimConfig(subscribers=args.subscribers, days=args.days, seed=args.seed), root / "sim")
        print(f"simulated {args.subscribers:,} subscribers x {args.days} days in {time.perf_counter() - started:.1f} s; "
              f"micro-batch every {args.every:g} simulated s")
        landing = stream(root / "sim", LandingSink(root / "landing"), speedup=0, every_s=args.every)
        files = sum(1 for p in (root / "landing").rglob("*") if p.is_file())
        print(rate(f"landing folder ({files:,} files)", landing))
        print(table(landing))
        run = f"bench-{uuid.uuid4().hex[:8]}"
        try:
            sink = NatsSink(args.nats, run)
        except StreamError as err:
            print(f"NATS skipped: {err}")
            return
        try:
            print(rate(f"NATS JetStream {args.nats}", stream(root / "sim", sink, speedup=0, every_s=args.every)))
        finally:
            asyncio.run(_delete(args.nats, f"OPENCEM_{run}"))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
