"""Alert quality on the twin: a simulated stream with faults through ``opencem stream run
--rules standard``, the alerts it raised scored against the simulator's truth.

    .venv/bin/python benchmarks/alerts.py [--scenario benchmark] [--subscribers 20000] [--days 2]
                                          [--seed 101] [--rules FILE ...] [--feed DIR]

Simulates the scenario (the labelled benchmark by default, at a size two cores stream in
minutes) and delivers it to a landing folder with no pacing (delays, duplicates, late and
out-of-order records). The stream runs in a process of its own with the rules on, relaying
alerts to the workspace's operational store through grouping, inhibition and routing exactly
as an operator's would. Only then is the truth opened: the rules and the stream never see it.

Scoring (the truth's own per-object tables, written for this):

- an alert episode is *true* when a fault really impaired its object within its span (from
  an hour before its episode began to its resolution): ``truth.cell_periods`` for a cell, a
  cell of the city or a fault of its province for a city, ``truth.fault_periods`` for a CDN
  node or a program source, a poor voice case with a fault (``truth.cases``) for a subscriber;
- precision per rule and overall; false alerts per 1,000 radio cells per day (cell alerts no
  fault explains);
- recall per fault type: a fault is detected when an alert on one of the objects it impaired
  fired at or after the fault's start and while it still impaired it (plus an hour's grace);
  time to detect is that first firing minus the true start (event time), median and p95;
- notifications per incident: operator notifications that told something new after grouping
  and inhibition (repeats and resolved-only notices not counted; customer messages apart),
  over the faults detected.

Figures, not pass/fail; the seed, scenario and size are printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa

GRACE = "INTERVAL 1 HOUR"  # an alert needs its `for` (30 min) and a window or two after the damage


def simulate(root: Path, args) -> None:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "opencem", "simulate", "--scenario", args.scenario,
                    "--subscribers", str(args.subscribers), "--days", str(args.days), "--seed", str(args.seed),
                    "--out", str(root / "sim"), "--stream", "--to", str(root / "land"), "--no-wait",
                    "--every", str(args.every)], check=True, capture_output=True)
    print(f"simulated and streamed scenario {args.scenario}, {args.subscribers:,} subscribers x {args.days} days, "
          f"seed {args.seed}, in {time.perf_counter() - started:.0f} s")


def stream(root: Path, args) -> dict:
    """The stream with the rules on, in a child process (its wall, CPU and peak RSS its own)."""
    ws = root / "ws"
    shutil.rmtree(ws, ignore_errors=True)
    cmd = [sys.executable, "-m", "opencem", "--workspace", str(ws), "stream", "run", "--from", str(root / "land"),
           "--until-finished", "--lateness", args.lateness, "--max-records", str(args.max_records)]
    for f in args.rules or ["standard"]:
        cmd += ["--rules", str(f)]
    env = {k: v for k, v in os.environ.items() if k != "OPENCEM_DATABASE_URL"}  # the workspace's own SQLite store
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"the stream failed:\n{proc.stderr[-3000:]}")
    err = proc.stderr
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    records = sum(int(line.split(" records in ")[0].replace(",", "")) for line in err.splitlines()
                  if " records in " in line and " commits" in line)
    notes = [line for line in err.splitlines() if "did not run" in line]
    # ru_maxrss of the children is the largest child's: the stream's unless the simulator was larger
    return {"seconds": seconds, "records": records, "notes": notes, "cpu_s": cpu, "rss_mib": after.ru_maxrss / 1024}


def store_tables(ws: Path) -> dict[str, pa.Table]:
    """The store's alerts and operator notifications, as Arrow tables."""
    con = sqlite3.connect(ws / "store.sqlite")
    alerts = con.execute("SELECT id, rule_name, object_type, object_id, episode_start, fired_at, resolved_at, "
                         "inhibited_by, silenced_by FROM alerts").fetchall()
    notes = con.execute("SELECT n.alert_id, n.channel, n.group_id, n.payload, n.scheduled_at FROM notifications n "
                        "WHERE n.group_id IS NOT NULL").fetchall()
    con.close()
    names = ["id", "rule", "object_type", "object_id", "episode_start", "fired_at", "resolved_at", "inhibited_by",
             "silenced_by"]
    a = pa.table({n: pa.array([r[i] for r in alerts]) for i, n in enumerate(names)}) if alerts else \
        pa.table({n: pa.array([], pa.string()) for n in names})
    told = [r for r in notes if (p := json.loads(r[3] or "{}")).get("status") == "firing" and not p.get("repeat")]
    n = pa.table({"channel": pa.array([r[1] for r in told], pa.string()),
                  "group_id": pa.array([r[2] for r in told], pa.int64())})
    return {"alerts": a, "notices": n, "all_notices": len(notes)}


