"""Phases of benchmarks/evaluate.py, each run in its own process by that script.

    .venv/bin/python benchmarks/_evaluate_phases.py PHASE WORKDIR [ARGS]

Phases: ``generate ROWS SEED``; ``opencem ENGINE``; ``duckdb``; ``duckdb_only``; ``pandas DAYS``;
``pyspark``; ``check OPENCEM_LABEL BASELINE``. A timed phase prints one JSON line: ``seconds``
is the work itself, from after imports (and after the Spark session is up) to the results
written as Parquet (``duckdb_only`` writes nothing), so interpreter and JVM start-up are not
counted against either side.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

# The fixed KPI set, the same in every implementation below.
DEFINITIONS = """\
kpis:
  - {name: sessions, source: xdr_data, expr: "count(*)"}
  - {name: http_success_pct, source: xdr_data, expr: "100 * count_if(http_status BETWEEN 200 AND 399) / count(*)"}
  - {name: dl_throughput_avg_kbps, source: xdr_data, expr: "avg(throughput_dl_kbps)"}
  - {name: dl_volume_mb, source: xdr_data, expr: "sum(bytes_dl) / 1e6"}
  - {name: rtt_ran_p95_ms, source: xdr_data, expr: "percentile(tcp_rtt_ran_ms, 0.95)"}
  - {name: users, source: xdr_data, expr: "count(distinct subscriber_id)"}
cubes:
  - {dimensions: [cell_id], grains: [15min]}
  - {dimensions: [subscriber_id], grains: [day]}
