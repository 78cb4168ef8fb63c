"""Rule evaluation at an operator's scale, against the plainest query that reads the same rows,
run alongside in the same process (these machines are noisy: read the ratios).

    .venv/bin/python benchmarks/rules_scale.py [--cells 10000] [--rules 10] [--windows 12]
                                               [--subscribers 1000000] [--calls 4] [--hours 6]

Two parts, each in a process of its own so its peak RSS is its own:

- instances: ``--rules`` threshold rules (``for: 30m``, thresholds spread so some series fire,
  some go pending and some never start) over a ``cube_cell_15min`` of ``--cells`` cells, stepped
  window by window as the stream steps them: cells x rules rule instances. Baseline: per window
  and rule, one ``CREATE TABLE AS`` of the window's rows that meet the condition (the read and
  the write no evaluator can avoid).
- counts: the "3 dropped calls in 60 minutes" rule over ``--subscribers`` subscribers making
  ``--calls`` calls each over ``--hours`` hours (drops 5 %), fed in quarter-hour batches as
  the stream feeds it (each batch's records counted against the hour before). Baseline: per
  batch, the GROUP BY that counts each batch subscriber's drops in the last hour.

Prints seconds, instances or records per second, events, peak RSS and engine/baseline ratios.
Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

T0 = int(datetime(2026, 12, 7, tzinfo=UTC).timestamp() * 1000)  # a Monday
W = 900_000
HOUR = 3_600_000


def checked_rules(body: str):
    from opencem.indicators.catalog import load_catalog
    from opencem.rules.catalog import RuleContext, load_rules
    from opencem.schema import TABLES

    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "scale.rules.yaml"
        f.write_text("groups:\n  - name: scale\n    rules:\n" + body)
        rules, issues = load_rules([f], RuleContext(load_catalog(TABLES), dict(TABLES)))
    errors = [str(i) for i in issues if i.level == "error"]
    if errors:
        sys.exit("\n".join(errors))
    return rules


def instances(args) -> dict:
    from opencem.rules.evaluate import Relations, RuleEngine

    rng = np.random.default_rng(5)
    n, windows = args.cells, args.windows
    # Stall ratios around 3 %, a cell's level persisting across windows (so `for` matters).
    level = rng.gamma(2.0, 1.5, n)
    stall = np.clip(level[None, :] * rng.lognormal(0, 0.3, (windows, n)), 0, 100)
    cube = pa.table({
        "period_start": pa.array(np.repeat(T0 + W * np.arange(windows), n) * 1000, pa.timestamp("us", "UTC")),
        "cell_id": pa.array(np.tile([f"C{i:06d}" for i in range(n)], windows)),
        "stall_ratio_pct": pa.array(stall.ravel()),
        "records_xdr_video": pa.array(rng.integers(5, 80, windows * n)),
    })
    thresholds = np.linspace(2, 8, args.rules)
    body = "".join(f"""      - alert: Stall{i}
        expr: cube_cell_15min.stall_ratio_pct > {t:.3f} and cube_cell_15min.records_xdr_video >= 20
        for: 30m
""" for i, t in enumerate(thresholds))
    rules = checked_rules(body)
    con = duckdb.connect()
    con.execute("CREATE TABLE cube_cell_15min AS SELECT * FROM cube")
    eng = RuleEngine(con, rules, Relations(cubes={"cube_cell_15min": "cube_cell_15min"},
                                           window_s={"cube_cell_15min": 900}), {"stall_ratio_pct": "lower"})
    events, steps = 0, []
    for w in range(windows):
        started = time.perf_counter()
        events += len(eng.step({"cube_cell_15min": T0 + (w + 1) * W}))
        steps.append(time.perf_counter() - started)
    base = []
    for w in range(windows):
        started = time.perf_counter()
        for i, t in enumerate(thresholds):
            con.execute(f"CREATE OR REPLACE TEMP TABLE b{i} AS SELECT cell_id, stall_ratio_pct FROM cube_cell_15min "
                        f"WHERE period_start = make_timestamptz({(T0 + w * W) * 1000}) AND stall_ratio_pct > {t} "
                        "AND records_xdr_video >= 20")
        base.append(time.perf_counter() - started)
    return {"instances": n * args.rules, "windows": windows, "seconds": sum(steps), "step_p50": float(np.median(steps)),
            "step_max": max(steps), "events": events, "baseline_s": sum(base)}


def counts(args) -> dict:
    from opencem.rules.evaluate import Relations, RuleEngine

    rng = np.random.default_rng(6)
    n = args.subscribers * args.calls
    span = args.hours * HOUR
    t = np.sort(T0 + rng.integers(0, span, n))
    calls = pa.table({"subscriber_id": pa.array(np.char.add("S", rng.integers(0, args.subscribers, n).astype(str))),
                      "dropped": pa.array(rng.random(n) < 0.05), "_t": pa.array(t, pa.int64()),
                      "_id": pa.array(np.char.add("c", np.arange(n).astype(str)))})
    rules = checked_rules("""      - alert: RepeatedDroppedCalls
        expr: count_over_time(xdr_voice[60m] where dropped) by (subscriber_id) >= 3
