"""The stream on Spark Structured Streaming: the streamed cubes kept up to date per window with
the same compiled plans as ``opencem evaluate --engine spark`` (``indicators/render.py``'s Spark
renderer), beyond one machine (docs/stream-spark.md).

One streaming query reads every source table the streamed cubes read (a file source per table
over the landing folder, or a Kafka topic per table: :func:`table_stream`, the one place the
source is chosen) and, for PM counters, the PM files (read with ingest's readers, as the DuckDB
stream reads them). Each micro-batch runs in ``foreachBatch`` (:class:`CubeBatches`):

    records -> lateness (per-source watermark, record by record in arrival order) and dedup by
    record id -> kept copies written under the batch id -> every changed span evaluated again
    from all its records -> its rows replace the span's file of that definition version
    -> the batch-id log entry (the commit)

so a batch Spark runs again after a crash replaces its files and never doubles them, and one
already in the log is skipped. The per-subscriber counters are a second query with Spark's
stateful operator (:mod:`.spark_counters`).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..engines.spark import EngineError, hadoop_path, quiet_pandas, register_arrow, register_files, run, spark_schema
from ..indicators.catalog import Catalog
from ..indicators.evaluate import _lookups, grid_of_cells
from ..indicators.render import SparkRenderer, grid_table
from ..indicators.spec import GRAINS
from ..lake import Lake
from ..schema import Table
from .sources import PMFile, StreamError
from .spark_sources import FileSource, KafkaSource, record_streams, table_stream
from .spark_store import SparkStreamStore, write_parquet
from .windows import StreamCube, stream_cubes

PM = "pm_counters"
_uri = hadoop_path


# -- one micro-batch ---------------------------------------------------------------------------
@dataclass
class SparkStreamConfig:
    window: str = "15min"
    lateness_s: int = 3600
    cubes: list[str] | None = None  # cube tables; default: the cubes marked stream: true
    kpis: list[str] | None = None  # only these KPIs (tests)
    trigger_s: float = 1.0  # how often a running query looks for new files or messages
    until_finished: bool = False  # stop once the feed has ended (Kafka: once caught up) and all is taken
    checkpoint: Path | None = None  # default OUT/checkpoint
    dictionaries: Path | None = None  # the workspace's counter dictionaries, for PM files
    counter: object | None = None  # a spark_counters.SubscriberCount: the onsets query

    def settings(self, cubes: list[StreamCube]) -> dict:
        counter = self.counter.settings() if self.counter is not None else None
        return {"window": self.window, "lateness_s": self.lateness_s, "cubes": {c.table: c.version for c in cubes},
                "counter": counter}


@dataclass
class SparkStreamReport:
    out: Path
    batches: int = 0  # micro-batches run (not skipped as committed)
    records: int = 0  # records delivered in them
    rows_written: int = 0
    seconds: float = 0.0
    cubes: list[str] = field(default_factory=list)


class CubeBatches:
    """The ``foreachBatch`` function of the cube query (see the module docstring)."""

    def __init__(self, store: SparkStreamStore, cubes: list[StreamCube], cat: Catalog, tables: dict[str, Table],
                 config: SparkStreamConfig, lake: Lake | None, report: SparkStreamReport,
                 progress: Callable[[SparkStreamReport], None] | None = None):
        self.store, self.cubes, self.cat, self.tables, self.config = store, cubes, cat, tables, config
        self.report, self.progress = report, progress
        self.sources = sorted({s for c in cubes for s in c.plan.sources})
        self.lookups = sorted({n for c in cubes for n in _lookups(c.plan)} | ({"cells"} if PM in self.sources else set()))
        self.window_ms = GRAINS[config.window] * 1000
        self.fine_ms = min(c.span_s for c in cubes) * 1000  # spans are whole multiples of it
        self.part_ms = max(c.span_s for c in cubes) * 1000  # records are filed per span of this length
        self.lake_files = {}
        if lake is not None:
            manifest = lake.manifest()
            self.lake_files = {n: lake.paths(lake.files(n, manifest)) for n in self.lookups}
        self.pm_keys: dict[str, int] | None = None  # load keys of the PM files taken, from the log

    def batch(self, frame, batch_id: int) -> None:
        if self.store.is_committed(batch_id):
            return  # run before a crash, committed before Spark's checkpoint was: done
        started = time.perf_counter()
        spark = frame.sparkSession
        before = self.store.last_entry(batch_id) or {}
        watermarks = dict(before.get("watermarks", {}))
        counts: dict[str, dict[str, int]] = {}
        frame = frame.persist()
        try:
            present = {r["_table"]: r["count"] for r in frame.groupBy("_table").count().collect()}
            for name in self.lookups:  # snapshots first: the batch's PM files are keyed to its cells
                if present.get(name) and self.tables[name].is_snapshot:
                    self.store.write_snapshot(name, batch_id, _last_part(frame, name))
            names = [n for n in self.sources if present.get(n)]
            pm_rows, new_keys = None, {}
            if present.get("pm_files"):
                pm_rows, new_keys = self._pm(spark, frame, batch_id, counts)
            timing = {"read_s": time.perf_counter() - started}
            took = time.perf_counter()
            changed: dict[str, set[int]] = {}
            if names or pm_rows is not None:
                got, changed = self._intake(spark, frame, names, pm_rows, batch_id, watermarks)
                for name, c in got.items():
                    _add(counts, name, c)
            timing["intake_s"] = time.perf_counter() - took
            written, spans_done = 0, {}
            for cube in self.cubes:
                fine = set().union(*[changed.get(s, set()) for s in cube.plan.sources])
                spans = {f * self.fine_ms // (cube.span_s * 1000) for f in fine}
                if spans:
                    took = time.perf_counter()
                    written += self._evaluate(spark, cube, spans, batch_id)
                    spans_done[cube.table] = sorted(spans)
                    timing[f"{cube.table}_s"] = time.perf_counter() - took
        finally:
            frame.unpersist()
        self.store.commit(batch_id, {"counts": counts, "watermarks": watermarks, "pm_files": new_keys,
                                     "spans": spans_done, "rows_written": written,
                                     "seconds": round(time.perf_counter() - started, 3),
                                     "timing": {k: round(v, 3) for k, v in timing.items()}})
        if self.pm_keys is not None:
            self.pm_keys.update(new_keys)
        self.report.batches += 1
        self.report.records += sum(c.get("delivered", 0) for c in counts.values())
        self.report.rows_written += written
        if self.progress:
            self.progress(self.report)

    # -- intake: lateness and dedup, as the DuckDB stream judges them (state.py: add) ---------
    def _narrow(self, frame, name: str, envelope):
        """One table's rows of the envelope with what intake needs: record id, columns filled,
        event time (epoch ms), the part it came in and its place there, the record as JSON."""
        from pyspark.sql import functions as F

        spec = self.tables[name]
        c = lambda x: F.col(f"`{name}`.`{x}`")  # noqa: E731
        rid = F.concat_ws("|", *[F.coalesce(c(k).cast("string"), F.lit("")) for k in spec.keys])
        structs = [F.col(m) if m == name else F.lit(None).cast(envelope[m].dataType).alias(m) for m in self.structs]
        return frame.select("_table", *structs, rid.alias("_id"),
                            sum(c(x).isNotNull().cast("int") for x in spec.schema.names).alias("_filled"),
                            F.unix_millis(c(spec.time_column)).alias("_t"), c("_part").alias("_part"),
                            c("_order").alias("_order"), c("_row").alias("_row"),
                            F.to_json(F.struct(*[c(x).alias(x) for x in spec.schema.names])).alias("_json"))

    def _intake(self, spark, frame, names: list[str], pm_rows, batch_id: int, watermarks: dict):
        """Take the batch's records of every table at once; returns the counts per table and the
        fine spans of the copies kept or replaced (``watermarks`` is advanced in place)."""
        from functools import reduce

        from pyspark.sql import Window
        from pyspark.sql import functions as F

        envelope = frame.schema
        self.structs = [n for n in self.sources if n in envelope.names]
        parts = [self._narrow(frame.where(F.col("_table") == n), n, envelope) for n in names]
        if pm_rows is not None:
            fields = envelope[PM].dataType.fields  # the envelope's struct, field by field (nullability differs)
            pm = pm_rows.select(F.lit(PM).alias("_table"),
                                F.struct(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in fields]).alias(PM))
            parts.append(self._narrow(pm, PM, envelope))
        inc = reduce(lambda a, b: a.unionByName(b), parts)
        # Parts (files, topic-partitions) in arrival order: the watermark before each part is the
        # source's so far; within a part it advances record by record.
        listing = (inc.groupBy("_table", "_order", "_part")
                   .agg(F.max("_t").alias("m"), F.count(F.lit(1)).alias("n"),
                        F.collect_set(F.expr(f"_t div {self.part_ms}")).alias("s")).collect())
        ranks, delivered, touched = [], {}, {}
        for rank, p in enumerate(sorted(listing, key=lambda p: (p["_table"], p["_order"], p["_part"]))):
            table = p["_table"]
            ranks.append((table, p["_part"], rank, watermarks.get(table)))
            delivered[table] = delivered.get(table, 0) + p["n"]
            touched.setdefault(table, set()).update(p["s"])
            if p["m"] is not None:
                watermarks[table] = max(watermarks.get(table, p["m"]), p["m"])
        ranks = spark.createDataFrame(ranks, "_table string, _part string, _rank int, _prev long")
        within = Window.partitionBy("_table", "_part").orderBy("_row").rowsBetween(Window.unboundedPreceding, -1)
        w, lateness = self.window_ms, self.config.lateness_s * 1000
        inc = (inc.join(F.broadcast(ranks), ["_table", "_part"])
               .withColumn("_wm", F.greatest(F.col("_prev"), F.max("_t").over(within)))
               .withColumn("_late", F.col("_t").isNull() | F.coalesce(
                   F.expr(f"_t - pmod(_t, {w}) + {w} + {lateness} <= _wm"), F.lit(False))))
        first = Window.partitionBy("_table", "_id").orderBy(F.col("_filled").desc(), "_rank", "_row")
        kept = self._kept(spark, touched, batch_id)
        best = inc.where(~F.col("_late")).withColumn("_n", F.row_number().over(first)).where("_n = 1").drop("_n")
        win = (best.join(kept, ["_table", "_id"], "left").where(F.col("_kf").isNull() | (F.col("_filled") > F.col("_kf")))
               .withColumn("_update", F.col("_kf").isNotNull()).persist())
        late = None
        try:
            got = {r["_table"]: r for r in win.groupBy("_table").agg(
                F.count(F.lit(1)).alias("n"), F.count_if("_update").alias("u"),
                F.collect_set(F.expr(f"_t div {self.fine_ms}")).alias("s")).collect()}
            if got:
                (win.select(F.col("_table").alias("table"), F.expr(f"_t div {self.part_ms}").alias("span"), *self.structs,
                            "_id", "_filled", "_t")
                 .write.mode("overwrite").partitionBy("table", "span").parquet(_uri(self.store.records_dir(batch_id))))
            after = (kept.unionByName(win.select("_table", "_id", F.col("_filled").alias("_kf")))
                     .groupBy("_table", "_id").agg(F.max("_kf").alias("_kf")))
            late = (inc.where("_late").join(after, ["_table", "_id"], "left")
                    .join(self._late_log(spark, batch_id), ["_table", "_id"], "left")
                    .where((F.col("_kf").isNull() | (F.col("_filled") > F.col("_kf")))
                           & (F.col("_lf").isNull() | (F.col("_filled") > F.col("_lf"))))
                    .withColumn("_n", F.row_number().over(first)).where("_n = 1")
                    .select(F.col("_table").alias("source"), F.col("_id").alias("record_id"),
                            F.expr("timestamp_millis(_t)").alias("event_time"),
                            F.expr(f"timestamp_millis(_t - pmod(_t, {w}))").alias("window_start"),
                            F.expr("timestamp_millis(_wm)").alias("watermark"), F.col("_filled").alias("filled"),
                            F.col("_json").alias("record"))
                    .persist())
            late_n = {r["source"]: r["count"] for r in late.groupBy("source").count().collect()}
            if late_n:
                late.write.mode("overwrite").parquet(_uri(self.store.late_dir(batch_id)))
        finally:
            win.unpersist()
            if late is not None:
                late.unpersist()
        counts, changed = {}, {}
        for table, n in delivered.items():
            kept_n, updates = (got[table]["n"], got[table]["u"]) if table in got else (0, 0)
            late_t = late_n.get(table, 0)
            counts[table] = {"delivered": n, "accepted": kept_n - updates, "updates": updates, "late": late_t,
                             "duplicates": n - kept_n - late_t}
            changed[table] = set(got[table]["s"]) if table in got else set()
        return counts, changed

    def _kept(self, spark, touched: dict[str, set[int]], batch_id: int):
        """Per table and record id, the most filled copy kept by the committed batches (in the
        spans the batch touches)."""
        from functools import reduce

        from pyspark.sql import functions as F

        frames = []
        for table, spans in sorted(touched.items()):
            files = self.store.record_files(table, before=batch_id, spans=spans)
            if files:
                frames.append(spark.read.schema("_id string, _filled int").parquet(*map(_uri, files))
                              .select(F.lit(table).alias("_table"), "_id", "_filled"))
        if not frames:
            return spark.createDataFrame([], "_table string, _id string, _kf int")
        return (reduce(lambda a, b: a.unionByName(b), frames)
                .groupBy("_table", "_id").agg(F.max("_filled").alias("_kf")))

    def _late_log(self, spark, batch_id: int):
        from pyspark.sql import functions as F

        files = self.store.late_files(before=batch_id)
        if not files:
            return spark.createDataFrame([], "_table string, _id string, _lf int")
        return (spark.read.schema("source string, record_id string, filled int").parquet(*map(_uri, files))
                .groupBy(F.col("source").alias("_table"), F.col("record_id").alias("_id"))
                .agg(F.max("filled").alias("_lf")))

    # -- PM files: ingest's readers, on the driver (as the DuckDB stream reads them) ---------
    def _pm(self, spark, frame, batch_id: int, counts: dict):
        import gzip

        from .pm import read_pm_files

        if self.pm_keys is None:
            self.pm_keys = {}
            for b in self.store.committed():
                if b < batch_id:
                    self.pm_keys.update(self.store.entry(b).get("pm_files", {}))
        got = frame.where("_table = 'pm_files'").select("pm_files.*").collect()
        files = []
        for r in got:
            mtime = r["mtime"].timestamp() * 1e9 if r["mtime"] is not None else 0
            if r["path"] and r["path"].startswith("file:") and os.path.exists(r["path"][5:]):
                mtime = os.stat(r["path"][5:]).st_mtime_ns  # the DuckDB stream's order: mtime (ns), then name
            vendor, _, name = r["token"].removeprefix("pm/").partition("/")
            data = gzip.decompress(r["content"]) if r["gzip"] else bytes(r["content"])
            files.append((mtime, r["token"], PMFile(vendor, name, data)))
        log = _PMLog(self.tables, self.pm_keys)
        cells = self.store.snapshot("cells", batch_id)
        if cells is None and self.lake_files.get("cells"):
            import pyarrow.parquet as pq

            cells = pa.concat_tables([pq.read_table(p) for p in self.lake_files["cells"]], promote_options="default")
        read = read_pm_files(log, [f for _, _, f in sorted(files, key=lambda x: x[:2])], cells, self.config.dictionaries)
        read = [t for t in (getattr(r, "rows", r) for r in read) if t is not None and t.num_rows]
        _add(counts, PM, log.counts)
        if log.rejected:
            self.store.write_rejected(batch_id, pa.concat_tables(log.rejected))
        if not read:
            return None, log.taken
        parts = [t.append_column("_part", pa.array([f"pm#{i:06d}"] * t.num_rows))
                  .append_column("_order", pa.array([f"pm#{i:06d}"] * t.num_rows))
                  .append_column("_row", pa.array(range(t.num_rows), pa.int64())) for i, t in enumerate(read)]
        with quiet_pandas():
            return spark.createDataFrame(pa.concat_tables(parts)), log.taken

    # -- evaluation: the compiled plan, rendered for Spark, over all records of the spans --------
    def _evaluate(self, spark, cube: StreamCube, spans: set[int], batch_id: int) -> int:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        span_ms = cube.span_s * 1000
        parts = {s * span_ms // self.part_ms for s in spans}
        for source in cube.plan.sources:
            spec = self.tables[source]
            files = self.store.record_files(source, before=batch_id, spans=parts, also=batch_id)
            if not files:
                register_files(spark, source, [], spec.schema)
                continue
            newest = Window.partitionBy("_id").orderBy(F.col("_filled").desc())
            kept = (spark.read.schema(_record_schema(source, spec)).parquet(*map(_uri, files))
                    .where(F.expr(f"_t div {span_ms}").isin(sorted(spans)))
                    .withColumn("_n", F.row_number().over(newest)).where("_n = 1"))
            kept.select(f"`{source}`.*").createOrReplaceTempView(source)
        self._lookup_views(spark, cube, batch_id)
        out = cube.conform(run(spark, self._sql(cube)), self.cat)
        span_of = pc.divide(pc.cast(pc.cast(out["period_start"], pa.timestamp("ms", tz="UTC")), pa.int64()), span_ms)
        for s in sorted(spans):
            write_parquet(self.store.cube_file(cube.table, cube.version, s), out.filter(pc.equal(span_of, s)))
        return out.num_rows

    def _sql(self, cube: StreamCube) -> str:
        if not hasattr(cube, "_spark_sql"):
            cube._spark_sql = SparkRenderer().render(cube.plan)
        return cube._spark_sql

    def _lookup_views(self, spark, cube: StreamCube, batch_id: int) -> None:
        cells = None
        for name in sorted(_lookups(cube.plan)):
            snap = self.store.snapshot(name, batch_id)
            if snap is not None:
                register_arrow(spark, name, snap)
            else:
                register_files(spark, name, self.lake_files.get(name, []), self.tables[name].schema)
            if name == "cells":
                cells = snap
        if any(b.kind == "grid" for s in cube.plan.scans for b in s.dims):
            if cells is None:
                cells = run(spark, "SELECT cell_id, lat, lon FROM cells")
            register_arrow(spark, grid_table(cube.plan.grid_resolution), grid_of_cells(cells, cube.plan.grid_resolution))


def _record_schema(name: str, spec: Table):
    """How a kept copy of ``name`` is read back: its table's struct (only), id, columns filled, time."""
    from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

    return StructType([StructField(name, spark_schema(spec.schema)), StructField("_id", StringType()),
                       StructField("_filled", IntegerType()), StructField("_t", LongType())])