"""
KPIS = ("sessions", "http_success_pct", "dl_throughput_avg_kbps", "dl_volume_mb", "rtt_ran_p95_ms", "users")
EXACT = {"sessions", "users"}  # counts: must be equal, not just close
# cube table -> (dimension column in the result, xdr_data column it comes from, bucket seconds)
CUBES = {"cube_cell_15min": ("cell_id", "cell_id", 900), "cube_subscriber_day": ("subscriber_id", "subscriber_id", 86_400)}

FIRST_DAY = datetime(2026, 3, 2, tzinfo=UTC)
CELLS = 20_000
SUBSCRIBERS = 1_000_000
DAYS = 2
CHUNK_ROWS = 1_000_000  # one lake file per chunk, like a probe's periodic export
NULL_SHARE = 0.01
DEVICES = [f"{brand} {model}" for brand in ("Apple iPhone", "Samsung Galaxy", "Xiaomi", "Oppo", "Huawei")
           for model in ("12", "13", "14", "15", "A54", "S23", "Note 12")]
STATUS = (200, 304, 404, 500, 0)
STATUS_SHARE = (0.885, 0.05, 0.02, 0.01, 0.035)
# Session starts by hour of day (UTC): quiet nights, evening peak.
HOURLY = [0.8, 0.5, 0.35, 0.3, 0.35, 0.6, 1.2, 2.2, 3.0, 3.2, 3.3, 3.4,
          3.6, 3.5, 3.4, 3.5, 3.8, 4.2, 4.6, 5.0, 5.2, 4.8, 3.6, 2.0]


def cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process and its live children (the
    Spark JVM): on a shared machine a steadier measure of the work than wall time."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def timed(started: float, cpu_started: float, **more) -> dict:
    return {"seconds": time.perf_counter() - started, "cpu_s": cpu_s() - cpu_started, **more}


def lake_files(lake_root: Path) -> list[Path]:
    """The committed xdr_data files (every baseline reads exactly what opencem reads)."""
    manifest = json.loads((lake_root / "_manifest.json").read_text())
    return [lake_root / f["path"] for f in manifest["tables"]["xdr_data"]]


def outputs(work: Path, name: str) -> Path:
    out = work / "results" / name
    out.mkdir(parents=True, exist_ok=True)
    return out


# -- data ----------------------------------------------------------------------------------
class XdrGenerator:
    """Deterministic xdr_data sessions: heavy-tailed cell traffic and subscriber activity,
    each subscriber mostly on a home cell, a diurnal profile, ~1% nulls in every metric."""

    def __init__(self, seed: int):
        import numpy as np

        from opencem.simulate.mobile import APPS, HOSTS

        self.rng = rng = np.random.default_rng(seed)
        # Cells: ~6,700 three-sector sites, a third of the cells 5G.
        site, sector = np.arange(CELLS) // 3, np.arange(CELLS) % 3 + 1
        self.is_5g = rng.random(CELLS) < 0.33
        prefix = np.char.add(np.char.add("C", np.char.zfill(site.astype(str), 5)), "-")
        self.cell_names = np.char.add(prefix, np.char.add(sector.astype(str), np.where(self.is_5g, "-5G", "-4G")))
        weight = rng.lognormal(0, 1.0, CELLS)
        self.cell_p = weight / weight.sum()
        self.cell_load_pct = rng.beta(2, 3, CELLS) * 100
        activity = rng.lognormal(0, 1.2, SUBSCRIBERS)
        self.subscriber_p = activity / activity.sum()
        self.home_cell = rng.choice(CELLS, SUBSCRIBERS, p=self.cell_p)
        self.handset = rng.integers(0, len(DEVICES), SUBSCRIBERS)
        self.apps, self.hosts = [a[0] for a in APPS], HOSTS
        share = np.array([a[1] for a in APPS])
        self.app_p = share / share.sum()
        self.app_median_bytes = np.array([a[2] for a in APPS])
        self.app_demand_kbps = np.array([a[3] for a in APPS], float)
        self.hosts_per_app = np.array([len(a[4]) for a in APPS])
        self.first_host = np.cumsum([0, *self.hosts_per_app])[:-1]

    def start_times_ms(self, day_start_ms: int, n: int):
        import numpy as np

        hour_p = np.array(HOURLY) / sum(HOURLY)
        hour = self.rng.choice(24, n, p=hour_p)
        return np.sort(day_start_ms + hour * 3_600_000 + self.rng.integers(0, 3_600_000, n))

    def sessions(self, start_ms, first_id: int):
        """A canonical xdr_data table of sessions starting at ``start_ms`` (epoch ms, UTC)."""
        import numpy as np
        import pyarrow as pa

        from opencem.schema import TABLES
        from opencem.simulate.ids import ids, take

        rng, n = self.rng, len(start_ms)
        sub = rng.choice(SUBSCRIBERS, n, p=self.subscriber_p)
        roaming = rng.random(n) < 0.3  # away from the home cell
        cell = np.where(roaming, rng.choice(CELLS, n, p=self.cell_p), self.home_cell[sub])
        app = rng.choice(len(self.app_p), n, p=self.app_p)
        host = self.first_host[app] + (rng.random(n) * self.hosts_per_app[app]).astype(int)
        status = np.array(STATUS, np.int16)[rng.choice(len(STATUS), n, p=STATUS_SHARE)]
        answered = status != 0
        sinr = np.clip(rng.normal(12, 7, n), -23, 40)
        load = np.clip(self.cell_load_pct[cell] + rng.normal(0, 10, n), 0, 100)
        capacity = (np.where(self.is_5g[cell], 300_000, 60_000) * (1 - load / 110)
                    * np.clip((sinr + 10) / 40, 0.02, 1))
        thp = np.minimum(capacity, self.app_demand_kbps[app]) * rng.lognormal(0, 0.3, n)
        rtt_ran = rng.lognormal(np.log(25), 0.6, n) * (1 + load / 50)
        rtt_net = rng.lognormal(np.log(20), 0.5, n)
        bytes_dl = np.where(answered, rng.lognormal(np.log(self.app_median_bytes[app]), 1.0), 0)
        transfer_ms = bytes_dl * 8 / np.maximum(thp, 1)
        response = rtt_ran + rtt_net + rng.lognormal(np.log(80), 0.5, n)
        page_load = response + 4 * (rtt_ran + rtt_net) + transfer_ms

        def metric(values, dtype, missing=False):
            """About NULL_SHARE of the values missing, as probes drop fields."""
            return pa.array(values.astype(dtype), mask=missing | (rng.random(n) < NULL_SHARE))

        return pa.table({
            "session_id": ids("D", np.arange(first_id, first_id + n), 12),
            "subscriber_id": ids("S", sub, 7),
            "start_time": pa.array(start_ms, pa.timestamp("ms", tz="UTC")),
            "cell_id": take(self.cell_names, cell),
            "technology": take(["4G", "5G"], self.is_5g[cell].astype(int)),
            "device_model": take(DEVICES, self.handset[sub]),
            "rsrp_dbm": metric(np.clip(rng.normal(-95, 12, n), -156, -31).round(1), np.float32),
            "sinr_db": metric(sinr.round(1), np.float32),
            "cqi": metric(np.clip((sinr + 8) / 3, 0, 15), np.int8),
            "prb_load_pct": metric(load.round(1), np.float32),
            "app": take(self.apps, app),
            "host": take(self.hosts, host),
            "bytes_dl": metric(bytes_dl, np.int64),
            "bytes_ul": metric(bytes_dl * 0.08 * rng.lognormal(0, 0.5, n), np.int64),
            "duration_ms": metric(np.where(answered, transfer_ms + rng.exponential(2000, n), response), np.int32),
            "throughput_dl_kbps": metric(np.where(answered, thp, 0).round(1), np.float32),
            "tcp_rtt_ran_ms": metric(rtt_ran.round(1), np.float32),
            "tcp_rtt_internet_ms": metric(rtt_net.round(1), np.float32),
            "http_status": metric(status, np.int16),
            "response_time_ms": metric(response.round(1), np.float32),
            "page_load_ms": metric(page_load.round(0), np.float32, missing=(app != 0) | ~answered),
        }).cast(TABLES["xdr_data"].schema)


def generate(work: Path, rows: int, seed: int) -> dict:
    """Write ``rows`` sessions over DAYS UTC days to the lake at WORKDIR/lake, CHUNK_ROWS a file."""
    from opencem.lake import Lake
    from opencem.schema import TABLES

    gen = XdrGenerator(seed)
    written = 0
    with Lake(work / "lake").transaction() as txn:
        for day in range(DAYS):
            start_ms = gen.start_times_ms(int(FIRST_DAY.timestamp() * 1000) + day * 86_400_000,
                                          rows // DAYS + (day < rows % DAYS))
            for lo in range(0, len(start_ms), CHUNK_ROWS):
                chunk = start_ms[lo:lo + CHUNK_ROWS]
                txn.append(TABLES["xdr_data"], gen.sessions(chunk, written))
                written += len(chunk)
    return {"rows": written}


# -- implementations -----------------------------------------------------------------------
def catalog(work: Path, lake):
    """The fixed KPI set and the two cubes, with the standard library's dimensions."""
    from opencem.indicators.catalog import library_files, load_catalog

    defs = work / "definitions.yaml"
    defs.write_text(DEFINITIONS)
    dims = [p for p in library_files() if p.name == "dimensions.yaml"]
    return load_catalog(lake.tables, [*dims, defs], library=False)


