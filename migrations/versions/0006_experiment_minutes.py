"""experiment minutes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 03:32:38.919482
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiment_metric_minutes",
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("experiment_id", sa.String(length=200), nullable=False),
        sa.Column("variant", sa.String(length=63), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id",
            "experiment_id",
            "variant",
            "method",
            "name",
            "minute",
            name=op.f("pk_experiment_metric_minutes"),
        ),
    )
    op.create_table(
        "experiment_minutes",
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("experiment_id", sa.String(length=200), nullable=False),
        sa.Column("variant", sa.String(length=63), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.Column("finished", sa.BigInteger(), nullable=False),
        sa.Column("succeeded", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id",
            "experiment_id",
            "variant",
            "method",
            "minute",
            name=op.f("pk_experiment_minutes"),
        ),
    )


def downgrade() -> None:
    op.drop_table("experiment_minutes")
    op.drop_table("experiment_metric_minutes")
