"""DuckDB over the lake: one view per canonical table, built from the committed manifest.

Views list the manifest's files explicitly, so a batch still being written is never seen.
``read_only_connection`` also confines DuckDB to the lake folder and accepts only queries.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pyarrow as pa

from ..lake import Lake
from . import EngineError

ALLOWED_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


class QueryError(EngineError):
    """A query opencem refuses or DuckDB cannot run, in DuckDB's words."""


class DuckDBRunner:
    """The :class:`~opencem.engines.Runner` on an in-memory DuckDB (UTC session)."""

    name = "duckdb"

    def __init__(self, threads: int | None = None):
        self.con = duckdb.connect(config={"threads": threads} if threads else {})
        self.con.execute("SET TimeZone = 'UTC'")

    def register_files(self, name: str, paths: list[Path], schema: pa.Schema) -> None:
        register_files(self.con, name, paths, schema)

    def register_arrow(self, name: str, table: pa.Table) -> None:
        register_arrow(self.con, name, table)

    def run(self, sql: str) -> pa.Table:
        try:
            return self.con.sql(sql).to_arrow_table()
        except duckdb.Error as err:
            raise QueryError(_message(err)) from None


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def register_lake(con: duckdb.DuckDBPyConnection, lake: Lake) -> dict[str, int]:
    """Create a view per canonical table (empty tables get an empty, typed view).
    Returns the committed row count per table."""
    counts = {}
    for name, spec, paths, rows in lake.readable():
        register_files(con, name, paths, spec.schema)
        counts[name] = rows
    return counts


def register_files(con: duckdb.DuckDBPyConnection, name: str, paths: list[Path], schema: pa.Schema) -> None:
    """A view over exactly these Parquet files (none: an empty view with ``schema``). Columns
    are lined up by name: tables gain columns between releases (sessions gained their
    position), and a column older files lack is null, typed as the spec says, as Spark's
    reader with an explicit schema gives it. Reading every footer for that costs about 0.2 ms
    a file."""
    if paths:
        listing = ", ".join(_quote(p) for p in paths)
        con.register(f"__empty_{name}", schema.empty_table())
        con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM read_parquet([{listing}], '
                    f'hive_partitioning = false, union_by_name = true) UNION ALL BY NAME SELECT * FROM "__empty_{name}"')
    else:
        register_arrow(con, name, schema.empty_table())


def register_arrow(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    """A view over an Arrow table built in Python (a small dimension, e.g. cell -> H3)."""
    con.register(f"__arrow_{name}", table)
    con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM "__arrow_{name}"')


def connect(lake: Lake, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake's views (full access, for opencem's own jobs)."""
    con = duckdb.connect(config={"threads": threads} if threads else {})
    con.execute("SET TimeZone = 'UTC'")  # dates and buckets of UTC instants, whatever the host
    register_lake(con, lake)
    return con


_PRIVATE_TEMP: list[str] = []


def _private_temp() -> str:
    """One empty temp folder per process for user-SQL spills (deleted at exit)."""
    if not _PRIVATE_TEMP:
        import atexit
        import shutil
        import tempfile

        folder = tempfile.mkdtemp(prefix="opencem-sql-")
        atexit.register(shutil.rmtree, folder, True)
        _PRIVATE_TEMP.append(folder)
    return _PRIVATE_TEMP[0]


def read_only_connection(lake: Lake) -> duckdb.DuckDBPyConnection:
    """A connection for user SQL: file access limited to the lake, settings locked."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB allows its temp folder too, by default ./.tmp of the working directory: a folder of
    # the user's. Spill into a private one instead, removed with the connection's process.
    con.execute(f"SET temp_directory={_quote(Path(_private_temp()))}")
    con.execute(f"SET allowed_directories=[{_quote(lake.root.resolve())}]")
    con.execute("SET enable_external_access=false")
    register_lake(con, lake)
    con.execute("SET lock_configuration=true")
    return con


def query_lake(lake: Lake, sql: str, limit: int | None = None) -> pa.Table:
    """One read-only query over the lake's tables, as Arrow (see :func:`run_user_sql`); with
    ``limit``, at most that many rows."""
    check_read_only(sql)
    con = read_only_connection(lake)
    try:
        rel = con.sql(sql)
        return (rel.limit(limit) if limit is not None and rel is not None else rel).to_arrow_table()
    except duckdb.Error as err:
        raise QueryError(_message(_with_caret(con, sql, err))) from None
    finally:
        con.close()


def _with_caret(con: duckdb.DuckDBPyConnection, sql: str, err: duckdb.Error) -> duckdb.Error:
    # The relation API's errors lack the "LINE 1: ..." excerpt with a caret under the place;
    # running the failing query once more through execute() gives the whole message.
    try:
        con.execute(sql)
    except duckdb.Error as again:
        return again
    return err


def run_user_sql(lake: Lake, sql: str) -> duckdb.DuckDBPyConnection:
    """Run one read-only query (SELECT, WITH ... SELECT, EXPLAIN, DESCRIBE, SHOW); returns
    the cursor (``description``, ``fetchmany``, ``fetchall``)."""
    check_read_only(sql)
    con = read_only_connection(lake)
    try:
        return con.execute(sql)
    except duckdb.Error as err:
        raise QueryError(_message(err)) from None


def check_read_only(sql: str) -> None:
    """Exactly one statement, and one that only reads; else :class:`QueryError`."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as err:
        raise QueryError(f"the query does not parse: {_message(err)}") from None
    if len(statements) != 1:
        raise QueryError(f"give exactly one statement (got {len(statements)})")
    if statements[0].type not in ALLOWED_STATEMENTS:
        raise QueryError(f"only read-only queries are allowed here, not {statements[0].type.name}")
    if statements[0].type == duckdb.StatementType.EXPLAIN:
        # EXPLAIN ANALYZE runs what it explains: what follows must itself be a query.
        m = re.match(r"(?is)\s*explain\s+(?:analy[sz]e\s+)?(.*)", statements[0].query)
        inner = duckdb.extract_statements(m.group(1)) if m and m.group(1).strip() else []
        if len(inner) != 1 or inner[0].type != duckdb.StatementType.SELECT:
            kind = inner[0].type.name if len(inner) == 1 else "what it names"
            raise QueryError(f"only read-only queries are allowed here; EXPLAIN takes a SELECT, not {kind}")


def _message(err: Exception) -> str:
    """DuckDB's whole message: its first line says what is wrong, and the rest (candidate
    columns, the query line with a caret under the place) says where."""
    return str(err).strip()
