"""The store's tests run twice, on SQLite and on PostgreSQL: the ``database`` fixture is one of
each. The PostgreSQL one is a schema of its own (``opencem_test_<random>``, reached through
``search_path``) in database ``test``, dropped after the test; it skips when the server is
unreachable (fails with OPENCEM_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import URL

from opencem.store import DATABASE_ENV, Database, database_for
from tests.conftest import require_service
from tests.test_services import pg_connect

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]


@pytest.fixture(autouse=True)
def _no_database_url(monkeypatch):
    # A developer's own $OPENCEM_DATABASE_URL must not turn the SQLite runs into PostgreSQL ones.
    monkeypatch.delenv(DATABASE_ENV, raising=False)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def database(backend, tmp_path) -> Iterator[Database]:
    """An empty store database: the workspace ``tmp_path / "ws"``'s SQLite file, or a new
    PostgreSQL schema."""
    if backend == "sqlite":
        yield database_for(tmp_path / "ws" / "store.sqlite", environ={})
        return
    from psycopg import sql

    host, port = require_service("postgres")
    schema = f"opencem_test_{uuid.uuid4().hex[:12]}"
    with pg_connect(host, port) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            url = URL.create("postgresql+psycopg", username=admin.info.user, host=host, port=port,
                             database="test", query={"options": f"-csearch_path={schema}"})
            yield Database(url, "the test")
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def url_of(database: Database) -> str:
    """The URL as ``$OPENCEM_DATABASE_URL`` would hold it."""
    return database.url.render_as_string(hide_password=False)


@pytest.fixture
def env(backend, database) -> dict[str, str]:
    """The environment a command needs to use ``database``: none for the workspace's SQLite
    file (the default), ``$OPENCEM_DATABASE_URL`` for PostgreSQL."""
    return {} if backend == "sqlite" else {DATABASE_ENV: url_of(database)}
