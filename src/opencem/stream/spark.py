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
from .spark_store import SparkStreamStore, write_parquet
from .windows import StreamCube, stream_cubes

PM = "pm_counters"
PM_SCHEMA = "path string, modificationTime timestamp, length long, content binary"
STAMP = r"_(\d{8}T\d{6})\.parquet$"
KAFKA_PACKAGE = "org.apache.spark:spark-sql-kafka-0-10_2.13"  # + ":<your Spark version>"


# -- sources: the one place the feed is chosen -------------------------------------------------
@dataclass(frozen=True)
class FileSource:
    """A landing folder: DIR/tables/<table>_<stamp>.parquet (or <table>.parquet) and DIR/pm/<vendor>/<file>."""

    folder: Path
    max_files: int = 1000  # per table (and for PM files) per micro-batch

    def finished(self) -> bool:
        import json

        try:
            return bool(json.loads((Path(self.folder) / "manifest.json").read_text()).get("complete"))
        except (OSError, ValueError):
            return False


@dataclass(frozen=True)
class KafkaSource:
    """Kafka topics ``<prefix>.<table>`` (one JSON record per message, as the NATS subjects carry
    them) and ``<prefix>.pm.<vendor>`` (one PM file per message, its name in the ``Opencem-File``
    header). Needs the spark-sql-kafka package (``OPENCEM_SPARK_PACKAGES``, docs/stream-spark.md)."""

    bootstrap_servers: str
    prefix: str = "opencem.twin"
    max_offsets: int | None = None  # per micro-batch
    options: tuple[tuple[str, str], ...] = ()  # more kafka.* options (security, ...)

    def finished(self) -> bool:
        return False  # a topic has no end: --until-finished stops once caught up


def table_stream(spark, source: FileSource | KafkaSource, spec: Table):
    """A streaming DataFrame of one table's records: its canonical columns, plus ``_part`` (the
    file or topic-partition a record came in), ``_order`` (the arrival order of parts) and
    ``_row`` (the record's place in its part)."""
    from pyspark.sql import functions as F

    schema = spark_schema(spec.schema)
    if isinstance(source, FileSource):
        folder = Path(source.folder) / "tables"
        if not folder.is_dir():
            raise StreamError(f"{source.folder} is not a landing folder (no tables/ folder in it)")
        stamp = "[0-9]" * 8 + "T" + "[0-9]" * 6
        frame = (spark.readStream.schema(schema).option("maxFilesPerTrigger", source.max_files)
                 .option("pathGlobFilter", f"{{{spec.name}.parquet,{spec.name}_{stamp}.parquet}}")
                 .parquet(_uri(folder)))
        name = F.col("_metadata.file_name")
        # Files in order of their delivery stamp, then name, as the DuckDB stream takes them.
        return frame.select(*schema.names, name.alias("_part"),
                            F.concat(F.regexp_extract(name, STAMP, 1), F.lit("|"), name).alias("_order"),
                            F.col("_metadata.row_index").alias("_row"))
    value = F.from_json(F.col("value").cast("string"), schema)
    part = F.concat(F.col("topic"), F.lit("-"), F.lpad(F.col("partition").cast("string"), 6, "0"))
    return (_kafka(spark, source, subscribe=f"{source.prefix}.{spec.name}")
            .select(value.alias("r"), part.alias("_part"), F.col("offset").alias("_row"))
            .select("r.*", "_part", F.col("_part").alias("_order"), "_row"))


def pm_stream(spark, source: FileSource | KafkaSource):
    """A streaming DataFrame of PM files: ``token`` (pm/<vendor>/<name>), ``mtime``, ``content``, ``gzip``."""
    from pyspark.sql import functions as F

    if isinstance(source, FileSource):
        folder = Path(source.folder) / "pm"
        frame = (spark.readStream.format("binaryFile").schema(PM_SCHEMA).option("maxFilesPerTrigger", source.max_files)
                 .option("recursiveFileLookup", "true").load(_uri(folder)))
        token = F.regexp_extract("path", r"(pm/[^/]+/[^/]+)$", 1)
        return frame.select(token.alias("token"), F.col("modificationTime").alias("mtime"), "content",
                            F.lit(False).alias("gzip"), F.col("path"))
    header = F.filter("headers", lambda h: h["key"] == "Opencem-File")
    name = F.coalesce(F.element_at(header, 1)["value"].cast("string"), F.col("offset").cast("string"))
    encoding = F.element_at(F.filter("headers", lambda h: h["key"] == "Content-Encoding"), 1)["value"].cast("string")
    vendor = F.regexp_extract("topic", r"\.pm\.([^.]+)$", 1)
    return (_kafka(spark, source, subscribePattern=source.prefix.replace(".", r"\.") + r"\.pm\..+", includeHeaders="true")
            .select(F.concat(F.lit("pm/"), vendor, F.lit("/"), name).alias("token"), F.col("timestamp").alias("mtime"),
                    F.col("value").alias("content"), F.coalesce(encoding == "gzip", F.lit(False)).alias("gzip"),
                    F.lit(None).cast("string").alias("path")))


