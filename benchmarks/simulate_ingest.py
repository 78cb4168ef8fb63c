"""Simulator and ingest throughput (rows/s, per core, peak RSS), each against a baseline run
here, and the labelled benchmark's instances per fault class.

    .venv/bin/python benchmarks/simulate_ingest.py [--subscribers 1000000] [--days 1]
    .venv/bin/python benchmarks/simulate_ingest.py --scenario benchmark       # instances per class
    .venv/bin/python benchmarks/simulate_ingest.py --days 7 --simulate-only   # 1M x a week: RSS

Every phase runs in its own process so its peak RSS is its own. Baselines, measured in the
same run on the same data because these machines are noisy:
- simulate vs "write floor": only re-writing the simulator's Parquet output (pyarrow, zstd),
  the I/O any generator of these tables must pay;
- ingest of the canonical Parquet tables vs a hand-written DuckDB COPY of the same files into
  date partitions (no validation, no quarantine, no manifest): the practical limit;
- ingest of the vendor PM files is reported as counter values/s.
"""

from __future__ import annotations

import argparse
import resource
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
PY = sys.executable


def measure(args: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in MiB, polled every 50 ms). The CPU
    seconds it used are added to CPU_SECONDS[args[-1]]."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = psutil.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr.read().decode()}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_SECONDS[args[-1]] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, peak / 2**20


CPU_SECONDS: dict[str, float] = {}


def instances(sim: Path) -> list[tuple[str, int, int]]:
    """(fault class, injected faults, labelled cases) from the run's truth, fewest cases first."""
    import duckdb

    con = duckdb.connect()
    return con.execute(f"""
        WITH f AS (SELECT fault_type, count(*) AS faults FROM read_parquet('{sim}/truth/faults.parquet') GROUP BY 1),
             c AS (SELECT fault_type, count(*) AS cases FROM read_parquet('{sim}/truth/cases/*.parquet')
                   WHERE domain <> 'none' GROUP BY 1)
        SELECT fault_type, coalesce(faults, 0), coalesce(cases, 0) FROM f FULL JOIN c USING (fault_type)
        ORDER BY 3, 1""").fetchall()


WRITE_FLOOR = """
import sys, pyarrow.parquet as pq
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for f in sorted(src.rglob('*.parquet')):
    out = dst / f.relative_to(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pq.read_table(f), out, compression='zstd')
"""

DUCKDB_COPY = """
import sys, duckdb
from pathlib import Path
from opencem.schema import TABLES
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
for name, spec in TABLES.items():
    files = sorted(src.glob(f'{name}.parquet')) + sorted(src.glob(f'{name}/*.parquet'))
    if not files:
        continue
    listing = ', '.join(f"'{f}'" for f in files)
    day = f"CAST({spec.time_column} AS DATE)" if spec.time_column else "DATE '2026-01-01'"
    con.execute(f"COPY (SELECT *, {day} AS date FROM read_parquet([{listing}])) TO '{dst / name}' "
                "(FORMAT parquet, COMPRESSION zstd, PARTITION_BY (date))")
"""

