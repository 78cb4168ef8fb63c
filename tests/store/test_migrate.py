"""Schema revisions on both databases: a new store starts at head, an old one upgrades
without losing a row, models and migrations agree, and a store at another revision is refused
with the sentence that says what to do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from opencem.store import StoreError, StoreOutOfDate, current_revision, head_revision, open_store, revisions, upgrade
from opencem.store.database import create_engine
from opencem.store.migrate import VERSION_TABLE, downgrade
from opencem.store.models import Alert, AlertState, Base, Notification, RuleState, Silence

T0 = datetime(2026, 11, 2, 8, 15, tzinfo=UTC)
FIRST = "0001"


def raw(database):
    """A plain engine on the store (no revision check), for writing as an older opencem did."""
    return create_engine(database)


def test_the_revisions_are_a_line_from_the_first_to_head():
    assert revisions()[0] == FIRST and revisions()[-1] == head_revision() and len(revisions()) >= 2


def test_a_new_database_is_created_at_head_on_first_open(database):
    assert current_revision(database) is None
    with open_store(database) as store, store.transaction() as session:
        assert session.scalars(sa.select(Alert)).all() == []
    assert current_revision(database) == head_revision()


def test_upgrade_from_the_first_revision_keeps_every_row(database):
    assert upgrade(database, FIRST) == (None, FIRST)
    engine = raw(database)
    with engine.begin() as con:  # the rows an opencem at revision 0001 wrote, through its tables
        tables = {name: sa.Table(name, sa.MetaData(), autoload_with=con) for name in ("alerts", "rule_state", "silences")}
        assert "annotations" not in tables["alerts"].c and not sa.inspect(con).has_table("notifications")
        con.execute(tables["alerts"].insert(), [
            dict(id=1, rule_name="cell_stall_ratio_high", fingerprint="f1", labels={"cell_id": "C1", "severity": "major"},
                 state="firing", object_type="cell", object_id="C1", window_start=T0, window_minutes=15,
                 value=3.4, value_unit="%", started_at=T0 + timedelta(minutes=15), resolved_at=None),
            dict(id=2, rule_name="dropped_calls_3_in_60min", fingerprint="f2", labels={"subscriber_id": "S9"},
                 state="resolved", object_type="subscriber", object_id="S9", window_start=T0, window_minutes=60,
                 value=3.0, value_unit=None, started_at=T0, resolved_at=T0 + timedelta(hours=1)),
        ])
        con.execute(tables["rule_state"].insert(), [dict(
            id=1, rule_name="cell_stall_ratio_high", fingerprint="f1", state="pending", pending_since=T0,
            last_evaluated_at=T0 + timedelta(minutes=15), definition_version="v1")])
        con.execute(tables["silences"].insert(), [dict(
            id=1, matchers=[{"label": "site_id", "op": "=", "value": "S001"}], starts_at=T0,
            ends_at=T0 + timedelta(hours=4), created_by="noc@op", comment="planned works", created_at=T0)])
    engine.dispose()

    assert upgrade(database) == (FIRST, head_revision())
    with open_store(database) as store, store.transaction() as session:
        alerts = session.scalars(sa.select(Alert).order_by(Alert.id)).all()
        assert [(a.id, a.rule_name, a.labels, a.state, a.object_id, a.value, a.value_unit, a.started_at, a.resolved_at)
                for a in alerts] == [
            (1, "cell_stall_ratio_high", {"cell_id": "C1", "severity": "major"}, AlertState.firing, "C1", 3.4, "%",
             T0 + timedelta(minutes=15), None),
            (2, "dropped_calls_3_in_60min", {"subscriber_id": "S9"}, AlertState.resolved, "S9", 3.0, None, T0,
             T0 + timedelta(hours=1))]
        assert [a.annotations for a in alerts] == [{}, {}]  # the column the upgrade added
        state = session.get(RuleState, 1)
        assert (state.state, state.pending_since, state.definition_version) == (AlertState.pending, T0, "v1")
        silence = session.get(Silence, 1)
        assert (silence.matchers, silence.ends_at, silence.comment) == (
            [{"label": "site_id", "op": "=", "value": "S001"}], T0 + timedelta(hours=4), "planned works")
        # The new tables work with the old rows: a notification about the alert raised before the upgrade.
        session.add(Notification(alert_id=1, channel="email", idempotency_key="1:email"))
    with open_store(database) as store, store.transaction() as session:
        assert session.scalars(sa.select(Notification.alert_id)).all() == [1]


def test_downgrade_keeps_the_first_revisions_rows_and_constraints(database):
    with open_store(database) as store, store.transaction() as session:
        session.add(Alert(rule_name="r", fingerprint="f", state=AlertState.firing, object_type="cell",
                          object_id="C1", window_start=T0, window_minutes=15, started_at=T0,
                          annotations={"summary": "stalls"}))
    downgrade(database, FIRST)
    assert current_revision(database) == FIRST
    engine = raw(database)
    with engine.connect() as con:
        assert con.execute(sa.text("SELECT rule_name, state FROM alerts")).all() == [("r", "firing")]
        with pytest.raises(sa.exc.IntegrityError):  # still one open alert per fingerprint
            con.execute(sa.text("INSERT INTO alerts (rule_name, fingerprint, labels, state, object_type, object_id, "
                                "window_start, window_minutes, started_at) VALUES ('r', 'f', '{}', 'pending', 'cell', "
                                "'C1', :t, 15, :t)"), {"t": T0})
    engine.dispose()
    assert upgrade(database) == (FIRST, head_revision())


def test_the_models_and_the_migrations_agree(database):
    upgrade(database)
    engine = raw(database)
    with engine.connect() as con:
        context = MigrationContext.configure(con, opts={"compare_type": True, "version_table": VERSION_TABLE})
        assert compare_metadata(context, Base.metadata) == []  # a model changed without a migration?
    engine.dispose()


def test_a_store_behind_head_is_refused_with_the_command_to_run(database):
    upgrade(database, FIRST)
    with pytest.raises(StoreOutOfDate, match=r"revision 0001, older than this opencem's .*run `opencem db upgrade`"):
        open_store(database)
    assert current_revision(database) == FIRST  # opening never migrates an existing store


def test_a_store_from_a_newer_opencem_is_refused(database):
    upgrade(database)
    engine = raw(database)
    with engine.begin() as con:
        con.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    engine.dispose()
    for attempt in (open_store, upgrade):
        with pytest.raises(StoreError, match="revision 9999, which this opencem does not know"):
            attempt(database)


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    from opencem.store import database_for
    from opencem.store.database import BUSY_TIMEOUT_MS

    with open_store(database_for(tmp_path / "store.sqlite", environ={})) as store, store.engine.connect() as con:
        assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert con.exec_driver_sql("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_MS
        assert con.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