def _kafka(spark, source: KafkaSource, **subscription):
    reader = (spark.readStream.format("kafka").option("kafka.bootstrap.servers", source.bootstrap_servers)
              .option("startingOffsets", "earliest").option("failOnDataLoss", "true"))
    for key, value in (*subscription.items(), *source.options):
        reader = reader.option(key, value)
    if source.max_offsets:
        reader = reader.option("maxOffsetsPerTrigger", source.max_offsets)
    return reader.load()


_uri = hadoop_path


def record_streams(spark, source, tables: dict[str, Table], names: list[str], with_pm: bool):
    """One streaming DataFrame of every table in ``names`` (and PM files): ``_table`` names the
    table, and a struct column per table holds its records (null on other tables' rows)."""
    from pyspark.sql import functions as F

    parts = [table_stream(spark, source, tables[n]).select(F.lit(n).alias("_table"), F.struct("*").alias(n))
             for n in names]
    if with_pm:
        parts.append(pm_stream(spark, source).select(F.lit("pm_files").alias("_table"), F.struct("*").alias("pm_files")))
    union = parts[0]
    for p in parts[1:]:
        union = union.unionByName(p, allowMissingColumns=True)
    return union


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
            deliveries = {n: frame.where(f"_table = '{n}'").select(f"`{n}`.*") for n in self.sources if present.get(n)}
            new_keys = {}
            if present.get("pm_files"):
                pm_rows, new_keys = self._pm(spark, frame, batch_id, counts)
                if pm_rows is not None:
                    deliveries[PM] = pm_rows if PM not in deliveries else deliveries[PM].unionByName(pm_rows)
            changed: dict[str, set[int]] = {}
            for name, rows in deliveries.items():
                got, watermark, spans = self._intake(spark, name, rows, batch_id, watermarks.get(name))
                _add(counts, name, got)
                if watermark is not None:
                    watermarks[name] = watermark
                changed[name] = spans
            written, spans_done = 0, {}
            for cube in self.cubes:
                fine = set().union(*[changed.get(s, set()) for s in cube.plan.sources])
                spans = {f * self.fine_ms // (cube.span_s * 1000) for f in fine}
                if spans:
                    written += self._evaluate(spark, cube, spans, batch_id)
                    spans_done[cube.table] = sorted(spans)
        finally:
            frame.unpersist()
        self.store.commit(batch_id, {"counts": counts, "watermarks": watermarks, "pm_files": new_keys,
                                     "spans": spans_done, "rows_written": written,
                                     "seconds": round(time.perf_counter() - started, 3)})
        if self.pm_keys is not None:
            self.pm_keys.update(new_keys)
        self.report.batches += 1
        self.report.records += sum(c.get("delivered", 0) for c in counts.values())
        self.report.rows_written += written
        if self.progress:
            self.progress(self.report)

    # -- intake: lateness and dedup, as the DuckDB stream judges them (state.py: add) ---------
    def _intake(self, spark, name: str, rows, batch_id: int, watermark: int | None):
        """Take one table's records of the batch; returns (counts, watermark after, the fine
        spans of the copies kept or replaced)."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        spec = self.tables[name]
        cols = list(spec.schema.names)
        rid = F.concat_ws("|", *[F.coalesce(F.col(k).cast("string"), F.lit("")) for k in spec.keys])
        filled = sum(F.col(c).isNotNull().cast("int") for c in cols)
        inc = rows.select(*cols, rid.alias("_id"), filled.alias("_filled"),
                          F.unix_millis(F.col(spec.time_column)).alias("_t"), "_part", "_order", "_row")
        # Parts (files, topic-partitions) in arrival order: the watermark before each part is the
        # source's so far; within a part it advances record by record.
        parts = sorted(inc.groupBy("_order", "_part").agg(F.max("_t").alias("m"), F.count(F.lit(1)).alias("n"),
                                                          F.collect_set(F.expr(f"_t div {self.part_ms}")).alias("s"))
                       .collect())
        delivered, prefix, table = 0, watermark, []
        for rank, p in enumerate(parts):
            table.append((p["_part"], rank, prefix))
            delivered += p["n"]
            if p["m"] is not None:
                prefix = p["m"] if prefix is None else max(prefix, p["m"])
        touched = {s for p in parts for s in p["s"]}
        ranks = spark.createDataFrame(table, "_part string, _rank int, _prev long")
        within = Window.partitionBy("_part").orderBy("_row").rowsBetween(Window.unboundedPreceding, -1)
        w, lateness = self.window_ms, self.config.lateness_s * 1000
        inc = (inc.join(F.broadcast(ranks), "_part")
               .withColumn("_wm", F.greatest(F.col("_prev"), F.max("_t").over(within)))
               .withColumn("_late", F.col("_t").isNull() | F.coalesce(
                   F.expr(f"_t - pmod(_t, {w}) + {w} + {lateness} <= _wm"), F.lit(False))))
        first = Window.partitionBy("_id").orderBy(F.col("_filled").desc(), "_rank", "_row")
        kept = self._kept(spark, name, batch_id, touched)
        best = inc.where(~F.col("_late")).withColumn("_n", F.row_number().over(first)).where("_n = 1").drop("_n")
        win = (best.join(kept, "_id", "left").where(F.col("_kf").isNull() | (F.col("_filled") > F.col("_kf")))
               .withColumn("_update", F.col("_kf").isNotNull()).persist())
        try:
            got = win.agg(F.count(F.lit(1)).alias("n"), F.count_if("_update").alias("u"),
                          F.collect_set(F.expr(f"_t div {self.fine_ms}")).alias("s")).collect()[0]
            if got["n"]:
                (win.select(*cols, "_id", "_filled", "_t", F.expr(f"_t div {self.part_ms}").alias("span"))
                 .write.mode("overwrite").partitionBy("span").parquet(_uri(self.store.records_dir(name, batch_id))))
            after = (kept.unionByName(win.select("_id", F.col("_filled").alias("_kf")))
                     .groupBy("_id").agg(F.max("_kf").alias("_kf")))
            late = (inc.where("_late").join(after, "_id", "left").join(self._late_log(spark, name, batch_id), "_id", "left")
                    .where((F.col("_kf").isNull() | (F.col("_filled") > F.col("_kf")))
                           & (F.col("_lf").isNull() | (F.col("_filled") > F.col("_lf"))))
                    .withColumn("_n", F.row_number().over(first)).where("_n = 1"))
            late = late.select(F.lit(name).alias("source"), F.col("_id").alias("record_id"),
                               F.col(spec.time_column).alias("event_time"),
                               F.expr(f"timestamp_millis(_t - pmod(_t, {w}))").alias("window_start"),
                               F.expr("timestamp_millis(_wm)").alias("watermark"), F.col("_filled").alias("filled"),
                               F.to_json(F.struct(*cols)).alias("record")).persist()
            late_n = late.count()
            if late_n:
                late.write.mode("overwrite").parquet(_uri(self.store.late_dir(name, batch_id)))
            late.unpersist()
        finally:
            win.unpersist()
        accepted, updates = got["n"] - got["u"], got["u"]
        counts = {"delivered": delivered, "accepted": accepted, "updates": updates, "late": late_n,
                  "duplicates": delivered - accepted - updates - late_n}
        return counts, prefix, set(got["s"])

    def _kept(self, spark, name: str, batch_id: int, spans: set[int]):
        """Per record id, the most filled copy kept by the committed batches (in these spans)."""
        from pyspark.sql import functions as F

        files = self.store.record_files(name, before=batch_id, spans=spans)
        if not files:
            return spark.createDataFrame([], "_id string, _kf int")
        return (spark.read.schema("_id string, _filled int").parquet(*map(_uri, files))
                .groupBy("_id").agg(F.max("_filled").alias("_kf")))

    def _late_log(self, spark, name: str, batch_id: int):
        from pyspark.sql import functions as F

        files = self.store.late_files(name, before=batch_id)
        if not files:
            return spark.createDataFrame([], "_id string, _lf int")
        return (spark.read.schema("record_id string, filled int").parquet(*map(_uri, files))
                .groupBy(F.col("record_id").alias("_id")).agg(F.max("filled").alias("_lf")))

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
            kept = (spark.read.schema(_record_schema(spec)).parquet(*map(_uri, files))
                    .where(F.expr(f"_t div {span_ms}").isin(sorted(spans)))
                    .withColumn("_n", F.row_number().over(newest)).where("_n = 1"))
            kept.select(*spec.schema.names).createOrReplaceTempView(source)
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


def _record_schema(spec: Table):
    from pyspark.sql.types import IntegerType, LongType, StringType, StructField

    schema = spark_schema(spec.schema)
    for name, kind in (("_id", StringType()), ("_filled", IntegerType()), ("_t", LongType())):
        schema = schema.add(StructField(name, kind))
    return schema


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
            queries = [_cube_query(spark, source, job, checkpoint / "cubes", config)]
            if counter_spec is not None:
                queries.append(_onsets_query(spark, source, store, counter_spec, checkpoint / "onsets", config))
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

    store = SparkStreamStore(out)
    folder = Path(out) / "late"
    tables = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    files = [f for t in tables for f in store.late_files(t, before=1 << 62)]
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None
