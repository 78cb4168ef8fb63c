"""Indicator engine throughput (rows/s, peak RSS) against hand-written jobs, same lake, same run.

    .venv/bin/python benchmarks/evaluate.py [--rows 20000000] [--workdir /tmp/opencem-bench-evaluate]
        [--repeat 1] [--pandas-days 2] [--skip-pandas] [--skip-spark]

A fixed KPI set (sessions, HTTP success %, mean DL throughput, DL volume, exact p95 of the
RAN RTT, distinct users) is computed for two cubes, (cell, 15 min) and (subscriber, day), over
a synthetic xdr_data lake of --rows sessions on 2 UTC days, ~20k cells and ~1M subscribers
(generated once with a fixed seed and cached in --workdir). Implementations, each in its own
process, each writing its cubes as Parquet:
- opencem ``evaluate(engine="duckdb")``: per UTC day, rendered SQL, committed to the lake;
- baseline: one hand-written DuckDB query per cube over all files (the practical limit);
- reference: DuckDB alone on opencem's queries (the SQL ``evaluate`` renders, per UTC day,
  results fetched and dropped): the engine's share of opencem's time;
- baseline: pandas, as an analyst would write it (--pandas-days to run it on fewer days
  when 20M rows do not fit; rows/s is then over the rows it read);
- opencem ``evaluate(engine="spark")`` vs a hand-written PySpark DataFrame job, both on the
  session ``opencem.engines.spark.spark_session()`` builds (local[*], same shuffle partitions).

Seconds are the work inside the process (imports and Spark start-up excluded, the same for
every side), CPU s the CPU time of that work (steadier than wall time on a shared machine);
peak RSS is polled every 50 ms over the process and its children (the JVM for
Spark). With --repeat N the best time and the largest peak are kept. Before any figure is
believed, opencem's cube tables are joined to each baseline's output on the keys: keys must
match, counts must be equal and every other value within a relative 1e-9.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
PY = sys.executable
PHASES = str(HERE / "_evaluate_phases.py")
SEED = 20260302
GENERATOR_VERSION = 1  # bump when the generator changes, so a cached lake is rebuilt
RSS_LIMIT_MB = 2048


def measure(args: list[str]) -> tuple[dict, float, float]:
    """Run a phase; return (its JSON line, wall seconds, peak RSS in MiB of the process tree,
    polled every 50 ms). A process counts from its second sighting: a child the JVM spawns
    shares the JVM's pages until it execs, and would otherwise count the JVM twice."""
    started = time.perf_counter()
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # pipes could fill and block
    proc = psutil.Popen(args, stdout=out, stderr=err)
    peak, seen = 0, set()
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        rss = 0
        for p in tree:
            try:
                if p.pid in seen:
                    rss += p.memory_info().rss
                seen.add(p.pid)
            except psutil.NoSuchProcess:
                pass
        peak = max(peak, rss)
        time.sleep(0.05)
    proc.wait()
    elapsed = time.perf_counter() - started
    out.seek(0)
    err.seek(0)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{err.read().decode()[-4000:]}")
    return json.loads(out.read().decode().strip().splitlines()[-1]), elapsed, peak / 2**20


def phase(work: Path, name: str, *args: str, repeat: int = 1) -> dict:
    """Best of ``repeat`` runs of a timed phase: its result with seconds, wall_s, peak_rss_mb."""
    best: dict | None = None
    peak = 0.0
    for _ in range(repeat):
        result, wall, rss = measure([PY, PHASES, name, str(work), *args])
        peak = max(peak, rss)
        if best is None or result["seconds"] < best["seconds"]:
            best = {**result, "wall_s": wall}
    return {**best, "peak_rss_mb": peak}


def ensure_lake(work: Path, rows: int) -> int:
    """Generate the xdr_data lake unless a matching one is cached; returns its row count."""
    marker = work / "lake.json"
    wanted = {"rows": rows, "seed": SEED, "version": GENERATOR_VERSION}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return rows
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"generating {rows:,} xdr_data rows in {work / 'lake'} ...", flush=True)
    result, wall, rss = measure([PY, PHASES, "generate", str(work), str(rows), str(SEED)])
    print(f"  {wall:.0f} s, peak RSS {rss:,.0f} MiB", flush=True)
    assert result["rows"] == rows
    marker.write_text(json.dumps(wanted))
    return rows


def check(work: Path, label: str, baseline: str) -> dict:
    result, _, _ = measure([PY, PHASES, "check", str(work), label, baseline])
    return result