def _last_part(frame, name: str) -> pa.Table:
    """A snapshot table's rows of the last part (file) of the batch that carried it: it replaces the one kept."""
    rows = frame.where(f"_table = '{name}'").select(f"`{name}`.*")
    last = rows.agg({"_order": "max"}).collect()[0][0]
    return rows.where(rows["_order"] == last).drop("_part", "_order", "_row").toArrow()


def _add(counts: dict, name: str, got: dict) -> None:
    mine = counts.setdefault(name, {})
    for k, v in got.items():
        mine[k] = mine.get(k, 0) + int(v)


class _PMLog:
    """What ``read_pm_files`` asks of a state, kept for one batch: the load keys taken before
    (from the batch-id log), the counts and the rejected rows of this batch."""

    def __init__(self, tables: dict[str, Table], known: dict[str, int]):
        self.tables, self.known = tables, known
        self.taken: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.rejected: list[pa.Table] = []

    def pm_file(self, key: str) -> int | None:
        return self.taken.get(key, self.known.get(key))

    def pm_file_taken(self, key: str, name: str, rows: int) -> None:
        if key not in self.known:
            self.taken.setdefault(key, rows)

    def count(self, name: str, **counts: int) -> None:
        for k, v in counts.items():
            self.counts[k] = self.counts.get(k, 0) + v

    def reject(self, source: str, file: str, row_numbers: list, reasons: list[str], records: list) -> None:
        if reasons:
            n = len(reasons)
            self.rejected.append(pa.table({
                "source": [source] * n, "file": [file] * n, "row_number": pa.array(row_numbers, pa.int64()),
                "reason": pa.array(reasons, pa.string()), "record": pa.array(records, pa.string())}))


