"""Shared by the alerting tests (routing, grouping, silences, inhibition, actions, dispatch):
the store on SQLite and PostgreSQL (the tests/store fixtures), AlertEvents built directly (the
contract with evaluation), and small readers of what apply_events left in the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from opencem.rules.alerting_spec import load_config
from opencem.rules.events import AlertEvent, fingerprint
from opencem.store import open_store
from opencem.store.models import Action, Alert, AlertState, Notification
from tests.store.conftest import _no_database_url, backend, database, env  # noqa: F401 - fixtures

FIXTURES = Path(__file__).with_name("fixtures") / "alerting"
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


@pytest.fixture
def store(database):  # noqa: F811
    with open_store(database) as store:
        yield store


def config_from(tmp_path: Path, text: str):
    path = tmp_path / "alerting.yaml"
    path.write_text(text)
    return load_config(path)


def event(rule: str, series: dict[str, str], state: AlertState, at: datetime, *, episode: datetime | None = None,
          labels: dict[str, str] | None = None, value: float | None = 3.0, object_type: str | None = None,
          previous: AlertState | None = None, annotations: dict[str, str] | None = None) -> AlertEvent:
    """One change of one series, with evaluation's labels: alertname, the rule's, the series'."""
    episode = episode or at
    object_type = object_type or next(iter(series)).removesuffix("_id")
    return AlertEvent(
        rule_name=rule, group="test", fingerprint=fingerprint(rule, series),
        labels={"alertname": rule, **(labels or {}), **series}, annotations=annotations or {"summary": f"{rule}"},
        state=state, previous=previous or AlertState.inactive, object_type=object_type,
        object_id=next(iter(series.values())), window_start=episode, window_minutes=15, episode_start=episode,
        at=at, value=value, value_unit=None, evidence={"expr": f"{rule} expr", "window_start": episode})


def fires(rule: str, series: dict[str, str], at: datetime, **kw) -> list[AlertEvent]:
    """Pending at ``at`` and firing one minute later (the usual start of an episode)."""
    return [event(rule, series, AlertState.pending, at, **kw),
            event(rule, series, AlertState.firing, at + MIN, episode=at, previous=AlertState.pending, **kw)]


def resolves(rule: str, series: dict[str, str], episode: datetime, at: datetime, **kw) -> AlertEvent:
    return event(rule, series, AlertState.resolved, at, episode=episode, previous=AlertState.firing, **kw)


def rows(session, model, *order) -> list:
    return list(session.scalars(sa.select(model).order_by(*(order or (model.id,)))))


def notices(session) -> list[Notification]:
    return rows(session, Notification)


def snapshot(session) -> dict:
    """Everything apply_events decides, without ids or wall-clock columns: equal snapshots
    mean equal outcomes."""
    alerts = {a.id: (a.fingerprint, a.episode_start) for a in rows(session, Alert)}
    return {
        "alerts": sorted((a.fingerprint, a.episode_start, a.state.value, a.fired_at, a.resolved_at, a.inhibited_by
                          is not None, a.silenced_by is not None) for a in rows(session, Alert)),
        "notifications": sorted((n.idempotency_key, n.channel, alerts[n.alert_id], n.next_attempt_at,
                                 n.payload.get("status"), n.payload.get("firing"), n.payload.get("resolved"),
                                 tuple(sorted(a["fingerprint"] for a in n.payload.get("alerts", []))))
                                for n in rows(session, Notification)),
        "actions": sorted((a.idempotency_key, a.action_type, a.subscriber_id, a.status.value, a.decided_at,
                           a.detail.get("reason", "")[:12]) for a in rows(session, Action)),
    }
