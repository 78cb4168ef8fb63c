"""Applying AlertEvents and grouping them in event time, on SQLite and PostgreSQL: one alert row
per episode moving only forward, group_wait / group_interval / repeat_interval on the clock
the caller passes, the same outcome however the events are cut into batches, and nothing
changed when the same events come again (in one call, in a second call, or from two writers
at once)."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from opencem.rules.apply import _next_tick, apply_events
from opencem.rules.alerting_spec import load_config
from opencem.store.models import Alert, AlertState, NotificationGroup
from tests.rules.alerting_support import (FIXTURES, MIN, T0, backend, database, env, event, fires, notices,  # noqa: F401
                                          resolves, rows, snapshot, store, _no_database_url)
from tests.store.conftest import url_of

CONFIG = load_config(FIXTURES / "grouping.yaml")
SITE = {"site_id": "S1"}
APPLIER = Path(__file__).with_name("fixtures") / "alerting" / "applier.py"


def cell(c: str, at=T0, **kw):
    return fires("CellDown", {"cell_id": c}, at, labels=SITE, **kw)


def apply(store, events, now, config=CONFIG):
    with store.transaction() as session:
        return apply_events(session, events, config, now)


def test_cells_of_one_site_firing_within_group_wait_make_one_notice(store):
    events = cell("C1") + cell("C2", T0 + 10 * MIN / 60) + cell("C3", T0 + 20 * MIN / 60)
    report = apply(store, events, T0 + 10 * MIN)
    with store.transaction() as session:
        (notice,) = notices(session)
        alerts = rows(session, Alert)
    assert (report.opened, report.changed, report.notifications) == (3, 3, 1)
    assert [a.state for a in alerts] == [AlertState.firing] * 3
    assert all(a.episode_start == a.started_at and a.evidence["expr"] == "CellDown expr" for a in alerts)
    # The group's first alert fired at T0 + 1 min: the notice waits group_wait (30 s) for the others.
    assert notice.scheduled_at == notice.next_attempt_at == T0 + MIN + 30 * MIN / 60
    assert (notice.payload["status"], notice.payload["firing"], notice.payload["group_labels"]) == (
        "firing", 3, {"alertname": "CellDown", "site_id": "S1"})
    assert sorted(a["labels"]["cell_id"] for a in notice.payload["alerts"]) == ["C1", "C2", "C3"]


def test_a_later_alert_waits_for_the_next_group_interval_tick_and_resolving_is_told_once(store):
    apply(store, cell("C1"), T0 + 2 * MIN)                       # notice at 08:01:30 (anchor)
    apply(store, cell("C2", T0 + 7 * MIN), T0 + 20 * MIN)         # fires 08:08 -> tick 08:11:30
    apply(store, [resolves("CellDown", {"cell_id": "C1"}, T0, T0 + 25 * MIN, labels=SITE),
                  resolves("CellDown", {"cell_id": "C2"}, T0 + 7 * MIN, T0 + 26 * MIN, labels=SITE)], T0 + 40 * MIN)
    with store.transaction() as session:
        got = [(n.scheduled_at, n.payload["status"], n.payload["firing"], n.payload["resolved"]) for n in notices(session)]
        (group,) = rows(session, NotificationGroup)
        assert (group.flush_at, group.anchor_at) == (None, None)  # idle: every alert resolved and told
    t = T0 + MIN + 30 * MIN / 60
    assert got == [(t, "firing", 1, 0), (t + 10 * MIN, "firing", 2, 0), (t + 25 * MIN, "resolved", 0, 2)]


def test_repeat_interval_repeats_on_a_tick_when_nothing_changed(store):
    apply(store, cell("C1"), T0 + 3 * 60 * MIN)
    with store.transaction() as session:
        got = [(n.scheduled_at - T0, n.payload["repeat"]) for n in notices(session)]
    first = MIN + 30 * MIN / 60
    assert got == [(first, False), (first + 60 * MIN, True), (first + 120 * MIN, True)]


def test_the_same_events_twice_change_nothing_nor_do_duplicates_in_one_call(store):
    events = cell("C1") + cell("C2")
    first = apply(store, events + events[:2], T0 + 30 * MIN)
    assert first.duplicates == 2
    with store.transaction() as session:
        before = snapshot(session)
    again = apply(store, list(reversed(events)), T0 + 30 * MIN)
    with store.transaction() as session:
        assert snapshot(session) == before
    assert (again.unchanged, again.opened, again.changed, again.notifications, again.flushes) == (4, 0, 0, 0, 0)


def test_states_only_move_forward_and_an_unfired_pending_is_kept_inactive(store):
    series = {"cell_id": "C9"}
    pending = event("CellDown", series, AlertState.pending, T0, labels=SITE)
    ended = event("CellDown", series, AlertState.inactive, T0 + 5 * MIN, episode=T0, labels=SITE)
    apply(store, [ended, pending], T0 + 60 * MIN)       # given out of order: sorted by event time
    apply(store, [pending], T0 + 61 * MIN)              # delivered again after it ended: still ended
    late_firing = event("CellDown", series, AlertState.firing, T0 + 6 * MIN, episode=T0, labels=SITE)
    report = apply(store, [late_firing], T0 + 62 * MIN)  # an ended episode does not come back
    with store.transaction() as session:
        (alert,) = rows(session, Alert)
        assert (alert.state, alert.resolved_at, alert.fired_at, alert.updated_at) == (
            AlertState.inactive, None, None, T0 + 5 * MIN)
        assert notices(session) == []
    assert report.unchanged == 1


def test_a_resolved_event_for_an_episode_never_seen_is_counted_not_stored(store):
    report = apply(store, [resolves("CellDown", {"cell_id": "C1"}, T0, T0 + MIN, labels=SITE)], T0 + 2 * MIN)
    with store.transaction() as session:
        assert rows(session, Alert) == []
    assert report.orphans == 1


def test_a_new_episode_closes_an_older_one_whose_end_was_lost(store):
    apply(store, cell("C1"), T0 + 2 * MIN)
    apply(store, cell("C1", T0 + 60 * MIN), T0 + 62 * MIN)  # same series, a new episode, no resolve seen
    with store.transaction() as session:
        old, new = rows(session, Alert)
    assert (old.state, old.resolved_at, old.evidence["closed"]) == (AlertState.resolved, T0 + 60 * MIN,
                                                                    "superseded by a new episode")
    assert (new.state, new.episode_start) == (AlertState.firing, T0 + 60 * MIN)


def day_of_events(seed: int):
    """Fifty cells at five sites firing and resolving over a few hours, in time order."""
    rng = random.Random(seed)
    out = []
    for i in range(50):
        start = T0 + rng.randrange(0, 180) * MIN
        series, labels = {"cell_id": f"C{i}"}, {"site_id": f"S{i % 5}"}
        out += fires("CellDown", series, start, labels=labels)
        if rng.random() < 0.7:
            out.append(resolves("CellDown", series, start, start + rng.randrange(5, 90) * MIN, labels=labels))
    return sorted(out, key=lambda e: e.at)


def test_grouping_gives_the_same_outcome_however_the_events_are_cut_into_batches(tmp_path):
    from opencem.store import database_for, open_store

    events = day_of_events(3)
    end = T0 + 6 * 60 * MIN
    with open_store(database_for(tmp_path / "whole" / "store.sqlite", environ={})) as store:
        apply(store, events, end)
        with store.transaction() as session:
            whole = snapshot(session)
    # Another store: one batch per few events, each applied with the clock at its last event
    # (a stream's watermark), then the same end.
    rng = random.Random(5)
    with open_store(database_for(tmp_path / "cut" / "store.sqlite", environ={})) as store:
        i = 0
        while i < len(events):
            n = rng.randrange(1, 12)
            batch = events[i:i + n]
            apply(store, batch, batch[-1].at)
            i += n
        apply(store, [], end)
        with store.transaction() as session:
            cut = snapshot(session)
    assert cut == whole
    assert len(whole["notifications"]) > 10  # the comparison is of something


def test_two_writers_applying_the_same_events_at_once_store_them_once(store, tmp_path):
    events = day_of_events(4)
    end = T0 + 6 * 60 * MIN
    errors = []

    def writer():
        try:
            apply(store, events, end)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with store.transaction() as session:
        both = snapshot(session)
    from opencem.store import database_for, open_store

    with open_store(database_for(tmp_path / "once" / "store.sqlite", environ={})) as once:
        apply(once, events, end)  # the reference: the same events, applied once, elsewhere
        with once.transaction() as session:
            assert snapshot(session) == both
    assert len(both["alerts"]) == 50 and len(both["notifications"]) > 10


def test_two_processes_applying_the_same_events_at_once_store_them_once(tmp_path, backend, database, env):
    """Two real processes (the stream on two machines, say) apply one day's events at the same
    moment; the store holds what one would have written."""
    from opencem.store import open_store

    open_store(database).close()  # created before either starts
    start_at = __import__("time").time() + 2
    procs = [subprocess.Popen([sys.executable, str(APPLIER), url_of(database), str(start_at), "4"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2]) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    created = sorted(int(o.split()[0]) for o, _ in outs)
    with open_store(database) as store, store.transaction() as session:
        both = snapshot(session)
    assert created[0] == 0 and created[1] == len(both["notifications"]) > 10  # one wrote them all


def test_next_tick_is_the_first_anchor_multiple_at_or_after():
    step = 300
    assert _next_tick(T0, step, T0 - MIN) == T0
    assert _next_tick(T0, step, T0) == T0
    assert _next_tick(T0, step, T0 + MIN / 60 / 1000) == T0 + 5 * MIN
    assert _next_tick(T0, step, T0 + 5 * MIN) == T0 + 5 * MIN
    assert _next_tick(T0, step, T0 + 11 * MIN) == T0 + 15 * MIN
