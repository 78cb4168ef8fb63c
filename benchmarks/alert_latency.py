"""End-to-end alert latency: records POSTed to ``opencem stream run --http`` at a steady offered
rate, and the time from the request carrying the record that completes a per-subscriber count
to that alert in the operational store.

    .venv/bin/python benchmarks/alert_latency.py [--subscribers 5000] [--days 1] [--rate 100000 --rate 10000]
                                                 [--feed DIR]

Simulates an operator's day and streams it to a landing folder (delays, duplicates and late
records as ``opencem simulate --stream`` makes them), then for each ``--rate`` (records/s
offered) starts a stream of its own with the standard streaming cubes, the standard rules and a
probe rule (two poor calls of one subscriber within an hour: frequent enough to measure many
alerts), and replays the landing files in their arrival order at that rate: one POST per
table per ``--slice`` seconds (Arrow IPC), PM files once the files past their period are sent,
by up to ``--clients`` connections at once. A poller reads the store every 20 ms.

Latency of an alert = when the poller first saw it in the store minus when the request holding
its completing record was due to be sent (so time a client waited for a free connection
counts). Prints the offered and achieved rates, and latency p50/p95/p99/max. Figures, not
pass/fail; the target (p99 under 1 s at 100,000 records/s) is the issue's.
"""

from __future__ import annotations