# -- the job -----------------------------------------------------------------------------------
def run_spark_stream(source: FileSource | KafkaSource, out: Path, cat: Catalog, tables: dict[str, Table],
                     config: SparkStreamConfig, lake: Lake | None = None, threads: int | None = None,
                     stop: Callable[[], bool] = lambda: False,
                     progress: Callable[[SparkStreamReport], None] | None = None) -> SparkStreamReport:
    """Run the cube query (and, with ``config.counter``, the onsets query) over ``source`` into
    the folder ``out`` until stopped, or, with ``until_finished``, until the feed has ended and
    everything is taken. Checkpoints go to ``config.checkpoint`` (default ``out/checkpoint``)."""
    from ..engines.spark import spark_session

    cubes = stream_cubes(cat, tables, config.window, config.cubes, config.kpis)
    if not cubes:
        raise StreamError("no cube is marked for streaming (stream: true in a cubes: section), and none was "
                          "named with --cube")
    spark = spark_session(threads)
    store = SparkStreamStore(out)
    store.open(config.settings(cubes))
    checkpoint = Path(config.checkpoint or Path(out) / "checkpoint")
    if store.committed() and not (checkpoint / "cubes" / "offsets").is_dir():
        store.close()
        raise StreamError(f"{out} holds {len(store.committed()):,} committed batches but {checkpoint} has no "
                          "checkpoint of them; give the --checkpoint it was written with, or another --out")
    report = SparkStreamReport(Path(out), cubes=[c.table for c in cubes])
    job = CubeBatches(store, cubes, cat, tables, config, lake, report, progress)
    counter_spec = config.counter.check(spark, tables) if config.counter is not None else None
    started = time.perf_counter()
    try:
        while True:
            ended = config.until_finished and (source.finished() or isinstance(source, KafkaSource))
            queries = []
            try:
                queries.append(_cube_query(spark, source, job, checkpoint / "cubes", config))
                if counter_spec is not None:
                    queries.append(_onsets_query(spark, source, store, counter_spec, checkpoint / "onsets", config))
            except BaseException:
                for q, _ in queries:
                    q.stop()
                raise
            _await(queries, stop)
            if not config.until_finished or ended or stop():
                break
            time.sleep(config.trigger_s)
    finally:
        report.seconds = time.perf_counter() - started
        store.close()
    return report