def run_opencem(work: Path, engine: str) -> dict:
    from opencem.indicators.evaluate import evaluate
    from opencem.lake import Lake

    lake = Lake(work / "lake")
    if engine == "spark":
        from opencem.engines.spark import spark_session
        spark_session()  # JVM start-up is not the engine's work; evaluate() reuses this session
    started, cpu_started = time.perf_counter(), cpu_s()
    report = evaluate(lake, catalog(work, lake), engine=engine, full=True)
    return timed(started, cpu_started, cubes={c.table: {"rows": c.rows, "seconds": c.seconds} for c in report.cubes})


DUCKDB_CUBE = """
  SELECT {bucket} AS period_start, {column} AS {dimension},
         count(*)::DOUBLE AS sessions,
         100.0 * count(*) FILTER (http_status BETWEEN 200 AND 399) / count(*) AS http_success_pct,
         avg(throughput_dl_kbps::DOUBLE) AS dl_throughput_avg_kbps,
         sum(bytes_dl) / 1e6 AS dl_volume_mb,
         quantile_cont(tcp_rtt_ran_ms::DOUBLE, 0.95) AS rtt_ran_p95_ms,
         count(DISTINCT subscriber_id)::DOUBLE AS users
  FROM read_parquet([{files}])
  GROUP BY ALL
"""
BUCKETS = {"cube_cell_15min": "time_bucket(INTERVAL 15 MINUTE, start_time)",
           "cube_subscriber_day": "date_trunc('day', start_time)"}


def run_duckdb(work: Path) -> dict:
    """One hand-written query per cube over all files: the practical limit."""
    import duckdb

    files = ", ".join(f"'{p}'" for p in lake_files(work / "lake"))
    out = outputs(work, "duckdb")
    started, cpu_started = time.perf_counter(), cpu_s()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # buckets and days in UTC
    for table, (dimension, column, _) in CUBES.items():
        query = DUCKDB_CUBE.format(bucket=BUCKETS[table], column=column, dimension=dimension, files=files)
        con.execute(f"COPY ({query}) TO '{out / table}.parquet' (FORMAT parquet, COMPRESSION zstd)")
    return timed(started, cpu_started)


