"""Revision 0003 (routing, grouping, delivery) upgrades a store written at 0002 without losing a
row, on SQLite and PostgreSQL; the old rows read with the new columns' defaults and live on
beside new ones (an alert open before the upgrade is closed by its series' next episode)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from opencem.store import head_revision, open_store, upgrade
from opencem.store.database import create_engine
from opencem.store.models import Action, ActionStatus, Alert, AlertState, AuditEntry, Notification, NotificationStatus

T0 = datetime(2026, 11, 2, 8, 15, tzinfo=UTC)


def test_upgrade_from_0002_keeps_every_row_and_reads_the_new_columns_as_defaults(database):
    assert upgrade(database, "0002") == (None, "0002")
    engine = create_engine(database)
    with engine.begin() as con:  # rows as an opencem at revision 0002 wrote them (ids from the database: 1)
        t = {n: sa.Table(n, sa.MetaData(), autoload_with=con) for n in ("alerts", "notifications", "actions", "audit")}
        assert "evidence" not in t["alerts"].c and not sa.inspect(con).has_table("notification_groups")
        con.execute(t["alerts"].insert(), [dict(
            rule_name="RepeatedDroppedCalls", fingerprint="0123456789abcdef", labels={"subscriber_id": "S9"},
            annotations={"summary": "3 dropped calls"}, state="firing", object_type="subscriber", object_id="S9",
            window_start=T0, window_minutes=60, value=3.0, value_unit=None, started_at=T0, resolved_at=None)])
        con.execute(t["notifications"].insert(), [dict(
            alert_id=1, channel="sms", idempotency_key="n1", status="sent", attempts=1, next_attempt_at=None,
            last_error=None, created_at=T0)])
        con.execute(t["actions"].insert(), [dict(
            action_type="sms", subscriber_id="S9", alert_id=1, idempotency_key="a1", status="done",
            created_at=T0)])
        con.execute(t["audit"].insert(), [dict(
            at=T0, actor="noc@op", action="silence.add", entity_type="silences", entity_id="1", before=None,
            after={"comment": "planned works"})])
    engine.dispose()

    assert upgrade(database) == ("0002", head_revision())
    with open_store(database) as store, store.transaction() as session:
        alert = session.get(Alert, 1)
        assert (alert.rule_name, alert.labels, alert.annotations, alert.state, alert.value) == (
            "RepeatedDroppedCalls", {"subscriber_id": "S9"}, {"summary": "3 dropped calls"}, AlertState.firing, 3.0)
        assert (alert.evidence, alert.episode_start, alert.fired_at, alert.inhibited_by) == ({}, None, None, None)
        note = session.get(Notification, 1)
        assert (note.status, note.attempts, note.payload, note.group_id) == (NotificationStatus.sent, 1, {}, None)
        action = session.get(Action, 1)
        assert (action.status, action.subscriber_id, action.detail, action.attempts, action.decided_at) == (
            ActionStatus.done, "S9", {}, 0, None)
        assert session.get(AuditEntry, 1).after == {"comment": "planned works"}

    # The old open alert and a new episode of its series: the new one closes it.
    from opencem.rules.alerting_spec import load_config
    from opencem.rules.apply import apply_events
    from opencem.rules.events import AlertEvent

    new = AlertEvent(rule_name="RepeatedDroppedCalls", group="g", fingerprint="0123456789abcdef",
                     labels={"alertname": "RepeatedDroppedCalls", "subscriber_id": "S9", "action": "notify_customer"},
                     annotations={}, state=AlertState.firing, previous=AlertState.inactive, object_type="subscriber",
                     object_id="S9", window_start=T0 + timedelta(days=1), window_minutes=60,
                     episode_start=T0 + timedelta(days=1), at=T0 + timedelta(days=1), value=4.0, value_unit=None)
    with open_store(database) as store, store.transaction() as session:
        apply_events(session, [new], load_config(), T0 + timedelta(days=1, minutes=5))
    with open_store(database) as store, store.transaction() as session:
        old, fresh = session.scalars(sa.select(Alert).order_by(Alert.id)).all()
        assert (old.state, old.resolved_at) == (AlertState.resolved, T0 + timedelta(days=1))
        assert (fresh.state, fresh.episode_start, fresh.value) == (AlertState.firing, T0 + timedelta(days=1), 4.0)
        assert session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 2
