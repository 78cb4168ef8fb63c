"""Query engines: connection and execution only (rendering SQL is the indicator engine's).

Every engine is reached through one small :class:`Runner` interface: register Parquet files
or an Arrow table as a view, run a query, get Arrow back. DuckDB is embedded and the
default; Spark (PySpark, local or a cluster) is the engine beyond one machine and needs the
``spark`` extra. Engine modules are imported only when a runner is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import MissingDependency, OpencemError

if TYPE_CHECKING:
    import pyarrow as pa

ENGINES = ("duckdb", "spark")


class EngineError(OpencemError):
    """A query an engine cannot run, or an engine that cannot start, in one sentence."""


class Runner(Protocol):
    """What every engine offers the jobs that run on it."""

    name: str

    def register_files(self, name: str, paths: list[Path], schema: pa.Schema) -> None:
        """A view ``name`` over exactly these Parquet files (none: an empty view of ``schema``)."""

    def register_arrow(self, name: str, table: pa.Table) -> None:
        """A view ``name`` over a small table built in Python (a dimension, say)."""

    def run(self, sql: str) -> pa.Table:
        """One query in the engine's dialect; the result as Arrow."""


def runner(engine: str, threads: int | None = None) -> Runner:
    """A runner on ``engine`` (``duckdb`` or ``spark``) with ``threads`` worker threads
    (default: all cores)."""
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "duckdb":
        from .duckdb import DuckDBRunner

        return DuckDBRunner(threads)
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise MissingDependency("The Spark engine (--engine spark)", "spark", "pyspark") from None
    from .spark import SparkRunner

    return SparkRunner(threads)
