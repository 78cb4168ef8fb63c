"""The operational store: alerts, rule state, silences, notifications, actions and the audit
trail, in SQLite (the workspace's ``store.sqlite``) or PostgreSQL (``$OPENCEM_DATABASE_URL``).

    models       the tables, as typed SQLAlchemy models
    database     which database, and connecting (SQLite in WAL mode with a busy timeout)
    migrate      Alembic revisions, run from code (``opencem db upgrade``)
    session      opening a store at the current revision; sessions and transactions
    repository   writes that must happen once (idempotency keys), the audit trail
"""

from sqlalchemy.orm import Session  # for type hints above the store (only store/ imports SQLAlchemy)

from .database import DATABASE_ENV, Database, StoreError, database_for
from .migrate import current_revision, head_revision, revisions, upgrade
from .session import Store, StoreOutOfDate, open_store

__all__ = ["DATABASE_ENV", "Database", "Session", "Store", "StoreError", "StoreOutOfDate", "current_revision",
           "database_for", "head_revision", "open_store", "revisions", "upgrade"]
