"""Alerts, rule state and silences: what rule evaluation keeps.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
ALERT_STATES = "'inactive', 'pending', 'firing', 'resolved'"
OPEN = sa.text("state IN ('pending', 'firing')")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("rule_name", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(200), nullable=False),
        sa.Column("labels", JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("object_id", sa.String(100), nullable=False),
        sa.Column("window_start", TIME, nullable=False),
        sa.Column("window_minutes", sa.Integer, nullable=False),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("value_unit", sa.String(16), nullable=True),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("resolved_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.CheckConstraint(f"state IN ({ALERT_STATES})", name=op.f("ck_alerts_state")),
        sa.CheckConstraint("(state = 'resolved') = (resolved_at IS NOT NULL)",
                           name=op.f("ck_alerts_resolved_at_iff_resolved")),
        sa.CheckConstraint("window_minutes > 0", name=op.f("ck_alerts_window_minutes_positive")),
    )
    op.create_index(op.f("uq_alerts_open_fingerprint"), "alerts", ["fingerprint"], unique=True,
                    sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_table(
        "rule_state",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("rule_name", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pending_since", TIME, nullable=True),
        sa.Column("last_evaluated_at", TIME, nullable=False),
        sa.Column("definition_version", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_state")),
        sa.CheckConstraint(f"state IN ({ALERT_STATES})", name=op.f("ck_rule_state_state")),
        sa.CheckConstraint("state IN ('inactive', 'pending', 'firing')",
                           name=op.f("ck_rule_state_state_open_or_inactive")),
    )
    op.create_index(op.f("uq_rule_state_rule_name_fingerprint"), "rule_state", ["rule_name", "fingerprint"],
                    unique=True)
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("matchers", JSON, nullable=False),
        sa.Column("starts_at", TIME, nullable=False),
        sa.Column("ends_at", TIME, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_silences")),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_silences_ends_after_start")),
    )


def downgrade() -> None:
    op.drop_table("silences")
    op.drop_index(op.f("uq_rule_state_rule_name_fingerprint"), table_name="rule_state")
    op.drop_table("rule_state")
    op.drop_index(op.f("uq_alerts_open_fingerprint"), table_name="alerts")
    op.drop_table("alerts")