""")
    con = duckdb.connect()
    con.execute("CREATE TABLE rec AS SELECT * FROM calls LIMIT 0")
    con.execute("CREATE TABLE batch (_id VARCHAR)")
    eng = RuleEngine(con, rules, Relations(records={"xdr_voice": "rec"}, changed={"xdr_voice": "batch"}), {})
    batches = np.searchsorted(t, T0 + W * np.arange(1, span // W + 1))
    events, seconds, base, lo = 0, 0.0, 0.0, 0
    for hi in batches:
        part = calls.slice(lo, hi - lo)
        con.register("part", part)
        con.execute("INSERT INTO rec SELECT * FROM part")  # the stream keeps its records: not timed
        con.execute("DELETE FROM batch")
        con.execute("INSERT INTO batch SELECT _id FROM part")
        clock = int(t[hi - 1]) if hi > lo else T0
        started = time.perf_counter()
        events += len(eng.step({"xdr_voice": clock}))
        seconds += time.perf_counter() - started
        started = time.perf_counter()
        con.execute(f"""CREATE OR REPLACE TEMP TABLE b AS SELECT r.subscriber_id, count(*) AS n FROM rec r
            WHERE r.dropped AND r._t > {clock - HOUR} AND r.subscriber_id IN (SELECT subscriber_id FROM part)
            GROUP BY 1 HAVING count(*) >= 3""")
        base += time.perf_counter() - started
        con.unregister("part")
        lo = hi
    return {"records": n, "subscribers": args.subscribers, "batches": len(batches), "seconds": seconds,
            "events": events, "baseline_s": base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=10_000)
    ap.add_argument("--rules", type=int, default=10)
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--subscribers", type=int, default=1_000_000)
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--hours", type=int, default=6)
    ap.add_argument("--part", choices=["instances", "counts"])
    args = ap.parse_args()
    if args.part:
        result = instances(args) if args.part == "instances" else counts(args)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    passed = [a for a in sys.argv[1:]]
    out = {}
    for part in ("instances", "counts"):
        run = subprocess.run([sys.executable, __file__, "--part", part, *passed], capture_output=True, text=True)
        if run.returncode:
            sys.exit(run.stderr[-3000:])
        out[part] = json.loads(run.stdout.strip().splitlines()[-1])
    i, c = out["instances"], out["counts"]
    print(f"instances: {i['instances']:,} ({args.cells:,} cells x {args.rules} rules), {i['windows']} windows in "
          f"{i['seconds']:.1f} s: {i['instances'] * i['windows'] / i['seconds']:,.0f} instance-windows/s, a window "
          f"step p50 {i['step_p50']:.2f} s, max {i['step_max']:.2f} s; {i['events']:,} events; peak RSS "
          f"{i['peak_rss_mib']:,.0f} MiB; engine / baseline {i['seconds'] / i['baseline_s']:.1f}x "
          f"(baseline {i['baseline_s']:.1f} s)")
    print(f"counts: {c['records']:,} calls of {c['subscribers']:,} subscribers in {c['batches']} quarter-hour batches, "
          f"{c['seconds']:.1f} s evaluating: {c['records'] / c['seconds']:,.0f} records/s, "
          f"{c['seconds'] / c['batches']:.2f} s per batch; {c['events']:,} events; peak RSS {c['peak_rss_mib']:,.0f} MiB; "
          f"engine / baseline {c['seconds'] / c['baseline_s']:.1f}x (baseline {c['baseline_s']:.1f} s)")


if __name__ == "__main__":
    main()
