"""Which database holds the operational store, and connecting to it.

The workspace's SQLite file by default; PostgreSQL (or another SQLite file) when
``$OPENCEM_DATABASE_URL`` names one. SQLite runs in WAL mode, so readers never wait for a
writer, and every transaction begins with ``BEGIN IMMEDIATE`` under a busy timeout, so a second
writer waits its turn instead of failing at once (or, worse, half-way through a transaction
that read before it wrote).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from ..errors import MissingDependency, OpencemError

DATABASE_ENV = "OPENCEM_DATABASE_URL"
BUSY_TIMEOUT_MS = 30_000  # how long a writer waits for another's transaction on SQLite
CONNECT_TIMEOUT_S = 10    # PostgreSQL, unless the URL sets connect_timeout
EXAMPLE_URL = "postgresql://USER@HOST:5432/DATABASE"


class StoreError(OpencemError):
    """The operational store's database cannot be reached or used as it is."""


@dataclass(frozen=True)
class Database:
    """A store database: its URL, and what named it (for messages)."""

    url: URL
    named_by: str  # "$OPENCEM_DATABASE_URL", or "the workspace"

    @property
    def shown(self) -> str:
        """The SQLite file, or the URL without its password."""
        return str(self.sqlite_file) if self.sqlite_file else self.url.render_as_string(hide_password=True)

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def sqlite_file(self) -> Path | None:
        return Path(self.url.database) if self.is_sqlite and self.url.database else None

    def exists(self) -> bool:
        """False only for a SQLite file not created yet (connecting would create it)."""
        return not self.is_sqlite or self.sqlite_file.is_file()


def database_for(sqlite_file: Path, environ: Mapping[str, str] | None = None) -> Database:
    """The database ``$OPENCEM_DATABASE_URL`` names, else the SQLite file ``sqlite_file``."""
    environ = os.environ if environ is None else environ
    text = environ.get(DATABASE_ENV)
    if text is None:
        return Database(URL.create("sqlite", database=str(sqlite_file)), "the workspace")
    return Database(parse_url(text), f"${DATABASE_ENV}")


def parse_url(text: str) -> URL:
    """``$OPENCEM_DATABASE_URL`` as a URL for a driver opencem has; else a one-sentence error."""
    shown = repr(text) if len(text) <= 200 else repr(text[:200] + "...")
    if not text.strip():
        raise StoreError(f"${DATABASE_ENV} is set but empty; unset it to keep the store in the "
                         f"workspace's SQLite file, or give a URL like {EXAMPLE_URL}")
    try:
        url = sa.make_url(text.strip())
    except (sa.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StoreError(f"${DATABASE_ENV} {shown} is not a database URL; give one like {EXAMPLE_URL}") from None
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgres", "postgresql") and driver in ("", "psycopg"):
        url = url.set(drivername="postgresql+psycopg")  # psycopg 3: SQLAlchemy's default is psycopg2
        _require_psycopg()
    elif backend == "sqlite" and driver in ("", "pysqlite"):
        if url.database in (None, "", ":memory:"):
            raise StoreError(f"${DATABASE_ENV} {shown} names an in-memory SQLite database, which would "
                             "forget every alert at exit; give a file, like sqlite:////var/lib/opencem/store.sqlite")
    else:
        raise StoreError(f"${DATABASE_ENV} names {url.drivername} databases ({url.render_as_string(hide_password=True)}), "
                         f"but the store runs on PostgreSQL (psycopg) or SQLite; give a URL like {EXAMPLE_URL}")
    return url


def _require_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise MissingDependency("a PostgreSQL store", "postgres", "psycopg") from None


def create_engine(database: Database) -> Engine:
    """An engine for ``database`` (nothing is connected yet)."""
    if database.is_sqlite:
        engine = sa.create_engine(database.url)
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    args = {} if "connect_timeout" in database.url.query else {"connect_timeout": CONNECT_TIMEOUT_S}
    return sa.create_engine(database.url, connect_args=args, pool_pre_ping=True)


def _sqlite_connect(dbapi_connection, _record) -> None:
    # Python's sqlite3 would open transactions itself, lazily and only before DML (so DDL in a
    # migration would commit statement by statement); _sqlite_begin opens them instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys = ON")
    _wal(cursor)
    cursor.close()


def _wal(cursor) -> None:
    # Switching a new file to WAL needs it to itself, and SQLite answers "database is locked" at
    # once, without the busy timeout, when another process opens it at that moment: retry.
    # (A file system without WAL support answers with the old mode: the busy timeout still applies.)
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _sqlite_begin(connection) -> None:
    # IMMEDIATE takes the write lock up front: a transaction that reads and then writes can
    # then never fail on a snapshot another writer moved past; it waits up to the busy timeout.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def connect_error(database: Database, err: Exception) -> StoreError:
    """A driver's failure to connect, as one sentence naming where the URL came from."""
    reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0].rstrip(".")
    if database.is_sqlite:
        return StoreError(f"cannot open the store's SQLite file {database.sqlite_file} "
                          f"(named by {database.named_by}): {reason}")
    return StoreError(f"cannot connect to the store database {database.shown} named by "
                      f"{database.named_by}: {reason}")


def prepare(database: Database) -> None:
    """Make the folder of a SQLite file (a new workspace has none yet)."""
    if database.sqlite_file is not None and database.named_by == "the workspace":
        database.sqlite_file.parent.mkdir(parents=True, exist_ok=True)