def _trigger(writer, config: SparkStreamConfig):
    if config.until_finished:
        return writer.trigger(availableNow=True)  # all there is now, in micro-batches of max_files
    return writer.trigger(processingTime=f"{config.trigger_s} seconds")


def _cube_query(spark, source, job: CubeBatches, checkpoint: Path, config: SparkStreamConfig):
    names = job.sources + [n for n in job.lookups if job.tables[n].is_snapshot and n not in job.sources]
    frame = record_streams(spark, source, job.tables, names, with_pm=PM in job.sources)
    handler = _Handler(job.batch)
    writer = frame.writeStream.queryName("opencem_cubes").foreachBatch(handler).option("checkpointLocation", _uri(checkpoint))
    return _trigger(writer, config).start(), handler


def _onsets_query(spark, source, store: SparkStreamStore, spec: Table, checkpoint: Path, config: SparkStreamConfig):
    from pyspark.sql import functions as F

    from .spark_counters import onsets_stream

    def write(frame, batch_id):
        rows = frame.withColumn("batch", F.lit(int(batch_id)).cast("long")).toArrow()
        write_parquet(store.onset_file(int(batch_id)), rows)  # a re-run replaces the batch's file

    with quiet_pandas():
        changes = onsets_stream(table_stream(spark, source, spec), config.counter, spec, config.lateness_s)
    handler = _Handler(write)
    writer = (changes.writeStream.queryName("opencem_onsets").outputMode("update").foreachBatch(handler)
              .option("checkpointLocation", _uri(checkpoint)))
    return _trigger(writer, config).start(), handler