def run_duckdb_only(work: Path) -> dict:
    """DuckDB alone on opencem's own queries: the SQL ``evaluate`` renders, run per UTC day with
    the results fetched as Arrow and dropped (nothing converted, written or committed). This is
    the engine's share of opencem's time; the rest is opencem's. It bounds what any tuning
    outside the engine could reach on this machine."""
    from opencem.engines.duckdb import DuckDBRunner
    from opencem.indicators.evaluate import plans_for
    from opencem.indicators.render import DuckDBRenderer
    from opencem.lake import Lake

    lake = Lake(work / "lake")
    started, cpu_started = time.perf_counter(), cpu_s()
    plans = plans_for(catalog(work, lake), lake.tables)
    run = DuckDBRunner()
    files = lake.files("xdr_data")
    days = sorted({f.date for f in files})
    for plan in plans:
        sql = DuckDBRenderer().render(plan)
        for day in days:
            run.register_files("xdr_data", [lake.root / f.path for f in files if f.date == day],
                               lake.tables["xdr_data"].schema)
            run.run(sql)
    return timed(started, cpu_started)


def run_pandas(work: Path, days: int) -> dict:
    """What an analyst would write: read the columns, floor the times, group, aggregate."""
    import pandas as pd

    manifest = json.loads((work / "lake" / "_manifest.json").read_text())["tables"]["xdr_data"]
    chosen = sorted({f["date"] for f in manifest})[:days]
    files = [work / "lake" / f["path"] for f in manifest if f["date"] in chosen]
    rows = sum(f["rows"] for f in manifest if f["date"] in chosen)
    out = outputs(work, "pandas")
    started, cpu_started = time.perf_counter(), cpu_s()
    df = pd.read_parquet(files, columns=["start_time", "cell_id", "subscriber_id", "http_status",
                                         "throughput_dl_kbps", "bytes_dl", "tcp_rtt_ran_ms"])
    # float32 -> float64 so means and percentiles are computed in double precision, as SQL does
    df[["throughput_dl_kbps", "tcp_rtt_ran_ms"]] = df[["throughput_dl_kbps", "tcp_rtt_ran_ms"]].astype("float64")
    df["http_ok"] = df["http_status"].between(200, 399)
    for table, (dimension, column, seconds) in CUBES.items():
        period = df["start_time"].dt.floor("15min" if seconds == 900 else "D").rename("period_start")
        g = df.groupby([period, df[column].rename(dimension)], sort=False)
        sessions = g.size()
        result = pd.DataFrame({
            "sessions": sessions.astype("float64"),
            "http_success_pct": 100.0 * g["http_ok"].sum() / sessions,
            "dl_throughput_avg_kbps": g["throughput_dl_kbps"].mean(),
            "dl_volume_mb": g["bytes_dl"].sum(min_count=1) / 1e6,  # all-null group -> null, as SQL
            "rtt_ran_p95_ms": g["tcp_rtt_ran_ms"].quantile(0.95, interpolation="linear"),
            "users": g["subscriber_id"].nunique().astype("float64"),
        })
        result.reset_index().to_parquet(out / f"{table}.parquet", compression="zstd", index=False)
    return timed(started, cpu_started, rows=rows, days=chosen)


def run_pyspark(work: Path) -> dict:
    """A straightforward PySpark DataFrame job on the session opencem uses (same settings)."""
    from pyspark.sql import functions as F

    from opencem.engines.spark import spark_session

    spark = spark_session()
    files = [f"file:{p}" for p in lake_files(work / "lake")]
    out = outputs(work, "pyspark")
    started, cpu_started = time.perf_counter(), cpu_s()
    df = spark.read.parquet(*files)
    ok = F.col("http_status").between(200, 399)
    for table, (dimension, column, seconds) in CUBES.items():
        period = (F.window("start_time", "15 minutes").start if seconds == 900
                  else F.date_trunc("day", "start_time")).alias("period_start")
        result = df.groupBy(period, F.col(column).alias(dimension)).agg(
            F.count("*").cast("double").alias("sessions"),
            (100.0 * F.count(F.when(ok, 1)) / F.count("*")).alias("http_success_pct"),
            F.avg(F.col("throughput_dl_kbps").cast("double")).alias("dl_throughput_avg_kbps"),
            (F.sum("bytes_dl") / 1e6).alias("dl_volume_mb"),
            F.percentile(F.col("tcp_rtt_ran_ms").cast("double"), 0.95).alias("rtt_ran_p95_ms"),
            F.count_distinct("subscriber_id").cast("double").alias("users"),
        )
        result.write.mode("overwrite").option("compression", "zstd").parquet(str(out / table))
    return timed(started, cpu_started)


