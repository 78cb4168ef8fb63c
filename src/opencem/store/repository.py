"""Writes that must happen once: notifications and actions keyed by an idempotency key, and
the audit trail. Every function takes the caller's session and leaves the commit to it, so an
alert, the notifications it causes and the broker acknowledgement can share one transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import Action, AuditEntry, Base, Notification

Row = TypeVar("Row", Notification, Action)
_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


class IdempotencyConflict(ValueError):
    """An idempotency key used again for a different notification or action: a bug in the
    caller's key, which would otherwise silently drop the second one."""


def insert_once(session: Session, model: type[Row], idempotency_key: str, identity: dict[str, Any],
                initial: dict[str, Any] | None = None) -> tuple[Row, bool]:
    """The row of ``model`` with ``idempotency_key``, inserted with ``identity`` and ``initial``
    values unless one is there already; (row, whether this call inserted it). Safe against a
    concurrent writer using the same key: the database keeps one, and both callers get it. A
    row already there with other ``identity`` values is an :class:`IdempotencyConflict`."""
    values = {**(initial or {}), **identity, "idempotency_key": idempotency_key}
    insert = _INSERT[session.get_bind().dialect.name](model).values(**values)
    # RETURNING, not rowcount: the drivers disagree on rowcount for a skipped insert.
    inserted = session.execute(insert.on_conflict_do_nothing(index_elements=["idempotency_key"])
                               .returning(model.id)).scalar_one_or_none()
    row = session.scalars(sa.select(model).where(model.idempotency_key == idempotency_key)).one()
    if inserted is None:
        differ = {k: (getattr(row, k), v) for k, v in identity.items() if getattr(row, k) != v}
        if differ:
            raise IdempotencyConflict(f"idempotency key {idempotency_key!r} already names a {model.__tablename__} "
                                      f"row with other values (stored, given): {differ}")
    return row, inserted is not None


def enqueue_notification(session: Session, *, alert_id: int, channel: str, idempotency_key: str,
                         next_attempt_at: datetime | None = None) -> tuple[Notification, bool]:
    """Queue one notification about an alert on a channel, once per ``idempotency_key``
    (``next_attempt_at`` only counts for the first)."""
    return insert_once(session, Notification, idempotency_key, {"alert_id": alert_id, "channel": channel},
                       {"next_attempt_at": next_attempt_at})


def record_action(session: Session, *, action_type: str, idempotency_key: str, subscriber_id: str | None = None,
                  alert_id: int | None = None) -> tuple[Action, bool]:
    """Record an action (an SMS to ``subscriber_id``, a webhook, a work order), once per key."""
    return insert_once(session, Action, idempotency_key,
                       {"action_type": action_type, "subscriber_id": subscriber_id, "alert_id": alert_id})


def record_audit(session: Session, *, actor: str, action: str, entity: Base,
                 before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> AuditEntry:
    """Note that ``actor`` did ``action`` (``silence.add``, ...) to ``entity``, with its state
    before and after as JSON-able dicts (None for a creation or a deletion)."""
    session.flush()  # a new entity gets its id
    entry = AuditEntry(actor=actor, action=action, entity_type=entity.__tablename__,
                       entity_id=str(entity.id), before=before, after=after)
    session.add(entry)
    return entry


def as_dict(entity: Base) -> dict[str, Any]:
    """An entity's columns as a JSON-able dict (times as ISO 8601 in UTC), for the audit."""
    out = {}
    for column in entity.__table__.columns:
        value = getattr(entity, column.key)
        out[column.key] = value.isoformat() if isinstance(value, datetime) else value
    return out
