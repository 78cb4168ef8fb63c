"""Alembic's environment: runs the migrations on the connection :mod:`opencem.store.migrate`
passes in (inside its transaction and lock); there is no offline (``--sql``) mode."""

from __future__ import annotations

from alembic import context

from opencem.store.migrate import VERSION_TABLE
from opencem.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the store's migrations with opencem.store.migrate.upgrade (opencem db upgrade)")
context.configure(connection=connection, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
