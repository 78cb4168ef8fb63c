"""Apache Spark over the lake: one temp view per canonical table, built from the committed manifest.

Same contract as the DuckDB engine: views list the manifest's files explicitly (a batch
still being written is never seen), and queries come back as Arrow. The session runs in
UTC with ANSI SQL on, so the SQL opencem renders gives DuckDB's answers; the renderer
guards divisions because ANSI Spark raises on a zero divisor where DuckDB gives infinity.

One local-mode session per process (``OPENCEM_SPARK_MASTER`` points it at a cluster;
``OPENCEM_SPARK_PACKAGES`` adds Maven packages, e.g. the Kafka source of ``opencem stream spark``). The
JVM's stderr goes to a log file (:func:`log_path`), so Spark's startup chatter and task
stack traces stay out of the console; errors still reach Python as :class:`EngineError`.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
from py4j.protocol import Py4JError, Py4JJavaError
from pyspark import SparkConf, SparkContext
from pyspark.errors import PySparkException
from pyspark.java_gateway import launch_gateway
from pyspark.logger import PySparkLogger
from pyspark.sql import SparkSession
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from ..lake import Lake
from . import EngineError

DEFAULT_DRIVER_MEMORY = "4g"  # a quarter of a 24 GB machine: room for DuckDB and the API too

_session: SparkSession | None = None


class SparkRunner:
    """The :class:`~opencem.engines.Runner` on the process's Spark session."""

    name = "spark"

    def __init__(self, threads: int | None = None):
        self.spark = spark_session(threads)

    def register_files(self, name: str, paths: list[Path], schema: pa.Schema) -> None:
        register_files(self.spark, name, paths, schema)

    def register_arrow(self, name: str, table: pa.Table) -> None:
        register_arrow(self.spark, name, table)

    def run(self, sql: str) -> pa.Table:
        return run(self.spark, sql)


def find_java() -> str | None:
    """The ``java`` executable Spark will launch (``$JAVA_HOME/bin/java``, else the PATH)."""
    home = os.environ.get("JAVA_HOME")
    if home:
        java = Path(home) / "bin" / "java"
        return str(java) if java.exists() else None
    return shutil.which("java")


def log_path() -> Path:
    """Where the Spark JVM writes its stderr: ``OPENCEM_SPARK_LOG``, else a per-process temp
    file, removed at exit once the JVM has started (a failed start keeps it for reading)."""
    chosen = os.environ.get("OPENCEM_SPARK_LOG")
    return Path(chosen) if chosen else Path(tempfile.gettempdir()) / f"opencem-spark-{os.getpid()}.log"


def spark_session(threads: int | None = None, shuffle_partitions: int | None = None,
                  driver_memory: str | None = None) -> SparkSession:
    """The process's Spark session, started on first use: ``local[threads]`` (default all
    cores) unless ``OPENCEM_SPARK_MASTER`` names a cluster. ``driver_memory`` defaults to
    ``OPENCEM_SPARK_DRIVER_MEMORY`` or 4g and only counts when the JVM starts."""
    global _session
    cluster = os.environ.get("OPENCEM_SPARK_MASTER")
    master = cluster or f"local[{threads or '*'}]"
    if _session is not None and SparkContext._active_spark_context is not None:
        running = _session.sparkContext.master
        if threads is None or running == master:
            return _session
        raise EngineError(f"a Spark session on {running} is already running; call stop() "
                          f"before asking for {master}")
    if find_java() is None:
        raise EngineError("the Spark engine needs Java 17 or newer: install a JDK or set JAVA_HOME")

    cores = threads or os.cpu_count() or 1
    memory = driver_memory or os.environ.get("OPENCEM_SPARK_DRIVER_MEMORY", DEFAULT_DRIVER_MEMORY)
    utc = "-Duser.timezone=UTC"  # the JVM's own zone too, not just SQL's
    conf = SparkConf().setAll([
        ("spark.master", master),
        ("spark.app.name", "opencem"),
        ("spark.driver.memory", memory),
        ("spark.driver.extraJavaOptions", utc),
        ("spark.executor.extraJavaOptions", utc),
        ("spark.sql.session.timeZone", "UTC"),
        ("spark.sql.timestampType", "TIMESTAMP_LTZ"),  # instants, like DuckDB's TIMESTAMPTZ
        ("spark.sql.ansi.enabled", "true"),
        ("spark.sql.execution.arrow.pyspark.enabled", "true"),
        ("spark.sql.execution.arrow.pyspark.fallback.enabled", "false"),  # fail, don't crawl
        ("spark.ui.enabled", "false"),
        # opencem keeps no managed tables; left unset, Spark makes ./spark-warehouse wherever it runs.
        ("spark.sql.warehouse.dir", str(Path(tempfile.gettempdir()) / "opencem-spark-warehouse")),
        ("spark.ui.showConsoleProgress", "false"),
        # Views name every file; past 32 paths Spark would start a job just to stat them.
        ("spark.sql.sources.parallelPartitionDiscovery.threshold", "1000000"),
        # Indicator plans compute shared parts of the QoE formulas in ~40 nested projections;
        # each one costs the analyzer an iteration beyond its default limit of 100.
        ("spark.sql.analyzer.maxIterations", "1000"),
        ("spark.sql.optimizer.maxIterations", "1000"),
        # Spark would substitute ${env:HOME}, ${system:...} and its settings even inside
        # string literals of a user's definition; opencem's SQL never uses variables.
        ("spark.sql.variable.substitute", "false"),
    ])
    if os.environ.get("OPENCEM_SPARK_PACKAGES"):  # fetched by the JVM at start (Kafka for streams)
        conf.set("spark.jars.packages", os.environ["OPENCEM_SPARK_PACKAGES"])
    if shuffle_partitions or not cluster:
        # Spark's 200 default makes hundreds of tiny tasks for our per-cell aggregates.
        conf.set("spark.sql.shuffle.partitions", str(shuffle_partitions or 2 * cores))
    if not cluster:
        # A sandbox hostname often resolves oddly; loopback is all local mode needs.
        conf.setAll([("spark.driver.host", "127.0.0.1"), ("spark.driver.bindAddress", "127.0.0.1"),
                     ("spark.pyspark.python", sys.executable)])
        # SparkContext starts Python workers (the stream's stateful counters) with $PYSPARK_PYTHON,
        # else "python3" of the PATH, which lacks opencem and pyarrow; the conf above is spark-submit's.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    gateway = None
    if SparkContext._gateway is None:  # first start in this process: launch the JVM
        start = 0
        try:
            with open(log_path(), "ab") as log:
                start = log.tell()
                gateway = launch_gateway(conf, popen_kwargs={"stderr": log})
        except (PySparkException, OSError) as err:
            reason = _first_log_line(start) or _first_line(err)
            raise EngineError(f"the Spark JVM did not start ({reason}); see {log_path()}") from None
        if not os.environ.get("OPENCEM_SPARK_LOG"):
            atexit.register(log_path().unlink, missing_ok=True)
    try:
        with quiet_pandas():
            SparkContext(conf=conf, gateway=gateway)
        _session = SparkSession.builder.getOrCreate()
    except (PySparkException, Py4JError, ValueError) as err:  # ValueError: another context runs
        raise EngineError(f"Spark could not start: {_first_line(err)}") from None
    _session.sparkContext.setLogLevel("ERROR")
    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        # PySpark dumps every failed query's JVM trace as JSON on stderr; the caller gets an
        # EngineError with the message instead.
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)
    return _session


