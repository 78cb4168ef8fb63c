"""Opening the store: an engine and sessions on a database at this opencem's revision.

A database with no store yet is created at the head revision on first open (there is nothing
to lose). One at an older revision is refused with a sentence saying to run ``opencem db
upgrade``: on a shared PostgreSQL other processes may still run the older opencem, so when to
migrate is the operator's decision, never a side effect of some command.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .database import Database, StoreError, create_engine, prepare
from .migrate import check_known, connected, head_revision, revision_of, upgrade_engine


class StoreOutOfDate(StoreError):
    """The database is at an older revision than this opencem's models."""


class Store:
    """The operational store of one database. Use :meth:`transaction` for a unit of work."""

    def __init__(self, database: Database, engine: Engine):
        self.database, self.engine = database, engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def session(self) -> Session:
        """A session; the caller commits (or uses :meth:`transaction`)."""
        return self._sessions()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits at the end of the block, or rolls back on an error."""
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(database: Database) -> Store:
    """The store in ``database``, created at the head revision if it holds none yet; a
    :class:`StoreOutOfDate` error when it is at an older revision."""
    prepare(database)
    engine = create_engine(database)
    try:
        with connected(database, engine) as connection:
            current = revision_of(connection)
        head = head_revision()
        if current is None:
            upgrade_engine(database, engine)
        elif current != head:
            check_known(database, current)
            raise StoreOutOfDate(f"the store database {database.shown} is at revision {current}, older than "
                                 f"this opencem's {head}; run `opencem db upgrade` (back it up first)")
    except BaseException:
        engine.dispose()
        raise
    return Store(database, engine)