import argparse
import http.client
import io
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PROBE = """groups:
  - name: latency-probe
    rules:
      - alert: PoorCallsProbe
        expr: count_over_time(xdr_voice[60m] where dropped or not setup_success) by (subscriber_id) >= 2
        labels: {severity: info}
"""
STAMPED = re.compile(r"^(?P<table>.+)_(?P<stamp>\d{8}T\d{6})\.parquet$")
PM_PERIOD = re.compile(r"^[A-Z](?P<day>\d{8})\.\d{4}[+-]\d{4}-(?P<end>\d{4})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plan(land: Path, slice_s: float, rate: float) -> list[tuple[float, str, str, bytes, list]]:
    """(due seconds from the start, kind, path, body, probe keys) in arrival order, records
    grouped per table and slice of the offered timeline."""
    files = sorted((m["stamp"], m["table"], p) for p in (land / "tables").glob("*.parquet")
                   if (m := STAMPED.match(p.name)))
    pm = sorted((PM_PERIOD.match(p.name)["day"] + "T" + PM_PERIOD.match(p.name)["end"] + "00", p)
                for p in (land / "pm").glob("*/*") if PM_PERIOD.match(p.name))
    out, sent, k = [], 0, 0
    pending: dict[str, list[pa.Table]] = defaultdict(list)
    current = 0.0

    def flush(at: float) -> None:
        for table, parts in pending.items():
            t = pa.concat_tables(parts)
            sink = io.BytesIO()
            with pa.ipc.new_stream(sink, t.schema) as w:
                w.write_table(t)
            keys = []
            if table == "xdr_voice":
                ms = pc.cast(t["start_time"], pa.timestamp("ms", "UTC")).cast(pa.int64()).to_pylist()
                keys = list(zip(t["subscriber_id"].to_pylist(), ms))
            out.append((at, "records", table, sink.getvalue(), keys))
        pending.clear()

    for stamp, table, path in files:
        while k < len(pm) and pm[k][0] <= stamp:  # a PM period ended: its file goes in this slice
            out.append((current, "pm", f"{pm[k][1].parent.name}/{pm[k][1].name}", pm[k][1].read_bytes(), []))
            k += 1
        at = (sent / rate) // slice_s * slice_s
        if at != current:
            flush(current)
            current = at
        t = pq.read_table(path)
        pending[table].append(t)
        sent += t.num_rows
    flush(current)
    return out


def post(port: int, path: str, body: bytes, content_type: str, retries: list) -> int:
    """POST until answered other than 503 (a client retries a refused or reset request, as the
    HTTP source's docs ask: record-id dedup makes a copy count once)."""
    while True:
        con = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            con.request("POST", path, body=body, headers={"Content-Type": content_type})
            r = con.getresponse()
            r.read()
            if r.status != 503:
                return r.status
            retries.append("503")
        except (ConnectionError, http.client.HTTPException) as err:
            retries.append(f"{type(err).__name__} on {path} ({len(body):,} bytes)")
        finally:
            con.close()
        time.sleep(0.2)


def run_rate(root: Path, rate: float, args) -> dict:
    ws = root / f"ws-{int(rate)}"
    shutil.rmtree(ws, ignore_errors=True)
    (root / "probe.rules.yaml").write_text(PROBE)
    port = free_port()
    cmd = [sys.executable, "-m", "opencem", "--workspace", str(ws), "stream", "run", "--http", str(port),
           "--until-finished", "--lateness", "1h", "--rules", "standard", "--rules", str(root / "probe.rules.yaml")]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(root / f"stream-{int(rate)}.log", "w"))
    for _ in range(600):  # until it listens (the plans compile first)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    work = plan(root / "land", args.slice, rate)
    total = sum(pa.ipc.open_stream(b).read_all().num_rows for _, kind, _, b, _ in work if kind == "records")
    seen: dict[tuple, float] = {}
    stop = threading.Event()

    def poll_store() -> None:
        db = ws / "store.sqlite"
        while not db.exists() and not stop.is_set():
            time.sleep(0.02)
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        while not stop.is_set():
            try:
                for sub, fired in con.execute("SELECT json_extract(labels, '$.subscriber_id'), fired_at FROM alerts "
                                              "WHERE rule_name = 'PoorCallsProbe' AND fired_at IS NOT NULL"):
                    seen.setdefault((sub, fired), time.perf_counter())
            except sqlite3.OperationalError:
                pass  # no table yet, or a writer holds it for a moment
            time.sleep(0.02)
        con.close()

    poller = threading.Thread(target=poll_store, daemon=True)
    poller.start()
    due_of: dict[tuple, float] = {}
    start = time.perf_counter() + 0.5
    statuses: list[int] = []
    retries: list[str] = []

    def send(item) -> None:
        at, kind, name, body, _ = item
        delay = start + at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        path = f"/v1/records/{name}" if kind == "records" else f"/v1/pm/{name}"
        statuses.append(post(port, path, body, "application/vnd.apache.arrow.stream" if kind == "records"
                             else "application/octet-stream", retries))

    for at, _, _, _, keys in work:
        for key in keys:
            due_of.setdefault(key, at)
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(send, work))
    sent_s = time.perf_counter() - start
    post(port, "/v1/end", b"", "application/json", retries)
    server.wait(timeout=900)
    time.sleep(0.2)
    stop.set()
    poller.join()
    lat = []
    for (sub, fired), when in seen.items():
        t = int(datetime.fromisoformat(fired).replace(tzinfo=UTC).timestamp() * 1000)
        if (sub, t) in due_of:
            lat.append(when - (start + due_of[(sub, t)]))
    lat = np.array(lat)
    return {"rate": rate, "records": total, "sent_s": sent_s, "alerts": len(seen), "matched": int(lat.size),
            "p50": float(np.percentile(lat, 50)) if lat.size else None,
            "p95": float(np.percentile(lat, 95)) if lat.size else None,
            "p99": float(np.percentile(lat, 99)) if lat.size else None, "max": float(lat.max()) if lat.size else None,
            "refused": sum(s != 200 for s in statuses), "retries": len(retries),
            "retried_for": sorted(set(r.split(" on ")[0] for r in retries)), "rc": server.returncode,
            "retry_examples": retries[:3]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=5_000)
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rate", type=float, action="append", help="records/s offered (repeatable; default 100000, 10000)")
    ap.add_argument("--slice", type=float, default=1.0, help="seconds of the offered timeline per POST of a table")
    ap.add_argument("--clients", type=int, default=48, help="connections at once (the server takes 64)")
    ap.add_argument("--feed", type=Path, help="keep the simulated feed here and reuse it when it is there")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="opencem-latency-bench-") as tmp:
        root = args.feed or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if not (root / "land" / "manifest.json").is_file():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "opencem", "simulate", "--subscribers", str(args.subscribers),
                            "--days", str(args.days), "--seed", str(args.seed), "--out", str(root / "sim"), "--stream",
                            "--to", str(root / "land"), "--no-wait"], check=True, capture_output=True)
            print(f"simulated and streamed {args.subscribers:,} subscribers x {args.days} day(s), seed {args.seed}, "
                  f"in {time.perf_counter() - started:.0f} s")
        for rate in args.rate or [100_000, 10_000]:
            r = run_rate(root, rate, args)
            fmt = (lambda v: f"{v:.2f} s" if v is not None else "-")
            print(f"offered {rate:,.0f} records/s: {r['records']:,} records sent in {r['sent_s']:.1f} s = "
                  f"{r['records'] / r['sent_s']:,.0f} records/s achieved; {r['alerts']:,} probe alerts "
                  f"({r['matched']:,} matched to their request): latency p50 {fmt(r['p50'])}, p95 {fmt(r['p95'])}, "
                  f"p99 {fmt(r['p99'])}, max {fmt(r['max'])}; {r['refused']} requests refused, {r['retries']} retried "
                  f"({', '.join(r['retried_for']) or 'none'}); stream rc {r['rc']}")
            for example in r['retry_examples']:
                print(f"  retried: {example}")


if __name__ == "__main__":
    main()