INGEST = """
import sys
from pathlib import Path
from opencem.lake import Lake
from opencem.ingest.load import ingest
report = ingest(Lake(Path(sys.argv[1])), [Path(p) for p in sys.argv[2:]])
assert report.count('rejected') == 0, [f.message for f in report.files if f.status == 'rejected']
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=HERE / "out")
    parser.add_argument("--scenario", help="simulate this scenario (file or shipped name); its size unless "
                        "--subscribers/--days are given")
    parser.add_argument("--simulate-only", action="store_true", help="measure the simulator alone (big runs)")
    args = parser.parse_args()
    if args.scenario:
        from opencem.simulate.config import load_scenario

        scenario = load_scenario(args.scenario)
        given = {a.split("=")[0] for a in sys.argv[1:]}
        args.subscribers = args.subscribers if "--subscribers" in given else scenario.subscribers
        args.days = args.days if "--days" in given else scenario.days
    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sim = work / "sim"

    sim_s, sim_mb = measure([PY, "-m", "opencem", "simulate", *(["--scenario", args.scenario] if args.scenario else []),
                             "--subscribers", str(args.subscribers), "--days", str(args.days), "--out", str(sim)])
    sim_cpu = CPU_SECONDS[str(sim)]
    manifest = json.loads((sim / "manifest.json").read_text())
    rows = {k: v for k, v in manifest["rows"].items() if k != "pm_counter_values"}
    records = sum(rows.values())
    pm_values = manifest["rows"]["pm_counter_values"]
    print(f"\nopencem simulate{' --scenario ' + args.scenario if args.scenario else ''}, {args.subscribers:,} "
          f"subscribers x {args.days} day(s): {records:,} records and {pm_values:,} PM counter values in "
          f"{sim_s:.1f} s, {records / sim_s:,.0f} records/s, {records / sim_cpu:,.0f} records per CPU second "
          f"(one core), peak RSS {sim_mb:,.0f} MiB")
    classes = instances(sim)
    print("\n| fault class | injected faults | labelled poor cases | |\n|---|---|---|---|")
    for name, faults, cases in classes:
        print(f"| {name} | {faults:,} | {cases:,} | {'' if cases >= 300 else '**under 300**'} |")
    if args.simulate_only:
        (work / "results.json").write_text(json.dumps({
            "subscribers": args.subscribers, "days": args.days, "scenario": args.scenario, "records": records,
            "simulate": {"seconds": sim_s, "cpu_seconds": sim_cpu, "rows_per_s": records / sim_s,
                         "rows_per_cpu_s": records / sim_cpu, "peak_rss_mb": sim_mb},
            "instances": {n: {"faults": f, "cases": c} for n, f, c in classes}}, indent=1))
        return
    floor_s, floor_mb = measure([PY, "-c", WRITE_FLOOR, str(sim / "tables"), str(work / "floor")])

    ing_s, ing_mb = measure([PY, "-c", INGEST, str(work / "lake_tables"), str(sim / "tables")])
    copy_s, copy_mb = measure([PY, "-c", DUCKDB_COPY, str(sim / "tables"), str(work / "duckdb_copy")])
    pm_s, pm_mb = measure([PY, "-c", INGEST, str(work / "lake_pm"), str(sim / "pm")])
    xml_values = pm_values // 2  # alpha and beta each carry about half the cells
    xml_s, _ = measure([PY, "-c", INGEST, str(work / "lake_xml"), str(sim / "pm" / "alpha")])

    results = {
        "subscribers": args.subscribers, "days": args.days, "records": records, "pm_values": pm_values,
        "simulate": {"seconds": sim_s, "rows_per_s": records / sim_s, "peak_rss_mb": sim_mb,
                     "write_floor_seconds": floor_s, "ratio_to_write_floor": sim_s / floor_s},
        "ingest_tables": {"seconds": ing_s, "rows_per_s": records / ing_s, "peak_rss_mb": ing_mb,
                          "duckdb_copy_seconds": copy_s, "duckdb_copy_peak_rss_mb": copy_mb,
                          "throughput_vs_duckdb_copy": copy_s / ing_s},
        "ingest_pm": {"seconds": pm_s, "values_per_s": pm_values / pm_s, "peak_rss_mb": pm_mb,
                      "xml_only_seconds": xml_s, "xml_values_per_s_approx": xml_values / xml_s},
    }
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nopencem simulate + ingest, {args.subscribers:,} subscribers x {args.days} day(s): "
          f"{records:,} records, {pm_values:,} PM counter values")
    print(f"{'phase':<34}{'seconds':>9}{'rows/s':>14}{'peak RSS MiB':>14}")
    print(f"{'simulate (all tables + PM files)':<34}{sim_s:>9.1f}{records / sim_s:>14,.0f}{sim_mb:>14,.0f}")
    print(f"{'  baseline: Parquet write floor':<34}{floor_s:>9.1f}{records / floor_s:>14,.0f}{floor_mb:>14,.0f}")
    print(f"{'ingest canonical Parquet tables':<34}{ing_s:>9.1f}{records / ing_s:>14,.0f}{ing_mb:>14,.0f}")
    print(f"{'  baseline: DuckDB COPY partitioned':<34}{copy_s:>9.1f}{records / copy_s:>14,.0f}{copy_mb:>14,.0f}")
    print(f"{'ingest vendor PM files (values)':<34}{pm_s:>9.1f}{pm_values / pm_s:>14,.0f}{pm_mb:>14,.0f}")
    print(f"ratios: simulate / write floor = {sim_s / floor_s:.2f}x the time; "
          f"ingest throughput = {copy_s / ing_s:.2f}x DuckDB COPY; "
          f"PM XML ~{xml_values / xml_s:,.0f} values/s")
    print(f"(results in {work / 'results.json'})")


if __name__ == "__main__":
    main()
