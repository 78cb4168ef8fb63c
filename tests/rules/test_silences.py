"""Silences, on SQLite and PostgreSQL: added and expired with audit entries, refused when they
would mute everything or end before they start, judged at each flush's event time, and an alert
a silence kept quiet is told at the first group tick after the silence ends (or is expired)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from opencem.rules.alerting_spec import load_config
from opencem.rules.apply import apply_events
from opencem.rules.matchers import Matcher
from opencem.rules.silences import SilenceError, add_silence, expire_silence, silences
from opencem.store.models import Alert, AuditEntry, Notification
from tests.rules.alerting_support import (FIXTURES, MIN, T0, backend, database, fires, rows, store,  # noqa: F401
                                          _no_database_url)

CONFIG = load_config(FIXTURES / "grouping.yaml")  # group_wait 30 s, ticks every 5 min
SITE = {"site_id": "S1"}


def silence(store, *matchers, start=T0 - MIN, end=T0 + 60 * MIN, author="noc@op"):
    with store.transaction() as session:
        return add_silence(session, [Matcher.parse(m) for m in matchers], start, end, author, "planned works").id


def apply(store, events, now):
    with store.transaction() as session:
        apply_events(session, events, CONFIG, now)


def test_adding_and_expiring_a_silence_is_audited(store):
    sid = silence(store, 'site_id="S1"')
    with store.transaction() as session:
        expired = expire_silence(session, sid, "ops@op", T0 + 5 * MIN)
        assert expired.ends_at == T0 + 5 * MIN
    with store.transaction() as session:
        add, end = rows(session, AuditEntry)
        assert [s.id for s in silences(session, T0)] == [sid]
        assert silences(session, T0 + 6 * MIN) == [] and len(silences(session, T0 + 6 * MIN, expired=True)) == 1
    assert (add.action, add.actor, add.before, add.after["matchers"]) == (
        "silence.add", "noc@op", None, [{"label": "site_id", "op": "=", "value": "S1"}])
    assert (end.action, end.actor, end.entity_id, end.before["ends_at"], end.after["ends_at"]) == (
        "silence.expire", "ops@op", str(sid), (T0 + 60 * MIN).isoformat(), (T0 + 5 * MIN).isoformat())
    with pytest.raises(SilenceError, match="already ended"), store.transaction() as session:
        expire_silence(session, sid, "ops@op", T0 + 10 * MIN)


def test_a_silence_not_started_yet_expires_before_it_begins(store):
    sid = silence(store, 'cell_id="C1"', start=T0 + 60 * MIN, end=T0 + 120 * MIN)
    with store.transaction() as session:
        s = expire_silence(session, sid, "ops@op", T0)
        assert s.starts_at < s.ends_at == T0


@pytest.mark.parametrize("matchers, start, end, message", [
    ([], T0, T0 + MIN, "at least one matcher"),
    (['cell_id=~".*"'], T0, T0 + MIN, "would mute every alert"),
    (['cell_id!="C1"'], T0, T0 + MIN, "would mute every alert"),
    (['cell_id="C1"'], T0, T0, "at or before it starts"),
    (['cell_id="C1"'], T0, T0 + timedelta(days=400), "at most 366 days"),
])
def test_a_silence_that_cannot_be_is_one_sentence(store, matchers, start, end, message):
    with pytest.raises(SilenceError, match=message), store.transaction() as session:
        add_silence(session, [Matcher.parse(m) for m in matchers], start, end, "noc@op")
    with store.transaction() as session:
        assert rows(session, AuditEntry) == []
    with pytest.raises(SilenceError, match="no silence 999"), store.transaction() as session:
        expire_silence(session, 999, "x", T0)


def test_a_silenced_alert_is_told_at_the_first_tick_after_the_silence_ends(store):
    sid = silence(store, 'cell_id="C2"', end=T0 + 12 * MIN)
    events = fires("CellDown", {"cell_id": "C1"}, T0, labels=SITE) + fires("CellDown", {"cell_id": "C2"}, T0,
                                                                          labels=SITE)
    apply(store, events, T0 + 60 * MIN)
    with store.transaction() as session:
        got = [(n.scheduled_at - T0, sorted(a["labels"]["cell_id"] for a in n.payload["alerts"]))
               for n in rows(session, Notification)]
        c1, c2 = rows(session, Alert)
    first = MIN + 30 * MIN / 60  # 08:01:30; ticks at 08:06:30, 08:11:30, 08:16:30 (the silence ends 08:12)
    assert got == [(first, ["C1"]), (first + 15 * MIN, ["C1", "C2"])]
    assert (c1.silenced_by, c2.silenced_by) == (None, None)  # at the last flush nothing was muted
    with store.transaction() as session:
        assert sid in [s.id for s in silences(session, T0, expired=True)]


def test_expiring_a_silence_mid_group_tells_its_alert_at_the_next_tick(store):
    sid = silence(store, 'site_id="S1"', end=T0 + 24 * 60 * MIN)
    apply(store, fires("CellDown", {"cell_id": "C1"}, T0, labels=SITE), T0 + 20 * MIN)
    with store.transaction() as session:
        assert rows(session, Notification) == []
        (alert,) = rows(session, Alert)
        assert alert.silenced_by == sid
        expire_silence(session, sid, "ops@op", T0 + 22 * MIN)
    apply(store, [], T0 + 40 * MIN)
    with store.transaction() as session:
        (notice,) = rows(session, Notification)
    assert notice.scheduled_at == T0 + MIN + 30 * MIN / 60 + 25 * MIN  # the tick after 08:22: 08:26:30
