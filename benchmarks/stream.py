"""Stream processing throughput: a simulated day through ``opencem stream`` against the batch
``opencem evaluate`` of the same records, run alongside.

    .venv/bin/python benchmarks/stream.py [--subscribers 20000] [--every 60] [--max-records 1000000] [--feed DIR]
                                          [--rules N]

Simulates once and streams the day to a landing folder with no pacing (duplicates, out-of-order
and late deliveries, one file per source per ``--every`` simulated seconds). Then, each in a
process of its own so peak RSS is its own:

- stream: the standard streaming cubes (``stream: true``) over the landing folder from an empty
  state until the feed's end, ``--max-records`` per commit, every window kept up to date; with
  ``--rules N``, N threshold rules (``for: 30m``) over the four cubes' KQIs evaluated in every
  commit and their alerts relayed to an operational store (SQLite) after it, as
  ``opencem stream run --rules`` does;
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


# Columns of each streamed cube the generated rules compare (any KQI costs the same to evaluate).
RULE_COLUMNS = {
    "cube_cell_15min": ["stall_ratio_pct", "call_drop_pct", "cei", "erab_drop_pct", "http_success_pct",
                        "page_load_time_ms", "dl_throughput_kbps", "tcp_rtt_ran_ms", "video_mos", "rrc_setup_success_pct"],
    "cube_city_15min": ["stall_ratio_pct", "call_drop_pct", "cei", "http_success_pct", "page_load_time_ms",
                        "dl_throughput_kbps", "video_mos", "complaint_count"],
    "cube_program_source_15min": ["stall_ratio_pct", "video_start_success_pct", "initial_buffering_ms", "video_mos",
                                  "cei", "video_bitrate_kbps"],
    "cube_cdn_node_15min": ["stall_ratio_pct", "video_start_success_pct", "initial_buffering_ms", "video_mos", "cei",
                            "video_bitrate_kbps"],
}


def rule_file(path: Path, n: int) -> Path:
    """``n`` distinct threshold rules spread over the streamed cubes and their KQIs."""
    lines = ["groups:", "  - name: bench", "    rules:"]
    cubes = list(RULE_COLUMNS)
    for i in range(n):
        cube = cubes[i % len(cubes)]
        cols = RULE_COLUMNS[cube]
        col = cols[(i // len(cubes)) % len(cols)]
        op = ">" if i % 2 == 0 else "<"
        lines += [f"      - alert: Bench{i:04d}", f"        expr: {cube}.{col} {op} {1 + (i * 7919) % 97}",
                  "        for: 30m", "        labels: {severity: minor}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def stream_phase(root: Path, max_records: int, rules: int = 0) -> dict:
    from opencem.indicators.catalog import load_catalog
    from opencem.schema import TABLES
    from opencem.stream import StreamConfig, run_stream
    from opencem.stream.landing import LandingSource

    cat = load_catalog(TABLES, [])
    config = StreamConfig(lateness_s=7 * 86_400, max_records=max_records, until_finished=True, poll_s=0.05)
    on_batch, progress, store = None, None, None
    if rules:
        from opencem.rules.alerting_spec import load_config
        from opencem.rules.catalog import RuleContext, load_rules
        from opencem.rules.stream import StreamRules
        from opencem.workspace import Workspace

        ctx = RuleContext(cat, TABLES)
        checked, issues = load_rules([rule_file(root / "bench.rules.yaml", rules)], ctx)
        if any(i.level == "error" for i in issues):
            sys.exit("\n".join(map(str, issues)))
        on_batch = StreamRules(checked, {})
        store = Workspace.resolve(root / "ws-rules").store()
        alerting = load_config(None)

        def progress(_report) -> None:
            on_batch.relay(store.transaction, alerting)

    started = time.perf_counter()
    report = run_stream(root / ("state-rules.duckdb" if rules else "state.duckdb"), LandingSource(root / "land", TABLES),
                        cat, TABLES, config, progress=progress, on_batch=on_batch)
    if store is not None:
        store.close()
    return {"records": report.records, "seconds": time.perf_counter() - started, "commits": report.batches,
            "evaluate_s": sum(report.cube_s.values()), "running_s": report.seconds,  # running_s: after the plans compiled
            "events": on_batch.events if on_batch else 0}


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


def child(phase: str, root: Path, max_records: int, rules: int = 0) -> dict:
    out = subprocess.run([sys.executable, __file__, "--phase", phase, "--root", str(root),
                          "--max-records", str(max_records), "--rules", str(rules)], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=20_000)
    ap.add_argument("--every", type=int, default=60)
    ap.add_argument("--max-records", type=int, default=1_000_000)
    ap.add_argument("--feed", type=Path, help="reuse a feed simulated before (DIR/sim, DIR/land), kept after")
    ap.add_argument("--rules", type=int, default=0, help="also stream with this many threshold rules on")
    ap.add_argument("--phase", choices=["stream", "batch"])
    ap.add_argument("--root", type=Path)
    args = ap.parse_args()
    if args.phase:
        result = stream_phase(args.root, args.max_records, args.rules) if args.phase == "stream" else batch_phase(args.root)
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
        r = child("stream", root, args.max_records, args.rules) if args.rules else None
        print(f"stream:   {s['records']:,} records in {s['seconds']:.1f} s = {s['records'] / s['seconds']:,.0f} records/s "
              f"({s['commits']} commits of up to {args.max_records:,}; {s['evaluate_s']:.1f} s evaluating the cubes; "
              f"{s['cpu_s']:.1f} CPU s), peak RSS {s['peak_rss_mib']:,.0f} MiB; once the plans are compiled "
              f"{s['records'] / s['running_s']:,.0f} records/s")
        print(f"baseline: {b['records']:,} records ingested and evaluated in {b['seconds']:.1f} s = "
              f"{b['records'] / b['seconds']:,.0f} records/s ({b['ingest_s']:.1f} s ingest, {b['evaluate_s']:.1f} s "
              f"evaluate; {b['cpu_s']:.1f} CPU s), peak RSS {b['peak_rss_mib']:,.0f} MiB")
        print(f"stream / baseline: {s['records'] / s['seconds'] / (b['records'] / b['seconds']):.2f} in records/s, "
              f"{b['cpu_s'] / s['cpu_s']:.2f} in CPU time")
        if r:
            print(f"stream with {args.rules:,} rules: {r['records']:,} records in {r['seconds']:.1f} s = "
                  f"{r['records'] / r['seconds']:,.0f} records/s ({r['cpu_s']:.1f} CPU s, {r['events']:,} alert events), "
                  f"peak RSS {r['peak_rss_mib']:,.0f} MiB; with rules / without: "
                  f"{r['records'] / r['seconds'] / (s['records'] / s['seconds']):.2f} in records/s, "
                  f"{s['cpu_s'] / r['cpu_s']:.2f} in CPU time")


if __name__ == "__main__":
    main()