def score(root: Path, args) -> dict:
    sim, ws = root / "sim", root / "ws"
    got = store_tables(ws)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("alerts_raw", got["alerts"])
    con.register("notices", got["notices"])
    truth = sim / "truth"
    for name in ("faults", "fault_periods", "cell_periods"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{truth / name}.parquet')")
    con.execute(f"CREATE VIEW cases AS SELECT * FROM read_parquet('{truth}/cases/*.parquet')")
    con.execute(f"CREATE VIEW cells AS SELECT * FROM read_parquet('{sim}/tables/cells*.parquet')")
    # Alert episodes that fired; store times are UTC text.
    con.execute("""CREATE TABLE alerts AS SELECT id, rule, object_type, object_id,
        CAST(episode_start AS TIMESTAMP) AS episode_start, CAST(fired_at AS TIMESTAMP) AS fired_at,
        CAST(resolved_at AS TIMESTAMP) AS resolved_at, inhibited_by IS NOT NULL AS inhibited
        FROM alerts_raw WHERE fired_at IS NOT NULL""")
    end = con.execute("SELECT max(end_time)::TIMESTAMP FROM faults").fetchall()[0][0]
    span = con.execute("SELECT min(start_time)::TIMESTAMP, max(end_time)::TIMESTAMP FROM faults").fetchall()[0]
    # What really impaired each object, per 15 minutes (the truth's own tables).
    con.execute("""CREATE TABLE impaired AS
        SELECT 'cell' AS object_type, cell_id AS object_id, period_start::TIMESTAMP AS t, fault_id FROM cell_periods
        UNION ALL SELECT 'city', c.city, p.period_start::TIMESTAMP, p.fault_id
            FROM cell_periods p JOIN cells c USING (cell_id)
        UNION ALL SELECT 'city', c.city, p.period_start::TIMESTAMP, p.fault_id
            FROM fault_periods p JOIN (SELECT DISTINCT city, province FROM cells) c ON p.object_id = c.province
            WHERE p.object_type = 'region'
        UNION ALL SELECT object_type, object_id, period_start::TIMESTAMP, fault_id FROM fault_periods
            WHERE object_type IN ('cdn_node', 'program_source')
        UNION ALL SELECT 'subscriber', subscriber_id, hour_start::TIMESTAMP + INTERVAL (15 * k) MINUTE, fault_id
            FROM cases, range(4) r(k) WHERE service = 'voice' AND fault_id IS NOT NULL""")
    con.execute(f"""CREATE TABLE matches AS
        SELECT DISTINCT a.id, i.fault_id FROM alerts a JOIN impaired i USING (object_type, object_id)
        WHERE i.t >= a.episode_start - {GRACE} AND i.t < coalesce(a.resolved_at, TIMESTAMP '{end}')""")
    cells = con.execute("SELECT count(*) FROM cells WHERE technology <> 'FTTH-OLT'").fetchall()[0][0]
    days = (span[1] - span[0]).total_seconds() / 86_400
    per_rule = con.execute("""SELECT rule, count(*) AS fired, count(*) FILTER (WHERE m) AS true_alerts,
            count(*) FILTER (WHERE inhibited) AS inhibited
        FROM (SELECT a.*, a.id IN (SELECT id FROM matches) AS m FROM alerts a) GROUP BY rule ORDER BY rule""").fetchall()
    false_cell = con.execute("SELECT count(*) FROM alerts WHERE object_type = 'cell' "
                             "AND id NOT IN (SELECT id FROM matches)").fetchall()[0][0]
    # Detection: an alert on an object the fault impaired, fired from its start until an hour
    # after it last impaired that object.
    per_type = con.execute(f"""
        WITH hits AS (
            SELECT f.fault_id, min(a.fired_at) AS first_fired
            FROM faults f JOIN impaired i USING (fault_id)
            JOIN alerts a ON a.object_type = i.object_type AND a.object_id = i.object_id
            WHERE a.fired_at >= f.start_time::TIMESTAMP AND a.fired_at >= i.t AND a.fired_at < i.t + {GRACE}
            GROUP BY f.fault_id),
        per AS (SELECT f.fault_type, f.fault_id, h.first_fired,
                       date_diff('second', f.start_time::TIMESTAMP, h.first_fired) / 60.0 AS ttd_min
                FROM faults f LEFT JOIN hits h USING (fault_id))
        SELECT fault_type, count(*) AS faults, count(first_fired) AS detected,
               median(ttd_min) AS ttd_median, quantile_cont(ttd_min, 0.95) AS ttd_p95
        FROM per GROUP BY fault_type ORDER BY fault_type""").fetchall()
    attributed = dict(con.execute("""SELECT f.fault_type, count(DISTINCT m.id) FROM matches m
        JOIN faults f USING (fault_id) GROUP BY ALL""").fetchall())
    notices = con.execute("SELECT count(*) FROM notices").fetchall()[0]
    return {"per_rule": per_rule, "per_type": per_type, "attributed": attributed, "false_cell": false_cell,
            "cells": cells, "days": days, "notices": notices[0], "all_notices": got["all_notices"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="benchmark")
    ap.add_argument("--subscribers", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--every", type=int, default=60)
    ap.add_argument("--lateness", default="1h")
    ap.add_argument("--max-records", type=int, default=1_000_000)
    ap.add_argument("--rules", action="append", type=Path, help="rule files (default: the standard rules)")
    ap.add_argument("--feed", type=Path, help="keep the simulated feed here and reuse it when it is there")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="opencem-alerts-bench-") as tmp:
        root = Path(tmp) if args.feed is None else args.feed
        root.mkdir(parents=True, exist_ok=True)
        if not (root / "land" / "manifest.json").is_file():
            simulate(root, args)
        s = stream(root, args)
        cpu = f", {s['cpu_s']:.0f} CPU s, peak RSS of the largest child {s['rss_mib']:,.0f} MiB"
        print(f"stream with rules {', '.join(map(str, args.rules or ['standard']))}: {s['records']:,} records in "
              f"{s['seconds']:.0f} s = {s['records'] / s['seconds']:,.0f} records/s{cpu}")
        for line in s["notes"]:
            print(f"  {line.strip()}")
        r = score(root, args)
    fired = sum(x[1] for x in r["per_rule"])
    true = sum(x[2] for x in r["per_rule"])
    print(f"\nalerts fired: {fired:,}, true {true:,}: precision {true / fired:.3f}" if fired else "\nno alert fired")
    print(f"{'rule':<28}{'fired':>8}{'true':>8}{'precision':>11}{'inhibited':>11}")
    for rule, n, t, inh in r["per_rule"]:
        print(f"{rule:<28}{n:>8,}{t:>8,}{t / n:>11.3f}{inh:>11,}")
    print(f"false cell alerts per 1,000 radio cells per day: {r['false_cell'] / (r['cells'] / 1000) / r['days']:.1f} "
          f"({r['false_cell']:,} over {r['cells']:,} cells, {r['days']:.1f} days)")
    print(f"\n{'fault type':<24}{'faults':>7}{'detected':>9}{'recall':>8}{'TTD median':>12}{'TTD p95':>9}"
          f"{'alerts':>8}")
    detected = 0
    for ft, n, d, med, p95 in r["per_type"]:
        detected += d
        ttd = f"{med:>10.0f} m{p95:>7.0f} m" if d else f"{'-':>12}{'-':>9}"
        print(f"{ft:<24}{n:>7,}{d:>9,}{d / n:>8.2f}{ttd}{r['attributed'].get(ft, 0):>8,}")
    faults = sum(x[1] for x in r["per_type"])
    print(f"{'all':<24}{faults:>7,}{detected:>9,}{detected / faults:>8.2f}")
    print(f"\noperator notifications that told something new: {r['notices']:,} ({r['all_notices']:,} with repeats "
          f"and resolved notices); per detected fault {r['notices'] / detected:.2f}" if detected else "")


if __name__ == "__main__":
    main()
