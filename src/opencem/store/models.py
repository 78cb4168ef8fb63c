"""The operational store's tables, as typed SQLAlchemy models.

Alerts and their rule state, silences, the notifications and actions alerts cause, and an audit
trail. Every timestamp is timezone-aware UTC (``*_at``, ``*_since``, ``window_start``): a naive
datetime is refused on write and every value reads back with ``tzinfo=UTC``, on SQLite too.
The migrations in ``migrations/versions/`` create these tables; a test checks they agree.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, DateTime, Double, Enum, ForeignKey, Index, MetaData, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Constraint names are part of the schema: migrations name them the same way, so a later
# migration can drop or alter one by name on both databases.
NAMING = {
    "pk": "pk_%(table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "ix": "ix_%(table_name)s_%(column_0_name)s",
}
LABEL_LENGTH = 200     # rule names, fingerprints, idempotency keys, actors
OBJECT_ID_LENGTH = 100  # cell_id, site_id, subscriber_id, ...

# JSON everywhere, stored as JSONB on PostgreSQL (indexable, compared by value).
JSONDocument = JSON().with_variant(JSONB(), "postgresql")


def utc_now() -> datetime:
    return datetime.now(UTC)


def no_labels() -> dict[str, Any]:
    return {}


class UTCDateTime(TypeDecorator):
    """A point in time, always aware and in UTC. SQLite keeps no zone, so values are stored
    there as naive UTC and given ``UTC`` back on read; PostgreSQL keeps ``timestamptz``."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"the store keeps aware UTC times; {value.isoformat()} has no time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AlertState(enum.StrEnum):
    """Prometheus's alert states, with resolved for an alert that fired and stopped."""

    inactive = "inactive"
    pending = "pending"
    firing = "firing"
    resolved = "resolved"


class NotificationStatus(enum.StrEnum):
    queued = "queued"      # not tried yet
    retrying = "retrying"  # tried and failed; tried again at next_attempt_at
    sent = "sent"
    failed = "failed"      # given up after its attempts


class ActionStatus(enum.StrEnum):
    requested = "requested"
    done = "done"
    failed = "failed"
    skipped = "skipped"    # quiet hours, cool-down, an opted-out subscriber: kept as evidence


def _states(enum_type: type[enum.StrEnum], name: str) -> Enum:
    # A VARCHAR with a CHECK, not a native PostgreSQL enum: a new state is then a new CHECK,
    # the same migration on both databases.
    return Enum(enum_type, name=name, native_enum=False, create_constraint=True, length=16,
                values_callable=lambda members: [m.value for m in members])


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), float: Double(),
                           dict[str, Any]: JSONDocument, list[Any]: JSONDocument}


