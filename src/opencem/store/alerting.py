"""The queries of routing, grouping, silences and delivery (rules/apply.py, rules/dispatch.py,
rules/silences.py): the only place above the models where they are written in SQL. Every
function takes the caller's session and leaves the commit to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .models import (Action, ActionStatus, Alert, AlertState, GroupMember, Notification, NotificationGroup,
                     NotificationStatus, Silence)
from .repository import _INSERT

_PG_ALERTING_LOCK = 0x6F63656D616C7274  # "ocemalrt": one applier of alert events at a time
OPEN = (AlertState.pending, AlertState.firing)
PENDING_DELIVERY = (NotificationStatus.queued, NotificationStatus.retrying)


def lock_alerting(session: Session) -> None:
    """Serialise appliers of alert events until the transaction ends: on PostgreSQL an
    advisory lock (two streams applying the same events then cannot deadlock on the group
    rows they both touch); SQLite's ``BEGIN IMMEDIATE`` already holds the database's."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_ALERTING_LOCK})


def _insert(session: Session, model, values: dict[str, Any], conflict: list[str]) -> int | None:
    insert = _INSERT[session.get_bind().dialect.name](model).values(**values)
    return session.execute(insert.on_conflict_do_nothing(index_elements=conflict)
                           .returning(model.id)).scalar_one_or_none()


# --- alerts -------------------------------------------------------------------------------------

def episode(session: Session, fingerprint: str, episode_start: datetime) -> Alert | None:
    """The alert row of one episode, if there is one."""
    return session.scalars(sa.select(Alert).where(Alert.fingerprint == fingerprint,
                                                  Alert.episode_start == episode_start)).one_or_none()


def insert_episode(session: Session, values: dict[str, Any]) -> tuple[Alert, bool]:
    """The episode's row, inserted with ``values`` unless it is there; (row, inserted)."""
    inserted = _insert(session, Alert, values, ["fingerprint", "episode_start"])
    row = episode(session, values["fingerprint"], values["episode_start"])
    session.refresh(row)
    return row, inserted is not None


def open_episodes(session: Session, fingerprint: str) -> list[Alert]:
    return list(session.scalars(sa.select(Alert).where(Alert.fingerprint == fingerprint, Alert.state.in_(OPEN))))


def alerts_firing_at(session: Session, at: datetime) -> list[Alert]:
    """Alerts firing at ``at`` (event time): fired by then and not resolved by then."""
    return list(session.scalars(sa.select(Alert).where(
        Alert.fired_at <= at, sa.or_(Alert.resolved_at.is_(None), Alert.resolved_at > at),
        Alert.state.in_((AlertState.firing, AlertState.resolved)))))


def find_alerts(session: Session, state: str | None = None, rule: str | None = None,
                limit: int | None = None) -> list[Alert]:
    query = sa.select(Alert).order_by(Alert.id.desc())
    if state is not None:
        query = query.where(Alert.state == state)
    if rule is not None:
        query = query.where(Alert.rule_name == rule)
    return list(session.scalars(query.limit(limit)))


def episode_counts(session: Session, start: datetime, end: datetime) -> dict[str, int]:
    """Alerts that fired in [start, end): all of them and those no inhibition suppressed."""
    fired = sa.and_(Alert.fired_at >= start, Alert.fired_at < end)
    total = session.scalar(sa.select(sa.func.count()).select_from(Alert).where(fired))
    roots = session.scalar(sa.select(sa.func.count()).select_from(Alert).where(fired, Alert.inhibited_by.is_(None)))
    return {"fired": total or 0, "not_inhibited": roots or 0}


# --- notification groups ------------------------------------------------------------------------

def group_once(session: Session, group_key: str, route_id: str, receiver: str,
               labels: dict[str, str]) -> NotificationGroup:
    _insert(session, NotificationGroup, {"group_key": group_key, "route_id": route_id, "receiver": receiver,
                                         "group_labels": labels, "notified": {}}, ["group_key"])
    return session.scalars(sa.select(NotificationGroup).where(NotificationGroup.group_key == group_key)).one()


def add_member(session: Session, group_id: int, alert_id: int) -> bool:
    return _insert(session, GroupMember, {"group_id": group_id, "alert_id": alert_id}, ["group_id", "alert_id"]) \
        is not None


