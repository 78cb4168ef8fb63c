"""Where the Spark stream reads from: a landing folder (a Parquet file source per table, a
``binaryFile`` source for PM files) or Kafka (a topic per table). :func:`table_stream` is the
one place the source is chosen; every record comes with the part it arrived in (a file, a
topic-partition) and its place there, for lateness judged in arrival order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..engines.spark import hadoop_path, spark_schema
from ..schema import Table
from .sources import StreamError

PM_SCHEMA = "path string, modificationTime timestamp, length long, content binary"
STAMP = r"_(\d{8}T\d{6})\.parquet$"
KAFKA_PACKAGE = "org.apache.spark:spark-sql-kafka-0-10_2.13"  # + ":<your Spark version>"


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
                 .parquet(hadoop_path(folder)))
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
        # A PM file per vendor stands for one table file: a micro-batch covers as much time of both.
        vendors = max(1, sum(1 for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else 1)
        frame = (spark.readStream.format("binaryFile").schema(PM_SCHEMA)
                 .option("maxFilesPerTrigger", source.max_files * vendors)
                 .option("recursiveFileLookup", "true").load(hadoop_path(folder)))
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


