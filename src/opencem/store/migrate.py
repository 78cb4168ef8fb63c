"""The store's schema revisions: Alembic, run from here (no alembic.ini).

The migrations ship inside the package (``migrations/versions/``). An upgrade runs in one
transaction under a lock (SQLite's write lock, a PostgreSQL advisory lock), so two processes
upgrading at once apply each migration once and either all of an upgrade lands or none.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from .database import Database, StoreError, connect_error, create_engine, prepare

MIGRATIONS = Path(__file__).with_name("migrations")
# Not Alembic's default alembic_version: a PostgreSQL schema opencem shares with another
# Alembic-managed application must not mix the two version rows.
VERSION_TABLE = "opencem_store_version"
_PG_LOCK_ID = 0x6F70656E63656D  # "opencem": the advisory lock upgrades take


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))  # ConfigParser syntax
    config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The revision this opencem's models are at."""
    return _scripts().get_current_head()


def revisions() -> list[str]:
    """Every revision this opencem knows, oldest first."""
    return [s.revision for s in reversed(list(_scripts().walk_revisions()))]


def revision_of(connection: Connection) -> str | None:
    """The revision a database is at (None: no store there yet)."""
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


def current_revision(database: Database) -> str | None:
    """The revision ``database`` is at; None when it holds no store (a SQLite file that does
    not exist is not created)."""
    if not database.exists():
        return None
    engine = create_engine(database)
    try:
        with connected(database, engine) as connection:
            return revision_of(connection)
    finally:
        engine.dispose()


def upgrade(database: Database, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply the migrations up to ``revision``; (revision before, revision after)."""
    prepare(database)
    engine = create_engine(database)
    try:
        return upgrade_engine(database, engine, revision)
    finally:
        engine.dispose()


def upgrade_engine(database: Database, engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    with connected(database, engine) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
        before = revision_of(connection)
        check_known(database, before)
        command.upgrade(_config(connection), revision)
        return before, revision_of(connection)


def downgrade(database: Database, revision: str) -> None:
    """Undo migrations down to ``revision`` (for tests and developers; drops what they added)."""
    engine = create_engine(database)
    try:
        with connected(database, engine) as connection, connection.begin():
            command.downgrade(_config(connection), revision)
    finally:
        engine.dispose()


def check_known(database: Database, revision: str | None) -> None:
    if revision is not None and revision not in revisions():
        raise StoreError(f"the store database {database.shown} is at revision {revision}, which this "
                         f"opencem does not know (a newer opencem upgraded it); use that version of opencem")


class connected:
    """``with connected(database, engine) as connection``: ``engine.connect()``, with a failure
    to connect turned into one sentence."""

    def __init__(self, database: Database, engine: Engine):
        self.database, self.engine, self.connection = database, engine, None

    def __enter__(self) -> Connection:
        try:
            self.connection = self.engine.connect()
        except sa.exc.DBAPIError as err:
            raise connect_error(self.database, err) from None
        return self.connection

    def __exit__(self, *exc) -> None:
        self.connection.close()
