"""Routing, grouping and delivery: alert episodes with their evidence, notification groups and
their members, what a notification carries, and the decision behind each action.

Revision ID: 0003
Revises: 0002

Every column added to an existing table is nullable or has a server default, so rows written
before this revision stay as they were: their alerts read ``evidence`` ``{}`` and no episode,
their notifications an empty payload, their actions no attempts. The ids added to existing
tables (``notifications.group_id``, ``actions.notification_id``, ``alerts.inhibited_by``)
carry no foreign key: SQLite adds a column with one only by copying the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
EMPTY = sa.text("'{}'")


def upgrade() -> None:
    op.add_column("alerts", sa.Column("episode_start", TIME, nullable=True))
    op.add_column("alerts", sa.Column("evidence", JSON, nullable=False, server_default=EMPTY))
    op.add_column("alerts", sa.Column("fired_at", TIME, nullable=True))
    op.add_column("alerts", sa.Column("updated_at", TIME, nullable=True))
    op.add_column("alerts", sa.Column("inhibited_by", sa.Integer, nullable=True))
    op.add_column("alerts", sa.Column("silenced_by", sa.Integer, nullable=True))
    op.create_index(op.f("uq_alerts_fingerprint_episode_start"), "alerts", ["fingerprint", "episode_start"],
                    unique=True)
    op.create_index(op.f("ix_alerts_fired_at"), "alerts", ["fired_at"])

    op.add_column("notifications", sa.Column("group_id", sa.Integer, nullable=True))
    op.add_column("notifications", sa.Column("payload", JSON, nullable=False, server_default=EMPTY))
    op.add_column("notifications", sa.Column("scheduled_at", TIME, nullable=True))
    op.add_column("notifications", sa.Column("sent_at", TIME, nullable=True))
    op.create_index(op.f("ix_notifications_group_id"), "notifications", ["group_id"])

    op.add_column("actions", sa.Column("decided_at", TIME, nullable=True))
    op.add_column("actions", sa.Column("notification_id", sa.Integer, nullable=True))
    op.add_column("actions", sa.Column("detail", JSON, nullable=False, server_default=EMPTY))
    op.add_column("actions", sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")))
    op.add_column("actions", sa.Column("next_attempt_at", TIME, nullable=True))
    op.add_column("actions", sa.Column("last_error", sa.Text, nullable=True))
    op.add_column("actions", sa.Column("external_ref", sa.String(200), nullable=True))
    op.add_column("actions", sa.Column("updated_at", TIME, nullable=True))
    op.create_index(op.f("ix_actions_notification_id"), "actions", ["notification_id"])

    op.create_table(
        "notification_groups",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("group_key", sa.String(200), nullable=False),
        sa.Column("route_id", sa.String(200), nullable=False),
        sa.Column("receiver", sa.String(64), nullable=False),
        sa.Column("group_labels", JSON, nullable=False),
        sa.Column("anchor_at", TIME, nullable=True),
        sa.Column("flush_at", TIME, nullable=True),
        sa.Column("last_flush_at", TIME, nullable=True),
        sa.Column("notified", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_groups")),
        sa.UniqueConstraint("group_key", name=op.f("uq_notification_groups_group_key")),
    )
    op.create_index(op.f("ix_notification_groups_flush_at"), "notification_groups", ["flush_at"])
    op.create_table(
        "group_members",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("group_id", sa.Integer, nullable=False),
        sa.Column("alert_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_members")),
        sa.ForeignKeyConstraint(["group_id"], ["notification_groups.id"], ondelete="CASCADE",
                                name=op.f("fk_group_members_group_id_notification_groups")),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_group_members_alert_id_alerts")),
    )
    op.create_index(op.f("uq_group_members_group_id_alert_id"), "group_members", ["group_id", "alert_id"],
                    unique=True)
    op.create_index(op.f("ix_group_members_alert_id"), "group_members", ["alert_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_group_members_alert_id"), table_name="group_members")
    op.drop_index(op.f("uq_group_members_group_id_alert_id"), table_name="group_members")
    op.drop_table("group_members")
    op.drop_index(op.f("ix_notification_groups_flush_at"), table_name="notification_groups")
    op.drop_table("notification_groups")
    op.drop_index(op.f("ix_actions_notification_id"), table_name="actions")
    for column in ("updated_at", "external_ref", "last_error", "next_attempt_at", "attempts", "detail",
                   "notification_id", "decided_at"):
        op.drop_column("actions", column)
    op.drop_index(op.f("ix_notifications_group_id"), table_name="notifications")
    for column in ("sent_at", "scheduled_at", "payload", "group_id"):
        op.drop_column("notifications", column)
    op.drop_index(op.f("ix_alerts_fired_at"), table_name="alerts")
    op.drop_index(op.f("uq_alerts_fingerprint_episode_start"), table_name="alerts")
    for column in ("silenced_by", "inhibited_by", "updated_at", "fired_at", "evidence", "episode_start"):
        op.drop_column("alerts", column)
