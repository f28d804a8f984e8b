"""event sources, notification channels and their outbox, automation state, auto-disable

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ID = sa.String(length=36)
WHEN = sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("automations") as batch:
        batch.add_column(sa.Column("event_source_id", ID, nullable=True))
        batch.add_column(
            sa.Column("disable_after_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("failure_streak", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("disabled_reason", sa.Text(), nullable=True))
        batch.create_index(
            op.f("ix_automations_event_source_id"), ["event_source_id"], unique=False
        )
    op.create_table(
        "automation_states",
        sa.Column("automation_id", ID, nullable=False),
        sa.Column("state", _json(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("updated_by_run", ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["automation_id"],
            ["automations.id"],
            name=op.f("fk_automation_states_automation_id_automations"),
        ),
        sa.PrimaryKeyConstraint("automation_id", name=op.f("pk_automation_states")),
    )
    _event_tables()
    _notification_tables()


def _event_tables() -> None:
    op.create_table(
        "event_sources",
        sa.Column("id", ID, nullable=False),
        sa.Column("org_id", ID, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("event_type", _json(), nullable=False),
        sa.Column("signature_header", sa.String(length=100), nullable=False),
        sa.Column("delivery_id_header", sa.String(length=100), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_event_sources_org_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_sources")),
        sa.UniqueConstraint("org_id", "name", name="uq_event_sources_org_name"),
    )
    op.create_table(
        "event_deliveries",
        sa.Column("source_id", ID, nullable=False),
        sa.Column("delivery_id", sa.String(length=200), nullable=False),
        sa.Column("answer", _json(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["event_sources.id"],
            name=op.f("fk_event_deliveries_source_id_event_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("source_id", "delivery_id", name=op.f("pk_event_deliveries")),
    )


def _notification_tables() -> None:
    op.create_table(
        "notification_channels",
        sa.Column("id", ID, nullable=False),
        sa.Column("org_id", ID, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", _json(), nullable=False),
        sa.Column("automation_ids", _json(), nullable=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_notification_channels_org_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_channels")),
        sa.UniqueConstraint("org_id", "name", name="uq_notification_channels_org_name"),
    )
    op.create_table(
        "notification_deliveries",
        sa.Column("id", ID, nullable=False),
        sa.Column("org_id", ID, nullable=False),
        sa.Column("channel_id", ID, nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("event_key", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", WHEN, nullable=False),
        sa.Column("lease_until", WHEN, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("delivered_at", WHEN, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')",
            name=op.f("ck_notification_deliveries_status"),
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["notification_channels.id"],
            name=op.f("fk_notification_deliveries_channel_id_notification_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_notification_deliveries_org_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
        sa.UniqueConstraint("channel_id", "event_key", name="uq_notification_deliveries_event"),
    )
    op.create_index(
        "ix_notification_deliveries_due",
        "notification_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_notification_deliveries_channel",
        "notification_deliveries",
        ["channel_id", "created_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("notification_deliveries")
    op.drop_table("notification_channels")
    op.drop_table("event_deliveries")
    op.drop_table("event_sources")
    op.drop_table("automation_states")
    with op.batch_alter_table("automations") as batch:
        batch.drop_index(op.f("ix_automations_event_source_id"))
        batch.drop_column("disabled_reason")
        batch.drop_column("failure_streak")
        batch.drop_column("disable_after_failures")
        batch.drop_column("event_source_id")
