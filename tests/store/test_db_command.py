"""``opencem db upgrade`` and ``opencem db current`` on both databases (the workspace's SQLite
file by default, PostgreSQL through $OPENCEM_DATABASE_URL), and a bad URL in one sentence."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from opencem.store import DATABASE_ENV, current_revision, head_revision, open_store, upgrade
from opencem.store.models import Silence
from opencem.workspace import Workspace
from tests.cli.conftest import cli

T0 = datetime(2026, 11, 2, 8, 15, tzinfo=UTC)


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws")  # the folder the database fixture's SQLite file is in


def test_db_upgrade_twice_is_a_no_op(ws, env, database):
    head = head_revision()
    first = cli("db", "upgrade", ws=ws, env=env)
    assert first.exit_code == 0, first.output
    assert f"from nothing to revision {head}" in first.stdout
    with open_store(database) as store, store.transaction() as session:
        session.add(Silence(matchers=[], starts_at=T0, ends_at=T0.replace(hour=9), created_by="noc@op"))
    second = cli("db", "upgrade", ws=ws, env=env)
    assert second.exit_code == 0, second.output
    assert f"is at revision {head}, this opencem's; nothing to do" in second.stdout
    assert current_revision(database) == head
    with open_store(database) as store, store.transaction() as session:
        assert session.scalars(sa.select(Silence.created_by)).all() == ["noc@op"]


def test_db_current_shows_nothing_then_head_after_upgrade(ws, env, database):
    before = cli("db", "current", ws=ws, env=env)
    assert before.exit_code == 0 and "no store yet" in before.stdout
    assert not ws.store_file.exists() and not ws.root.exists()  # looking creates nothing
    cli("db", "upgrade", ws=ws, env=env)
    after = cli("db", "current", ws=ws, env=env)
    assert after.exit_code == 0, after.output
    assert after.stdout.strip().endswith(f"revision {head_revision()} (head)")
    assert database.shown in after.stdout
    assert ws.store_file.exists() == (database.sqlite_file is not None)


def test_a_store_behind_head_is_reported_then_upgraded(ws, env, database):
    upgrade(database, "0001")
    behind = cli("db", "current", ws=ws, env=env)
    assert behind.exit_code == 1
    assert f"revision 0001, behind this opencem's {head_revision()}; run `opencem db upgrade`" in behind.stdout
    up = cli("db", "upgrade", ws=ws, env=env)
    assert up.exit_code == 0 and f"from revision 0001 to revision {head_revision()}" in up.stdout
    assert cli("db", "current", ws=ws, env=env).exit_code == 0


def test_a_sqlite_file_named_by_the_variable_is_used_instead_of_the_workspaces(ws, tmp_path):
    elsewhere = tmp_path / "elsewhere.sqlite"
    out = cli("db", "upgrade", ws=ws, env={DATABASE_ENV: f"sqlite:///{elsewhere}"})
    assert out.exit_code == 0, out.output
    assert elsewhere.exists() and not ws.store_file.exists()


@pytest.mark.parametrize("url, says", [
    ("", "is set but empty"),
    ("not a url", "'not a url' is not a database URL"),
    ("postgresql://postgres@127.0.0.1:notaport/test", "is not a database URL"),
    ("mysql://opencem:secret@db.example/opencem", "names mysql databases (mysql://opencem:***@db.example/opencem)"),
    ("sqlite://", "names an in-memory SQLite database"),
    ("postgresql://postgres@127.0.0.1:1/test", "cannot connect to the store database"),  # nothing listens on port 1
])
@pytest.mark.parametrize("command", ["upgrade", "current"])
def test_a_bad_database_url_is_one_sentence_naming_the_variable(ws, url, says, command):
    out = cli("db", command, ws=ws, env={DATABASE_ENV: url})
    assert out.exit_code == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"${DATABASE_ENV}" in lines[0] and says in lines[0], out.stderr
    assert "Traceback" not in out.stderr and "secret" not in out.stderr