class Alert(Base):
    """One episode of an alert: from its first pending evaluation until it resolves, with the
    evidence that raised it (the rule, the object, the window and the value). An alert that
    resolves and fires again is a new row with the same fingerprint."""

    __tablename__ = "alerts"
    __table_args__ = (
        # At most one open (pending or firing) episode per fingerprint; resolved ones are history.
        Index("uq_alerts_open_fingerprint", "fingerprint", unique=True,
              sqlite_where=text("state IN ('pending', 'firing')"),
              postgresql_where=text("state IN ('pending', 'firing')")),
        CheckConstraint("(state = 'resolved') = (resolved_at IS NOT NULL)", name="resolved_at_iff_resolved"),
        CheckConstraint("window_minutes > 0", name="window_minutes_positive"),
        # 0003: one row per episode an AlertEvent names (old rows have no episode_start)
        Index("uq_alerts_fingerprint_episode_start", "fingerprint", "episode_start", unique=True),
        Index("ix_alerts_fired_at", "fired_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_name: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    fingerprint: Mapped[str] = mapped_column(String(LABEL_LENGTH))  # the rule and its labels, hashed
    labels: Mapped[dict[str, Any]] = mapped_column(default=no_labels)
    annotations: Mapped[dict[str, Any]] = mapped_column(default=no_labels, server_default=text("'{}'"))
    state: Mapped[AlertState] = mapped_column(_states(AlertState, "state"))
    object_type: Mapped[str] = mapped_column(String(32))  # cell, site, subscriber, city, ...
    object_id: Mapped[str] = mapped_column(String(OBJECT_ID_LENGTH))
    window_start: Mapped[datetime]
    window_minutes: Mapped[int]
    value: Mapped[float | None]  # the expression's value in that window, in value_unit
    value_unit: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    # 0003: what routing needs. The episode (fingerprint, episode_start) is the identity an
    # AlertEvent names, so applying an event twice finds its row; the evidence is the rule, its
    # operands and the window as evaluation gave them. Times are event time.
    episode_start: Mapped[datetime | None]  # None for alerts raised before 0003
    evidence: Mapped[dict[str, Any]] = mapped_column(default=no_labels, server_default=text("'{}'"))
    fired_at: Mapped[datetime | None]       # when it went from pending to firing
    updated_at: Mapped[datetime | None]     # event time of the last change applied
    # The last flush that left it out of a notification says why (ids, no foreign key: a
    # column added to SQLite cannot take one without copying the table).
    inhibited_by: Mapped[int | None]        # the firing alert that inhibited it
    silenced_by: Mapped[int | None]         # the silence that muted it



class RuleState(Base):
    """Where one rule stands for one label set (one series), kept across restarts."""

    __tablename__ = "rule_state"
    __table_args__ = (
        Index("uq_rule_state_rule_name_fingerprint", "rule_name", "fingerprint", unique=True),
        CheckConstraint("state IN ('inactive', 'pending', 'firing')", name="state_open_or_inactive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_name: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    fingerprint: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    state: Mapped[AlertState] = mapped_column(_states(AlertState, "state"))
    pending_since: Mapped[datetime | None]
    last_evaluated_at: Mapped[datetime]
    definition_version: Mapped[str] = mapped_column(String(64))  # of the rule file entry evaluated


class Silence(Base):
    """Alerts whose labels match every matcher are not notified between starts_at and ends_at."""

    __tablename__ = "silences"
    __table_args__ = (CheckConstraint("ends_at > starts_at", name="ends_after_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    matchers: Mapped[list[Any]]  # [{"label": "cell_id", "op": "=", "value": "C1"}, ...]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class Notification(Base):
    """One message about an alert on one channel; the idempotency key makes a retry or a
    replayed window send it once."""

    __tablename__ = "notifications"
    __table_args__ = (CheckConstraint("attempts >= 0", name="attempts_not_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    channel: Mapped[str] = mapped_column(String(64))  # a route's receiver: email, webhook:<name>, ...
    idempotency_key: Mapped[str] = mapped_column(String(LABEL_LENGTH), unique=True)
    status: Mapped[NotificationStatus] = mapped_column(_states(NotificationStatus, "status"),
                                                       default=NotificationStatus.queued)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    # 0003: what a gateway sends, decided and rendered when the notification was queued.
    group_id: Mapped[int | None] = mapped_column(index=True)  # the notification group; None: a customer message
    payload: Mapped[dict[str, Any]] = mapped_column(default=no_labels, server_default=text("'{}'"))
    scheduled_at: Mapped[datetime | None]  # event time the flush decided it
    sent_at: Mapped[datetime | None]       # dispatch clock when a gateway took it


class NotificationGroup(Base):
    """Alerts one route groups together (by its ``group_by`` labels), and when the group is
    flushed next: Alertmanager's aggregation group and notification log in one row. Times are
    the event-time clock ``apply_events`` is given."""

    __tablename__ = "notification_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    group_key: Mapped[str] = mapped_column(String(LABEL_LENGTH), unique=True)  # route and labels, hashed
    route_id: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    receiver: Mapped[str] = mapped_column(String(64))
    group_labels: Mapped[dict[str, Any]] = mapped_column(default=no_labels)
    anchor_at: Mapped[datetime | None]      # first flush of the active period; later ones every group_interval
    flush_at: Mapped[datetime | None] = mapped_column(index=True)  # next flush; None: idle
    last_flush_at: Mapped[datetime | None]
    notified: Mapped[dict[str, Any]] = mapped_column(default=no_labels)  # per channel: alert ids told firing, when
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class GroupMember(Base):
    """An alert in a notification group (from when it fires until a flush after it resolves)."""

    __tablename__ = "group_members"
    __table_args__ = (Index("uq_group_members_group_id_alert_id", "group_id", "alert_id", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("notification_groups.id", ondelete="CASCADE"))
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)


class Action(Base):
    """Something done because of an alert (an SMS to a subscriber, a webhook call, a work
    order); the idempotency key makes it happen once per cause."""

    __tablename__ = "actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    action_type: Mapped[str] = mapped_column(String(32))  # sms, push, webhook, work_order, ...
    subscriber_id: Mapped[str | None] = mapped_column(String(OBJECT_ID_LENGTH), index=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(LABEL_LENGTH), unique=True)
    status: Mapped[ActionStatus] = mapped_column(_states(ActionStatus, "status"),
                                                 default=ActionStatus.requested)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    # 0003: the decision and its evidence; work orders are retried like notifications.
    decided_at: Mapped[datetime | None]          # event time of the flush that decided it (cool-down counts it)
    notification_id: Mapped[int | None] = mapped_column(index=True)  # the message that carries it
    detail: Mapped[dict[str, Any]] = mapped_column(default=no_labels, server_default=text("'{}'"))
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    external_ref: Mapped[str | None] = mapped_column(String(LABEL_LENGTH))  # a ticket id, a gateway's message id
    updated_at: Mapped[datetime | None]


class AuditEntry(Base):
    """Who changed what, when: the entity before and after (None when created or deleted)."""

    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_entity", "entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utc_now)
    actor: Mapped[str] = mapped_column(String(LABEL_LENGTH))  # a user, or opencem:<component>
    action: Mapped[str] = mapped_column(String(64))  # silence.add, alert.resolve, ...
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(OBJECT_ID_LENGTH))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
