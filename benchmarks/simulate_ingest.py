"""Simulator and ingest throughput (rows/s, peak RSS), each against a baseline run here.

    .venv/bin/python benchmarks/simulate_ingest.py [--subscribers 1000000] [--days 1]

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
    """Run a command; return (wall seconds, peak RSS in MiB, polled every 50 ms)."""
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
    return elapsed, peak / 2**20


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
    args = parser.parse_args()
    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sim = work / "sim"

    sim_s, sim_mb = measure([PY, "-m", "opencem", "simulate", "--subscribers", str(args.subscribers),
                             "--days", str(args.days), "--out", str(sim)])
    manifest = json.loads((sim / "manifest.json").read_text())
    rows = {k: v for k, v in manifest["rows"].items() if k != "pm_counter_values"}
    records = sum(rows.values())
    pm_values = manifest["rows"]["pm_counter_values"]
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