def _await(queries: list, stop: Callable[[], bool]) -> None:
    """Wait for the queries (pairs of a query and its foreachBatch function) to end, or stop
    them when asked; a failure as one sentence, its cause's."""
    from pyspark.errors import PySparkException

    failed = None
    while failed is None and any(q.isActive for q, _ in queries):
        if stop():
            for q, _ in queries:
                q.stop()  # mid-batch is fine: the batch runs again, replacing its files
            break
        for q, handler in queries:
            try:
                q.awaitTermination(0.5)
            except PySparkException as err:
                failed = (err, handler)
                break
    for q, handler in queries:
        if failed is None and q.exception() is not None:
            failed = (q.exception(), handler)
        if q.isActive:
            q.stop()
    if failed is None:
        return
    err, handler = failed
    cause = handler.error
    if isinstance(cause, StreamError | EngineError):
        raise cause from None
    raise StreamError(f"the Spark stream stopped: {_reason(cause if cause is not None else err)}") from None


def _reason(err: BaseException) -> str:
    """One line of why: a Python worker's own last line (its error), else the first."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if "Traceback (most recent call last)" in str(err):
        errors = [line for line in lines if re.match(r"^[A-Za-z_.]+(Error|Exception)\b", line)]
        return errors[-1] if errors else lines[-1]
    return f"{type(err).__name__}: {lines[0]}" if not lines[0].startswith("[") else lines[0]


class _Handler:
    """A foreachBatch function that remembers why it failed (Spark wraps it in a JVM trace)."""

    def __init__(self, fn):
        self.fn, self.error = fn, None

    def __call__(self, frame, batch_id) -> None:
        try:
            self.fn(frame, int(batch_id))
        except BaseException as err:
            self.error = self.error or err
            raise


def read_windows(out: Path, table: str) -> pa.Table | None:
    """A cube's window rows in a Spark stream's folder, at the definition version it runs with."""
    store = SparkStreamStore(out)
    version = store.settings()["cubes"].get(table)
    return store.windows(table, version) if version else None


def read_status(out: Path) -> pa.Table:
    """Per source: delivered, accepted, updates, duplicates, late (summed over the committed
    batches), and the watermark after the last one."""
    store = SparkStreamStore(out)
    totals: dict[str, dict[str, int]] = {}
    last: dict = {}
    for b in store.committed():
        entry = store.entry(b)
        for name, got in entry["counts"].items():
            _add(totals, name, got)
        last = entry
    names = sorted(totals)
    keys = ("delivered", "accepted", "updates", "duplicates", "late")
    marks = last.get("watermarks", {})
    return pa.table({"source": names, **{k: pa.array([totals[n].get(k, 0) for n in names], pa.int64()) for k in keys},
                     "watermark": pa.array([marks.get(n) for n in names], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))})


def read_late(out: Path) -> pa.Table | None:
    """Every record set aside as late, from the committed batches."""
    import pyarrow.parquet as pq

    files = SparkStreamStore(out).late_files(before=1 << 62)
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None