def describe(check_result: dict) -> list[str]:
    lines = [f"{check_result['opencem']} vs {check_result['baseline']}: "
             f"{'AGREE' if check_result['agree'] else 'DISAGREE'}"]
    for table, c in check_result["cubes"].items():
        nulls = sum(v for k, v in c.items() if k.endswith("null_differ"))
        counts = sum(v for k, v in c.items() if k.endswith("_differ") and not k.endswith("null_differ"))
        lines.append(f"  {table}: {c['matched']:,} groups matched, {c['only_opencem']:,} only in opencem, "
                     f"{c['only_baseline']:,} only in baseline; counts differing {counts}, "
                     f"null/non-null differing {nulls}, max relative difference {c['max_rel_diff']:.1e}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/opencem-bench-evaluate"))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--pandas-days", type=int, default=2, help="days of the lake pandas reads (of 2)")
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--skip-spark", action="store_true")
    args = parser.parse_args()
    work = args.workdir.resolve()
    rows = ensure_lake(work, args.rows)
    shutil.rmtree(work / "results", ignore_errors=True)

    runs: dict[str, dict] = {}
    checks: list[dict] = []
    runs["duckdb"] = phase(work, "duckdb", repeat=args.repeat)
    runs["duckdb_only"] = phase(work, "duckdb_only", repeat=args.repeat)
    runs["opencem_duckdb"] = phase(work, "opencem", "duckdb", repeat=args.repeat)
    checks.append(check(work, "opencem on DuckDB", "duckdb"))
    if not args.skip_pandas:
        runs["pandas"] = phase(work, "pandas", str(args.pandas_days), repeat=args.repeat)
        checks.append(check(work, "opencem on DuckDB", "pandas"))
    if not args.skip_spark:
        runs["pyspark"] = phase(work, "pyspark", repeat=args.repeat)
        runs["opencem_spark"] = phase(work, "opencem", "spark", repeat=args.repeat)
        checks.append(check(work, "opencem on Spark", "pyspark"))
        checks.append(check(work, "opencem on Spark", "duckdb"))
    for run in runs.values():
        run["rows"] = run.get("rows", rows)
        run["rows_per_s"] = run["rows"] / run["seconds"]

    def ratio(a: str, b: str) -> float | None:
        return runs[a]["rows_per_s"] / runs[b]["rows_per_s"] if a in runs and b in runs else None

    # implementation -> [(throughput ratio, against what, target, lowest ratio that meets it)]
    targets = {
        "opencem_duckdb": [(ratio("opencem_duckdb", "duckdb"), "x hand DuckDB", ">= 0.8x", 0.8),
                           (ratio("opencem_duckdb", "pandas"), "x pandas", ">= 3x", 3.0)],
        "opencem_spark": [(ratio("opencem_spark", "pyspark"), "x hand PySpark", ">= 0.8x", 0.8)],
    }
    labels = {"opencem_duckdb": "opencem on DuckDB", "duckdb": "  hand-written DuckDB SQL",
              "duckdb_only": "  DuckDB alone, opencem SQL",
              "pandas": "  pandas" + (f" ({args.pandas_days} of 2 days)" if args.pandas_days < 2 else ""),
              "opencem_spark": "opencem on Spark local", "pyspark": "  hand-written PySpark"}
    print(f"\nopencem evaluate: {rows:,} xdr_data rows, KPIs (sessions, http_success_pct, "
          "dl_throughput_avg_kbps, dl_volume_mb, rtt_ran_p95_ms, users) for (cell, 15min) and "
          f"(subscriber, day); best of {args.repeat}")
    print(f"{'implementation':<32}{'seconds':>9}{'CPU s':>8}{'rows/s':>13}{'peak RSS MiB':>14}  "
          f"{'ratio (throughput)':<22}{'target':<10}met?")
    met_all = True
    for key in ("opencem_duckdb", "duckdb", "duckdb_only", "pandas", "opencem_spark", "pyspark"):
        if key not in runs:
            continue
        r = runs[key]
        head = (f"{labels[key]:<32}{r['seconds']:>9.1f}{r['cpu_s']:>8.1f}{r['rows_per_s']:>13,.0f}"
                f"{r['peak_rss_mb']:>14,.0f}")
        lines = []
        for value, what, target, floor in targets.get(key, []):
            if value is None:
                continue
            met = value >= floor
            met_all &= met
            lines.append(f"{value:.2f}{what:<17}{target:<10}{'yes' if met else 'NO'}")
        if key == "opencem_duckdb":
            met = r["peak_rss_mb"] < RSS_LIMIT_MB
            met_all &= met
            lines.append(f"{'peak RSS':<22}{'< 2 GiB':<10}{'yes' if met else 'NO'}")
        print(head + ("  " + lines[0] if lines else ""))
        for line in lines[1:]:
            print(" " * 78 + line)
    if "pandas" in runs:
        alone, ours, pandas = runs["duckdb_only"], runs["opencem_duckdb"], runs["pandas"]
        print(f"\nDuckDB alone on opencem's queries (results dropped, nothing written) reaches "
              f"{ratio('duckdb_only', 'pandas'):.2f}x pandas: the most opencem on DuckDB can reach on this "
              f"machine ({psutil.cpu_count()} cores). Work, in CPU seconds per million rows: opencem "
              f"{ours['cpu_s'] / ours['rows'] * 1e6:.2f}, DuckDB alone {alone['cpu_s'] / alone['rows'] * 1e6:.2f}, "
              f"pandas {pandas['cpu_s'] / pandas['rows'] * 1e6:.2f} (one core).")
    print("\nagreement (keys joined; counts exact; other values within relative 1e-9):")
    for c in checks:
        print("\n".join(describe(c)))
    agree = all(c["agree"] for c in checks)
    print(f"\nall targets met: {'yes' if met_all else 'no'}; all implementations agree: {'yes' if agree else 'NO'}")
    (work / "results.json").write_text(json.dumps({"rows": rows, "runs": runs, "checks": checks}, indent=1, default=str))
    print(f"(results in {work / 'results.json'})")


if __name__ == "__main__":
    main()