def stop() -> None:
    """Stop the process's Spark session (the JVM stays up; a new session starts quickly)."""
    global _session
    if _session is not None:
        _session.stop()
        _session = None


def spark_schema(schema: pa.Schema) -> StructType:
    """The Spark schema of an Arrow schema (timestamps become TimestampType, i.e. instants)."""
    return from_arrow_schema(schema)


def register_lake(spark: SparkSession, lake: Lake) -> dict[str, int]:
    """Create a temp view per canonical table (empty tables get an empty, typed view).
    Returns the committed row count per table."""
    counts = {}
    for name, spec, paths, rows in lake.readable():
        register_files(spark, name, paths, spec.schema)
        counts[name] = rows
    return counts


def register_files(spark: SparkSession, name: str, paths: list[Path], schema: pa.Schema) -> None:
    """A temp view over exactly these Parquet files, read with ``schema`` (empty: a typed,
    empty view)."""
    spark_type = spark_schema(schema)
    try:
        if paths:
            # Paths are files, not folders, so no date= partition column is inferred.
            frame = spark.read.schema(spark_type).parquet(*[_hadoop_path(Path(p).resolve()) for p in paths])
        else:
            frame = spark.createDataFrame([], spark_type)
        frame.createOrReplaceTempView(name)
    except PySparkException as err:
        raise EngineError(f"table {name} cannot be registered: {_first_line(err)}") from None


def hadoop_path(path: Path) -> str:
    """A local file or folder as Spark reads and writes it, literally (no glob)."""
    return _hadoop_path(Path(path).resolve())


def _hadoop_path(path: Path) -> str:
    # Spark reads every path as a Hadoop glob, so escape '[', '*', ... to keep an odd folder
    # name literal (its internal no-glob option read such files many times over). "file:"
    # keeps the path local when a cluster's default filesystem is HDFS.
    return "file:" + re.sub(r"([\\\[\]{}*?,^])", r"\\\1", str(path))


def register_arrow(spark: SparkSession, name: str, table: pa.Table) -> None:
    """A temp view over a small Arrow table built in Python (a dimension, e.g. cell -> H3)."""
    try:
        with quiet_pandas():
            spark.createDataFrame(table).createOrReplaceTempView(name)
    except PySparkException as err:
        raise EngineError(f"view {name} cannot be made from Arrow: {_first_line(err)}") from None


def run(spark: SparkSession, sql: str) -> pa.Table:
    """Run one query; the result as Arrow, timestamps as ``timestamp[us, tz=UTC]``."""
    try:
        spark.conf.set("spark.sql.variable.substitute", "false")  # also on a session opencem did not start
        with quiet_pandas():
            return spark.sql(sql).toArrow()
    except PySparkException as err:
        raise EngineError(_first_line(err)) from None
    except Py4JJavaError as err:  # a JVM failure PySpark does not translate (e.g. out of memory)
        raise EngineError(_first_line(err.java_exception.toString())) from None


@contextmanager
def quiet_pandas():
    # PySpark warns about pandas 3 when it first loads its pandas glue; these paths skip pandas.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
        yield


def _first_log_line(offset: int) -> str:
    """The first thing the JVM logged past ``offset``: why it did not start."""
    try:
        with open(log_path(), "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("WARNING:")]
    return lines[0] if lines else ""


def _first_line(err: Exception | str) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
