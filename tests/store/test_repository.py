"""Writes that must happen once, on both databases: idempotency keys refuse duplicates, one
open alert per fingerprint, aware UTC times, the audit trail, and two writers at once."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from opencem.store import open_store
from opencem.store.models import Action, Alert, AlertState, AuditEntry, Notification, Silence
from opencem.store.repository import IdempotencyConflict, as_dict, enqueue_notification, record_action, record_audit
from tests.store.conftest import url_of

T0 = datetime(2026, 11, 2, 8, 15, tzinfo=UTC)
WRITER = Path(__file__).with_name("writer.py")


@pytest.fixture
def store(database):
    with open_store(database) as store:
        yield store


def alert(**values) -> Alert:
    return Alert(**{"rule_name": "cell_stall_ratio_high", "fingerprint": "f1", "state": AlertState.firing,
                    "object_type": "cell", "object_id": "C1", "window_start": T0, "window_minutes": 15,
                    "value": 3.4, "value_unit": "%", "started_at": T0, **values})


def new_alert_id(store) -> int:
    with store.transaction() as session:
        row = alert()
        session.add(row)
        session.flush()
        return row.id


@pytest.mark.parametrize("model, values", [
    (Notification, {"channel": "email"}),
    (Action, {"action_type": "sms", "subscriber_id": "S1"}),
])
def test_the_database_refuses_a_second_row_with_the_same_idempotency_key(store, model, values):
    alert_id = new_alert_id(store)
    with pytest.raises(sa.exc.IntegrityError), store.transaction() as session:
        session.add_all([model(alert_id=alert_id, idempotency_key="k", **values) for _ in range(2)])
    with store.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(model)) == 0  # the transaction rolled back


def test_a_notification_queued_twice_is_stored_once(store):
    alert_id = new_alert_id(store)
    with store.transaction() as session:
        first, created = enqueue_notification(session, alert_id=alert_id, channel="email", idempotency_key="a1:email")
        assert created and first.status == "queued" and first.attempts == 0
    with store.transaction() as session:  # a replayed window, after a restart, at another time
        again, created = enqueue_notification(session, alert_id=alert_id, channel="email", idempotency_key="a1:email",
                                              next_attempt_at=T0 + timedelta(minutes=5))
        assert not created and again.id == first.id
        assert session.scalars(sa.select(Notification.idempotency_key)).all() == ["a1:email"]


def test_an_idempotency_key_reused_for_another_action_is_a_bug_not_a_silent_drop(store):
    with store.transaction() as session:
        record_action(session, action_type="sms", subscriber_id="S1", idempotency_key="sms:S1:2026-11-02")
    with pytest.raises(IdempotencyConflict, match="subscriber_id.*'S1', 'S2'"), store.transaction() as session:
        record_action(session, action_type="sms", subscriber_id="S2", idempotency_key="sms:S1:2026-11-02")


def test_one_open_alert_per_fingerprint_and_resolved_ones_stay_as_history(store):
    with store.transaction() as session:
        session.add(alert())
    with pytest.raises(sa.exc.IntegrityError), store.transaction() as session:
        session.add(alert(state=AlertState.pending))
    with store.transaction() as session:
        old = session.scalars(sa.select(Alert)).one()
        old.state, old.resolved_at = AlertState.resolved, T0 + timedelta(hours=1)
    with store.transaction() as session:  # the same series fires again: a new episode
        session.add(alert(started_at=T0 + timedelta(hours=2)))
    with store.transaction() as session:
        assert session.scalars(sa.select(Alert.state).order_by(Alert.id)).all() == ["resolved", "firing"]


@pytest.mark.parametrize("values", [
    {"state": AlertState.resolved},  # resolved, but no resolved_at
    {"state": AlertState.firing, "resolved_at": T0},  # resolved_at on a firing alert
    {"window_minutes": 0},
])
def test_an_inconsistent_alert_is_refused(store, values):
    with pytest.raises(sa.exc.IntegrityError), store.transaction() as session:
        session.add(alert(**values))


def test_times_are_stored_as_instants_and_read_back_in_utc(store):
    paris = timezone(timedelta(hours=1))
    with store.transaction() as session:
        session.add(alert(started_at=datetime(2026, 11, 2, 9, 30, tzinfo=paris)))
    with store.transaction() as session:
        started = session.scalars(sa.select(Alert.started_at)).one()
        assert started == datetime(2026, 11, 2, 8, 30, tzinfo=UTC) and started.tzinfo == UTC
        assert session.scalars(sa.select(Alert.id).where(Alert.started_at > T0)).all() == [1]  # compared as instants
    with pytest.raises(sa.exc.StatementError, match="has no time zone"), store.transaction() as session:
        session.add(alert(fingerprint="f2", started_at=datetime(2026, 11, 2, 9, 30)))


def test_the_audit_keeps_who_did_what_with_before_and_after(store):
    with store.transaction() as session:
        silence = Silence(matchers=[{"label": "site_id", "op": "=", "value": "S001"}], starts_at=T0,
                          ends_at=T0 + timedelta(hours=4), created_by="noc@op", comment="planned works")
        session.add(silence)
        record_audit(session, actor="noc@op", action="silence.add", entity=silence, after=as_dict(silence))
    with store.transaction() as session:
        silence = session.scalars(sa.select(Silence)).one()
        before = as_dict(silence)
        silence.ends_at = T0 + timedelta(hours=1)
        record_audit(session, actor="noc@op", action="silence.expire", entity=silence, before=before,
                     after=as_dict(silence))
    with store.transaction() as session:
        entries = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
        assert [(e.actor, e.action, e.entity_type, e.entity_id) for e in entries] == [
            ("noc@op", "silence.add", "silences", "1"), ("noc@op", "silence.expire", "silences", "1")]
        assert entries[0].before is None and entries[0].after["comment"] == "planned works"
        assert (entries[1].before["ends_at"], entries[1].after["ends_at"]) == (
            "2026-11-02T12:15:00+00:00", "2026-11-02T09:15:00+00:00")
        assert entries[1].at.tzinfo == UTC


def test_two_writers_at_once_on_a_new_store_lose_nothing(database, tmp_path):
    """Two processes create the store at the same moment, then race on the same idempotency keys,
    a transaction per action: every key is stored once, and each shared key is won by exactly one."""
    count, start_at = 100, time.time() + 1.0  # both have imported everything by then
    if database.sqlite_file:
        database.sqlite_file.parent.mkdir()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    writers = [subprocess.Popen([sys.executable, str(WRITER), url_of(database), name, str(count), str(start_at),
                                 str(barrier)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("w1", "w2")]
    results = [w.communicate(timeout=60) for w in writers]
    assert [w.returncode for w in writers] == [0, 0], [err for _, err in results]
    first, began, ended = zip(*(out.split() for out, _ in results))
    assert max(map(float, began)) < min(map(float, ended)), "the writers did not overlap: the test proved nothing"
    assert sum(map(int, first)) == count
    with open_store(database) as store, store.transaction() as session:
        keys = session.scalars(sa.select(Action.idempotency_key)).all()
    expected = {f"{prefix}-{i}" for prefix in ("shared", "w1", "w2") for i in range(count)}
    assert len(keys) == len(expected) and set(keys) == expected