def groups_of(session: Session, alert_id: int) -> list[NotificationGroup]:
    return list(session.scalars(sa.select(NotificationGroup).join(GroupMember, GroupMember.group_id ==
                                                                  NotificationGroup.id)
                                .where(GroupMember.alert_id == alert_id)))


def next_due_group(session: Session, until: datetime, inclusive: bool) -> NotificationGroup | None:
    """The group flushed next if its flush is before ``until`` (or at it, ``inclusive``)."""
    due = NotificationGroup.flush_at <= until if inclusive else NotificationGroup.flush_at < until
    return session.scalars(sa.select(NotificationGroup).where(NotificationGroup.flush_at.is_not(None), due)
                           .order_by(NotificationGroup.flush_at, NotificationGroup.id).limit(1)).one_or_none()


def members(session: Session, group_id: int) -> list[Alert]:
    return list(session.scalars(sa.select(Alert).join(GroupMember, GroupMember.alert_id == Alert.id)
                                .where(GroupMember.group_id == group_id).order_by(Alert.id)))


def drop_members(session: Session, group_id: int, alert_ids: Iterable[int]) -> None:
    ids = list(alert_ids)
    if ids:
        session.execute(sa.delete(GroupMember).where(GroupMember.group_id == group_id,
                                                     GroupMember.alert_id.in_(ids)))


# --- silences -----------------------------------------------------------------------------------

def silences_active_at(session: Session, at: datetime) -> list[Silence]:
    return list(session.scalars(sa.select(Silence).where(Silence.starts_at <= at, Silence.ends_at > at)
                                .order_by(Silence.id)))


def list_silences(session: Session, now: datetime, expired: bool = False) -> list[Silence]:
    query = sa.select(Silence).order_by(Silence.id)
    if not expired:
        query = query.where(Silence.ends_at > now)
    return list(session.scalars(query))


# --- actions and delivery -----------------------------------------------------------------------

def customer_contact(session: Session, subscriber_id: str, after: datetime, until: datetime,
                     types: Sequence[str]) -> Action | None:
    """The latest message to a customer decided in (after, until] and not failed or skipped."""
    return session.scalars(sa.select(Action).where(
        Action.subscriber_id == subscriber_id, Action.action_type.in_(types),
        Action.status.in_((ActionStatus.requested, ActionStatus.done)),
        Action.decided_at > after, Action.decided_at <= until).order_by(Action.decided_at.desc()).limit(1)).first()


def due_notifications(session: Session, now: datetime, limit: int) -> list[Notification]:
    """Notifications to try now: queued or retrying and due by ``now``, oldest first."""
    return list(session.scalars(sa.select(Notification).where(
        Notification.status.in_(PENDING_DELIVERY),
        sa.or_(Notification.next_attempt_at.is_(None), Notification.next_attempt_at <= now))
        .order_by(Notification.next_attempt_at, Notification.id).limit(limit)))


def due_work_orders(session: Session, now: datetime, limit: int) -> list[Action]:
    return list(session.scalars(sa.select(Action).where(
        Action.action_type == "work_order", Action.status == ActionStatus.requested,
        Action.next_attempt_at.is_not(None), Action.next_attempt_at <= now).order_by(Action.id).limit(limit)))


def claim(session: Session, model, row_id: int, attempts: int, values: dict[str, Any]) -> bool:
    """Take a notification or work order for one attempt: set ``values`` if nobody else took
    it since it was read with ``attempts`` (a compare-and-set on the attempt count)."""
    result = session.execute(sa.update(model).where(model.id == row_id, model.attempts == attempts)
                             .values(attempts=attempts + 1, **values))
    return result.rowcount == 1


def actions_of_notification(session: Session, notification_id: int) -> list[Action]:
    return list(session.scalars(sa.select(Action).where(Action.notification_id == notification_id)))


def notifications_of(session: Session, alert_id: int) -> list[Notification]:
    return list(session.scalars(sa.select(Notification).where(Notification.alert_id == alert_id)
                                .order_by(Notification.id)))


def actions_of(session: Session, alert_id: int) -> list[Action]:
    return list(session.scalars(sa.select(Action).where(Action.alert_id == alert_id).order_by(Action.id)))


def operator_notifications(session: Session, start: datetime, end: datetime) -> list[Notification]:
    """Group notifications decided in [start, end) (customer messages have no group)."""
    return list(session.scalars(sa.select(Notification).where(
        Notification.group_id.is_not(None), Notification.scheduled_at >= start, Notification.scheduled_at < end)))
