"""Stream processing throughput: a simulated day through ``opencem stream`` against the batch
``opencem evaluate`` of the same records, run alongside.

    .venv/bin/python benchmarks/stream.py [--subscribers 20000] [--every 60] [--max-records 1000000] [--feed DIR]

Simulates once and streams the day to a landing folder with no pacing (duplicates, out-of-order
and late deliveries, one file per source per ``--every`` simulated seconds). Then, each in a
process of its own so peak RSS is its own:

- stream: the standard streaming cubes (``stream: true``) over the landing folder from an empty
  state until the feed's end, ``--max-records`` per commit, every window kept up to date;
- baseline: ingest of the simulator's batch output (tables and PM files, each record once) and
  ``evaluate`` of the same four cubes.

Prints records/s (records delivered, duplicates and PM rows included, over wall time), seconds
spent evaluating the cubes, CPU seconds (steadier than wall time on a shared machine) and peak
RSS of each, and their ratios. ``--feed DIR`` keeps the simulated feed to reuse. Figures, not
pass/fail.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STREAMED = ["cube_cell_15min", "cube_city_15min", "cube_program_source_15min", "cube_cdn_node_15min"]


def stream_phase(root: Path, max_records: int) -> dict:
    from opencem.indicators.catalog import load_catalog
    from opencem.schema import TABLES
    from opencem.stream import StreamConfig, run_stream
    from opencem.stream.landing import LandingSource

    cat = load_catalog(TABLES, [])
    started = time.perf_counter()
    report = run_stream(root / "state.duckdb", LandingSource(root / "land", TABLES), cat, TABLES,
                        StreamConfig(lateness_s=7 * 86_400, max_records=max_records, until_finished=True, poll_s=0.05))
    return {"records": report.records, "seconds": time.perf_counter() - started, "commits": report.batches,
            "evaluate_s": sum(report.cube_s.values()), "running_s": report.seconds}  # running_s: after the plans compiled


def batch_phase(root: Path) -> dict:
    from opencem.indicators.catalog import load_catalog
    from opencem.indicators.evaluate import evaluate
    from opencem.ingest.load import ingest
    from opencem.workspace import Workspace

    started = time.perf_counter()
    ws = Workspace.resolve(root / "ws")
    ingest(ws.lake, [root / "sim" / "tables", root / "sim" / "pm"])  # the PM files too, as the stream reads them
    ingested = time.perf_counter() - started
    ws = Workspace.resolve(root / "ws")
    report = evaluate(ws.lake, load_catalog(ws.tables(), []), only=STREAMED)
    records = sum(f.rows for t in ws.lake.tables if not t.startswith("cube_") for f in ws.lake.files(t))
    return {"records": records, "seconds": time.perf_counter() - started, "ingest_s": ingested,
            "evaluate_s": sum(c.seconds for c in report.cubes)}


def child(phase: str, root: Path, max_records: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--phase", phase, "--root", str(root),
                          "--max-records", str(max_records)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=20_000)
    ap.add_argument("--every", type=int, default=60)
    ap.add_argument("--max-records", type=int, default=1_000_000)
    ap.add_argument("--feed", type=Path, help="reuse a feed simulated before (DIR/sim, DIR/land), kept after")
    ap.add_argument("--phase", choices=["stream", "batch"])
    ap.add_argument("--root", type=Path)
    args = ap.parse_args()
    if args.phase:
        result = stream_phase(args.root, args.max_records) if args.phase == "stream" else batch_phase(args.root)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result["peak_rss_mib"] = usage.ru_maxrss / 1024
        result["cpu_s"] = usage.ru_utime + usage.ru_stime  # the machine is shared: CPU time is steadier than wall
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="opencem-stream-bench-") as tmp:
        root = Path(tmp)
        if args.feed and (args.feed / "land" / "manifest.json").is_file():
            for name in ("sim", "land"):
                (root / name).symlink_to(args.feed.resolve() / name)
        else:
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "opencem", "simulate", "--subscribers", str(args.subscribers), "--days",
                            "1", "--out", str(root / "sim"), "--stream", "--to", str(root / "land"), "--no-wait",
                            "--every", str(args.every)], check=True, capture_output=True)
            print(f"simulated and streamed {args.subscribers:,} subscribers x 1 day in {time.perf_counter() - started:.1f} s")
            if args.feed:
                args.feed.mkdir(parents=True, exist_ok=True)
                for name in ("sim", "land"):
                    shutil.copytree(root / name, args.feed / name, dirs_exist_ok=True)
        files = len(list((root / "land" / "tables").glob("*.parquet")))
        print(f"feed: {files:,} landing files")
        s = child("stream", root, args.max_records)
        b = child("batch", root, args.max_records)
        print(f"stream:   {s['records']:,} records in {s['seconds']:.1f} s = {s['records'] / s['seconds']:,.0f} records/s "
              f"({s['commits']} commits of up to {args.max_records:,}; {s['evaluate_s']:.1f} s evaluating the cubes; "
              f"{s['cpu_s']:.1f} CPU s), peak RSS {s['peak_rss_mib']:,.0f} MiB; once the plans are compiled "
              f"{s['records'] / s['running_s']:,.0f} records/s")
        print(f"baseline: {b['records']:,} records ingested and evaluated in {b['seconds']:.1f} s = "
              f"{b['records'] / b['seconds']:,.0f} records/s ({b['ingest_s']:.1f} s ingest, {b['evaluate_s']:.1f} s "
              f"evaluate; {b['cpu_s']:.1f} CPU s), peak RSS {b['peak_rss_mib']:,.0f} MiB")
        print(f"stream / baseline: {s['records'] / s['seconds'] / (b['records'] / b['seconds']):.2f} in records/s, "
              f"{b['cpu_s'] / s['cpu_s']:.2f} in CPU time")


if __name__ == "__main__":
    main()
