"""Alerts and silences as rows for the faces (``opencem alerts list|show``, ``opencem silences
list``, later the API and console): plain dicts, times aware UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import OpencemError
from ..store.alerting import actions_of, find_alerts, notifications_of
from ..store.models import Alert
from ..store.repository import as_dict
from .matchers import Matcher
from .silences import silences

ALERT_COLUMNS = ["id", "state", "rule_name", "object_type", "object_id", "value", "value_unit", "started_at",
                 "fired_at", "resolved_at", "labels", "summary"]


class NoSuchAlert(OpencemError):
    pass


def alert_rows(session, state: str | None = None, rule: str | None = None, labels: list[Matcher] | None = None,
               limit: int | None = 1_000) -> list[dict[str, Any]]:
    """Alerts, newest first, with the state, rule and label matchers given."""
    found = find_alerts(session, state, rule, None if labels else limit)
    if labels:
        found = [a for a in found if all(m.matches(a.labels) for m in labels)][:limit]
    return [_row(a) for a in found]


def _row(alert: Alert) -> dict[str, Any]:
    return {"id": alert.id, "state": alert.state.value, "rule_name": alert.rule_name,
            "object_type": alert.object_type, "object_id": alert.object_id, "value": alert.value,
            "value_unit": alert.value_unit, "started_at": alert.started_at, "fired_at": alert.fired_at,
            "resolved_at": alert.resolved_at, "labels": alert.labels,
            "summary": (alert.annotations or {}).get("summary", "")}


def alert_detail(session, alert_id: int) -> dict[str, Any]:
    """One alert with its evidence, why it was last left out (silence, inhibition), and the
    notifications and actions it caused."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NoSuchAlert(f"there is no alert {alert_id}; `opencem alerts list` shows them")
    out = as_dict(alert)
    out["state"] = alert.state.value
    out["notifications"] = [{"id": n.id, "channel": n.channel, "status": n.status.value, "attempts": n.attempts,
                             "scheduled_at": _iso(n.scheduled_at), "sent_at": _iso(n.sent_at),
                             "last_error": n.last_error} for n in notifications_of(session, alert_id)]
    out["actions"] = [{"id": a.id, "type": a.action_type, "status": a.status.value, "subscriber_id": a.subscriber_id,
                       "decided_at": _iso(a.decided_at), "reason": a.detail.get("reason"),
                       "external_ref": a.external_ref} for a in actions_of(session, alert_id)]
    return out


def silence_rows(session, now: datetime, expired: bool = False) -> list[dict[str, Any]]:
    return [{"id": s.id, "state": _silence_state(s, now), "matchers": ", ".join(str(Matcher.from_dict(m))
                                                                               for m in s.matchers),
             "starts_at": s.starts_at, "ends_at": s.ends_at, "created_by": s.created_by, "comment": s.comment}
            for s in silences(session, now, expired)]


def _silence_state(silence, now: datetime) -> str:
    if silence.ends_at <= now:
        return "expired"
    return "active" if silence.starts_at <= now else "pending"


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None
