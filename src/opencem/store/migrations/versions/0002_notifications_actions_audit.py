"""Notifications, actions and the audit trail; alerts get their rendered annotations.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Alerts raised before this revision had no annotations: they read as {}.
    op.add_column("alerts", sa.Column("annotations", JSON, nullable=False, server_default=sa.text("'{}'")))
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("alert_id", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TIME, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_notifications_alert_id_alerts")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_notifications_idempotency_key")),
        sa.CheckConstraint("status IN ('queued', 'retrying', 'sent', 'failed')", name=op.f("ck_notifications_status")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_notifications_attempts_not_negative")),
    )
    op.create_index(op.f("ix_notifications_alert_id"), "notifications", ["alert_id"])
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("action_type", sa.String(32), nullable=False),
        sa.Column("subscriber_id", sa.String(100), nullable=True),
        sa.Column("alert_id", sa.Integer, nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actions")),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_actions_alert_id_alerts")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_actions_idempotency_key")),
        sa.CheckConstraint("status IN ('requested', 'done', 'failed', 'skipped')", name=op.f("ck_actions_status")),
    )
    op.create_index(op.f("ix_actions_alert_id"), "actions", ["alert_id"])
    op.create_index(op.f("ix_actions_subscriber_id"), "actions", ["subscriber_id"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(100), nullable=False),
        sa.Column("before", JSON, nullable=True),
        sa.Column("after", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit")),
    )
    op.create_index(op.f("ix_audit_entity"), "audit", ["entity_type", "entity_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_entity"), table_name="audit")
    op.drop_table("audit")
    op.drop_index(op.f("ix_actions_subscriber_id"), table_name="actions")
    op.drop_index(op.f("ix_actions_alert_id"), table_name="actions")
    op.drop_table("actions")
    op.drop_index(op.f("ix_notifications_alert_id"), table_name="notifications")
    op.drop_table("notifications")
    op.drop_column("alerts", "annotations")  # SQLite 3.35+ drops it in place (no table copy)
