"""After evaluation: :class:`AlertEvent`s applied to the operational store, then routed,
grouped, silenced and inhibited into queued notifications and actions, as Alertmanager does,
on the event-time clock the caller passes (docs/alerting.md).

Idempotent: an event names its alert episode (fingerprint and episode start), states only move
forward (pending -> firing -> resolved; pending -> inactive when it ends unfired), and every
notification and action has an idempotency key made from the group, the channel and the flush
time (or the episode, for a message to a customer). Applying the same events again changes
nothing; two appliers at once are serialised by :func:`~opencem.store.alerting.lock_alerting`.
Everything happens in the caller's transaction; nothing here commits.

Grouping runs in event time: events are taken in time order and, before each, every group
flush due strictly earlier is run, so a flush at T sees exactly the events at or before T,
however the events were cut into batches. A pending alert that ends before firing is kept as
state ``inactive`` (never routed), so its pending event, delivered again, finds it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..store import alerting as repo
from ..store.models import LABEL_LENGTH, OBJECT_ID_LENGTH, Action, ActionStatus, Alert, AlertState
from ..store.repository import enqueue_notification, insert_once
from .alerting_spec import AlertingConfig, Integration, Route
from .events import AlertEvent
from .inhibit import Inhibitor
from .messages import fit, quiet_until, render_message
from .routing import group_key, match_routes
from .silences import SilenceIndex

RANK = {AlertState.inactive: 3, AlertState.pending: 1, AlertState.firing: 2, AlertState.resolved: 3}
CUSTOMER_ACTIONS = ("sms", "push")
TICK = timedelta(microseconds=1)


@dataclass
class ApplyReport:
    """What one call did: events taken, alert rows changed, flushes run, rows queued."""

    events: int = 0
    duplicates: int = 0      # events given twice in the call
    unchanged: int = 0       # already applied (or older than the row's state)
    orphans: int = 0         # a resolved/inactive event for an episode the store never saw
    opened: int = 0
    changed: int = 0
    flushes: int = 0
    notifications: int = 0
    actions: int = 0
    skipped: int = 0         # customer messages skipped (cool-down, quiet hours, no recipient)


def apply_events(session, events: Iterable[AlertEvent], config: AlertingConfig, now: datetime, *,
                 time_zones: Mapping[str, str] | None = None) -> ApplyReport:
    """Apply ``events`` to the store in ``session`` and run every group flush due by ``now``
    (event time: the stream's watermark, a replay's clock). ``time_zones`` maps subscriber_id
    to the IANA zone of their home cell (:func:`.messages.customer_time_zones`) for quiet
    hours; a customer missing from it lives by ``quiet_hours.default_time_zone``."""
    if now.tzinfo is None:
        raise ValueError(f"now {now.isoformat()} has no time zone; the alerting clock is UTC")
    repo.lock_alerting(session)
    given = list(events)
    unique = {e.key: e for e in given}
    run = _Run(session, config, time_zones or {}, ApplyReport(events=len(given), duplicates=len(given) - len(unique)))
    for event in sorted(unique.values(), key=lambda e: (e.at, RANK[e.state], e.key)):
        run.flush_until(event.at, inclusive=False)
        run.apply(event)
    run.flush_until(now, inclusive=True)
    return run.report


def _jsonable(value: Any) -> Any:
    """Evidence as JSON (times as ISO text, NaN as null)."""
    def default(v):
        return v.isoformat() if isinstance(v, datetime) else str(v)
    text = json.dumps(value, default=default, allow_nan=True)
    return json.loads(text, parse_constant=lambda _: None)


def _value(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else float(value)


class _Run:
    def __init__(self, session, config: AlertingConfig, zones: Mapping[str, str], report: ApplyReport):
        self.session, self.config, self.zones, self.report = session, config, zones, report
        self._inhibitors: dict[datetime, Inhibitor] = {}

    # --- events ---------------------------------------------------------------------------------

    def apply(self, event: AlertEvent) -> None:
        alert = repo.episode(self.session, event.fingerprint, event.episode_start)
        if alert is None:
            if event.state not in (AlertState.pending, AlertState.firing):
                self.report.orphans += 1
                return
            alert = self._open(event)
            if alert is None:
                return
        if RANK[event.state] <= RANK[alert.state]:  # a repeat, or older than what is stored
            self.report.unchanged += 1
            return
        self._move(alert, event)

    def _open(self, event: AlertEvent) -> Alert | None:
        for stale in repo.open_episodes(self.session, event.fingerprint):
            # An older episode of the series that never closed (its end was lost): it ends here.
            if stale.episode_start != event.episode_start:
                self._close(stale, event.at, note="superseded by a new episode")
        values = dict(
            rule_name=fit(event.rule_name, LABEL_LENGTH), fingerprint=event.fingerprint, labels=dict(event.labels),
            annotations=dict(event.annotations), state=event.state, object_type=fit(event.object_type, 32),
            object_id=fit(event.object_id, OBJECT_ID_LENGTH), window_start=event.window_start,
            window_minutes=max(1, int(event.window_minutes)), value=_value(event.value),
            value_unit=fit(event.value_unit, 16) if event.value_unit else None, started_at=event.at,
            resolved_at=None, episode_start=event.episode_start, updated_at=event.at,
            fired_at=event.at if event.state == AlertState.firing else None,
            evidence=_jsonable({"group": event.group, **event.evidence}))
        alert, created = repo.insert_episode(self.session, values)
        if not created:  # another applier got it in first (only without the lock)
            return alert
        self.report.opened += 1
        if alert.state == AlertState.firing:
            self._route(alert, event.at)
        return None

    def _move(self, alert: Alert, event: AlertEvent) -> None:
        self.report.changed += 1
        alert.updated_at = event.at
        if event.state == AlertState.firing:
            alert.state, alert.fired_at = AlertState.firing, event.at
            alert.window_start, alert.value = event.window_start, _value(event.value)
            alert.annotations = dict(event.annotations)
            alert.evidence = _jsonable({"group": event.group, **event.evidence})
            self.session.flush()
            self._route(alert, event.at)
            return
        self._close(alert, event.at)

    def _close(self, alert: Alert, at: datetime, note: str | None = None) -> None:
        if alert.state == AlertState.firing:
            alert.state, alert.resolved_at = AlertState.resolved, at
        else:  # pending that ended before firing: kept, never notified
            alert.state = AlertState.inactive
        alert.updated_at = at
        if note:
            alert.evidence = {**alert.evidence, "closed": note}
        self.session.flush()
        for group in repo.groups_of(self.session, alert.id):  # its groups tell (or drop) it at their next tick
            self._wake(group, self._route_of(group), at)

    def _route(self, alert: Alert, at: datetime) -> None:
        for route in match_routes(self.config.route, alert.labels):
            key, labels = group_key(route, alert.labels)
            group = repo.group_once(self.session, key, route.id, route.receiver, labels)
            repo.add_member(self.session, group.id, alert.id)
            self._wake(group, route, at)

    def _route_of(self, group) -> Route:
        return self.config.routes_by_id.get(group.route_id) or self.config.route

    def _wake(self, group, route: Route, at: datetime) -> None:
        """Something happened to the group at ``at``: a new active period starts after
        group_wait, or the next group_interval tick is brought forward to it."""
        if group.anchor_at is None:
            start = at + timedelta(seconds=route.group_wait_s)
            if group.last_flush_at is not None and start <= group.last_flush_at:
                start = group.last_flush_at + TICK  # a late event: never flush into the past
            group.anchor_at = group.flush_at = start
        else:
            after = max(at, group.last_flush_at + TICK) if group.last_flush_at else at
            tick = _next_tick(group.anchor_at, route.group_interval_s, after)
            group.flush_at = tick if group.flush_at is None else min(group.flush_at, tick)
        self.session.flush()

    # --- flushes --------------------------------------------------------------------------------

    def flush_until(self, until: datetime, inclusive: bool) -> None:
        while (group := repo.next_due_group(self.session, until, inclusive)) is not None:
            self._flush(group, group.flush_at)

    def _flush(self, group, at: datetime) -> None:
        self.report.flushes += 1
        route = self._route_of(group)
        integrations = self.config.receivers.get(group.receiver, ())
        alerts = repo.members(self.session, group.id)
        firing = [a for a in alerts if a.fired_at is not None and a.fired_at <= at
                  and (a.resolved_at is None or a.resolved_at > at)]
        resolved = {a.id for a in alerts if a.resolved_at is not None and a.resolved_at <= at}
        active, muted = self._unmuted(firing, at)
        notified = {k: dict(v) for k, v in (group.notified or {}).items()}
        for integration in integrations:
            state = notified.get(integration.channel, {"firing": [], "at": None})
            if integration.customer:
                state = self._customers(group, integration, active, resolved, state, at)
            else:
                state = self._operators(group, route, integration, active, resolved, alerts, state, at)
            notified[integration.channel] = state
        group.notified = notified
        group.last_flush_at = at
        repo.drop_members(self.session, group.id, resolved)
        still = [a for a in firing if a.id not in resolved]
        if not still:
            group.anchor_at = group.flush_at = None  # idle until an alert fires in it again
        elif muted:  # a silence may end or an inhibiting alert resolve at any tick
            group.flush_at = _next_tick(group.anchor_at, route.group_interval_s, at + TICK)
        else:
            group.flush_at = self._next_repeat(group, route, integrations, notified, at)
        self.session.flush()

    def _next_repeat(self, group, route: Route, integrations, notified, at: datetime) -> datetime | None:
        due = [datetime.fromisoformat(notified[i.channel]["at"]) + timedelta(seconds=route.repeat_interval_s)
               for i in integrations if not i.customer and notified.get(i.channel, {}).get("at")
               and notified[i.channel]["firing"]]
        return _next_tick(group.anchor_at, route.group_interval_s, max(min(due), at + TICK)) if due else None

    def _unmuted(self, firing: list[Alert], at: datetime) -> tuple[list[Alert], list[Alert]]:
        silences = SilenceIndex.at(self.session, at)
        inhibitor = None
        active, muted = [], []
        for alert in firing:
            alert.silenced_by = silences.silenced_by(alert.labels)
            alert.inhibited_by = None
            if alert.silenced_by is None and self.config.inhibit_rules:
                inhibitor = inhibitor or self._inhibitor(at)
                alert.inhibited_by = inhibitor.inhibited_by(alert.id, alert.labels)
            (muted if alert.silenced_by is not None or alert.inhibited_by is not None else active).append(alert)
        return active, muted

    def _inhibitor(self, at: datetime) -> Inhibitor:
        if at not in self._inhibitors:
            self._inhibitors = {at: Inhibitor(self.config.inhibit_rules,
                                              ((a.id, a.labels) for a in repo.alerts_firing_at(self.session, at)))}
        return self._inhibitors[at]

    def _operators(self, group, route: Route, integration: Integration, active: list[Alert], resolved: set[int],
                   alerts: list[Alert], state: dict, at: datetime) -> dict:
        """Alertmanager's dedup: notify when an alert fires that the last notice did not
        carry, when one it carried resolved (if send_resolved), or on repeat_interval."""
        told = set(state["firing"])
        now_ids = {a.id for a in active}
        new = now_ids - told
        gone = told & resolved
        last = datetime.fromisoformat(state["at"]) if state.get("at") else None
        repeat = bool(now_ids) and last is not None and at >= last + timedelta(seconds=route.repeat_interval_s)
        if not (new or repeat or (gone and integration.send_resolved)):
            return {"firing": sorted(told - resolved), "at": state.get("at")}
        if integration.type == "work_order":
            if new:
                self._work_order(group, integration, [a for a in active if a.id in new], at)
            return {"firing": sorted(now_ids), "at": at.isoformat()}
        by_id = {a.id: a for a in alerts}
        shown = active + [by_id[i] for i in sorted(gone)]
        payload = {
            "kind": "group", "status": "firing" if active else "resolved", "receiver": group.receiver,
            "channel": integration.channel, "group_key": group.group_key, "group_labels": group.group_labels,
            "at": at.isoformat(), "firing": len(active), "resolved": len(gone), "repeat": not new and not gone,
            "alerts": [_alert_json(a, at) for a in shown[:integration.max_alerts]],
            "alerts_left_out": max(0, len(shown) - integration.max_alerts),
        }
        key = fit(f"{group.group_key}|{integration.channel}|{at.isoformat()}", LABEL_LENGTH)
        row, created = enqueue_notification(self.session, alert_id=shown[0].id, channel=integration.channel,
                                            idempotency_key=key, next_attempt_at=at)
        if created:
            row.group_id, row.payload, row.scheduled_at = group.id, payload, at
            self.report.notifications += 1
        return {"firing": sorted(now_ids), "at": at.isoformat()}

    def _work_order(self, group, integration: Integration, new: list[Alert], at: datetime) -> None:
        key = fit(f"wo|{group.group_key}|{integration.channel}|{at.isoformat()}", LABEL_LENGTH)
        detail = {"sink": integration.sink, "queue": integration.queue, "priority": integration.priority,
                  "max_attempts": integration.max_attempts,
                  "receiver": group.receiver, "group_labels": group.group_labels,
                  "alerts": [_alert_json(a, at) for a in new[:100]], "evidence": new[0].evidence}
        initial = {"status": ActionStatus.requested, "decided_at": at, "detail": detail, "updated_at": at,
                   "next_attempt_at": None if integration.sink == "store" else at}
        _, created = insert_once(self.session, Action, key, {"action_type": "work_order", "subscriber_id": None,
                                                             "alert_id": new[0].id}, initial)
        self.report.actions += created

    # --- messages to customers ------------------------------------------------------------------

    def _customers(self, group, integration: Integration, active: list[Alert], resolved: set[int], state: dict,
                   at: datetime) -> dict:
        told = set(state["firing"])
        for alert in active:  # each episode once; a muted one when it is no longer muted
            if alert.id not in told:
                self._contact(group, integration, alert, at)
                told.add(alert.id)
        return {"firing": sorted(told - resolved), "at": state.get("at")}

    def _contact(self, group, integration: Integration, alert: Alert, at: datetime) -> None:
        """One message to the customer an alert is about, unless cool-down or quiet hours
        say otherwise (the action is kept as evidence either way)."""
        to = render_message(integration.to, alert.labels, alert.value, alert.annotations, 1_000_000, None)
        subscriber = fit(to, OBJECT_ID_LENGTH) if to else None
        key = fit(f"{integration.channel}|{alert.fingerprint}|{alert.episode_start.isoformat()}", LABEL_LENGTH)
        text = render_message(integration.text, alert.labels, alert.value, alert.annotations, integration.max_chars)
        detail: dict[str, Any] = {"receiver": group.receiver, "channel": integration.channel, "text": text,
                                  "rule": alert.rule_name, "labels": alert.labels, "value": alert.value,
                                  "window_start": alert.window_start.isoformat(), "evidence": alert.evidence}
        reason, send_at = None, at
        if subscriber is None:
            reason = "no recipient: the alert has no subscriber label for `to`"
        elif self.config.cool_down_s:
            prior = repo.customer_contact(self.session, subscriber, at - timedelta(seconds=self.config.cool_down_s),
                                          at, CUSTOMER_ACTIONS)
            if prior is not None:
                reason = f"cool_down: message {prior.id} to this customer at {prior.decided_at.isoformat()}"
        quiet = self.config.quiet_hours
        if reason is None and quiet is not None:
            zone = self.zones.get(subscriber) or quiet.default_time_zone
            until = quiet_until(at, zone, quiet)
            detail["time_zone"] = zone
            if until is not None and quiet.during == "skip":
                reason = f"quiet_hours: {at.isoformat()} is within quiet hours in {zone}"
            elif until is not None:
                send_at = until
                detail["held_until"] = until.isoformat()
        identity = {"action_type": integration.type, "subscriber_id": subscriber, "alert_id": alert.id}
        initial = {"decided_at": at, "updated_at": at, "detail": {**detail, **({"reason": reason} if reason else {})},
                   "status": ActionStatus.skipped if reason else ActionStatus.requested}
        action, created = insert_once(self.session, Action, key, identity, initial)
        if not created:
            return
        self.report.actions += 1
        if reason:
            self.report.skipped += 1
            return
        payload = {"kind": "customer", "type": integration.type, "to": subscriber, "text": text,
                   "title": integration.title, "channel": integration.channel, "alert_id": alert.id,
                   "at": at.isoformat(), "action_id": action.id}
        row, created = enqueue_notification(self.session, alert_id=alert.id, channel=integration.channel,
                                            idempotency_key=key, next_attempt_at=send_at)
        if created:
            row.payload, row.scheduled_at = payload, at
            self.session.flush()
            action.notification_id = row.id
            self.report.notifications += 1


def _next_tick(anchor: datetime, interval_s: int, after: datetime) -> datetime:
    """The first anchor + k * interval at or after ``after`` (k >= 0)."""
    if after <= anchor:
        return anchor
    step = timedelta(seconds=interval_s)
    k = -((anchor - after) // step)  # ceiling division on timedeltas
    return anchor + k * step


def _alert_json(alert: Alert, at: datetime) -> dict[str, Any]:
    def iso(t):
        return t.isoformat() if t else None
    status = "resolved" if alert.resolved_at is not None and alert.resolved_at <= at else "firing"
    return {"id": alert.id, "status": status, "rule": alert.rule_name, "labels": alert.labels,
            "annotations": alert.annotations, "value": alert.value, "value_unit": alert.value_unit,
            "object_type": alert.object_type, "object_id": alert.object_id,
            "window_start": iso(alert.window_start), "window_minutes": alert.window_minutes,
            "started_at": iso(alert.started_at), "fired_at": iso(alert.fired_at), "resolved_at": iso(alert.resolved_at),
            "fingerprint": alert.fingerprint, "evidence": alert.evidence}