# -- agreement -----------------------------------------------------------------------------
def check(work: Path, label: str, baseline: str) -> dict:
    """Join opencem's committed cube tables to a baseline's output on the keys: keys missing on
    either side, counts that differ at all, other values beyond a relative 1e-9, nulls that differ."""
    import duckdb

    manifest = json.loads((work / "lake" / "_manifest.json").read_text())
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    report = {"opencem": label, "baseline": baseline, "cubes": {}}
    for table, (dimension, _, _) in CUBES.items():
        ours = ", ".join(f"'{work / 'lake' / f['path']}'" for f in manifest["tables"][table])
        base = outputs(work, baseline) / table
        theirs = f"'{base}/*.parquet'" if base.is_dir() else f"'{base}.parquet'"
        if baseline == "pandas":  # pandas may have covered fewer days: compare those
            days = "(SELECT DISTINCT date_trunc('day', period_start) FROM read_parquet(" + theirs + "))"
            day_filter = f"WHERE date_trunc('day', period_start) IN {days}"
        else:
            day_filter = ""

        def side(source: str, where: str = "") -> str:
            values = ", ".join(f"CASE WHEN isnan({k}::DOUBLE) THEN NULL ELSE {k}::DOUBLE END AS {k}" for k in KPIS)
            return (f"SELECT epoch_ms(period_start) AS t, {dimension} AS d, {values} "
                    f"FROM read_parquet([{source}]) {where}")

        diffs = []
        for k in KPIS:
            if k in EXACT:
                diffs.append(f"count(*) FILTER (a.{k} IS DISTINCT FROM b.{k}) AS {k}_differ")
            else:
                diffs.append(f"max(abs(a.{k} - b.{k}) / nullif(greatest(abs(a.{k}), abs(b.{k})), 0)) AS {k}_rel")
                diffs.append(f"count(*) FILTER ((a.{k} IS NULL) <> (b.{k} IS NULL)) AS {k}_null_differ")
        row = con.execute(f"""
            WITH a AS ({side(ours, day_filter)}), b AS ({side(theirs)})
            SELECT count(*) FILTER (a.t IS NULL) AS only_baseline, count(*) FILTER (b.t IS NULL) AS only_opencem,
                   count(*) FILTER (a.t IS NOT NULL AND b.t IS NOT NULL) AS matched, {', '.join(diffs)}
            FROM a FULL OUTER JOIN b ON a.t = b.t AND a.d = b.d""").fetchone()
        names = [d[0] for d in con.description]
        result = dict(zip(names, row))
        rel = [result[f"{k}_rel"] or 0.0 for k in KPIS if k not in EXACT]
        bad = (result["only_baseline"] or result["only_opencem"] or max(rel) >= 1e-9
               or any(result[n] for n in names if n.endswith("differ")) or not result["matched"])
        report["cubes"][table] = {**result, "max_rel_diff": max(rel), "agree": not bad}
    report["agree"] = all(c["agree"] for c in report["cubes"].values())
    return report


def main() -> None:
    phase, work = sys.argv[1], Path(sys.argv[2])
    args = sys.argv[3:]
    if phase == "generate":
        result = generate(work, int(args[0]), int(args[1]))
    elif phase == "opencem":
        result = run_opencem(work, args[0])
    elif phase == "duckdb":
        result = run_duckdb(work)
    elif phase == "duckdb_only":
        result = run_duckdb_only(work)
    elif phase == "pandas":
        result = run_pandas(work, int(args[0]))
    elif phase == "pyspark":
        result = run_pyspark(work)
    elif phase == "check":
        result = check(work, args[0], args[1])
    else:
        raise SystemExit(f"unknown phase {phase}")
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
