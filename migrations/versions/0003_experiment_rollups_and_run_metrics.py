"""experiment rollups and run metrics

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 03:03:34.918486
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiment_duration_buckets",
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("experiment_id", sa.String(length=200), nullable=False),
        sa.Column("automation_id", sa.String(length=36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("variant", sa.String(length=63), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id",
            "experiment_id",
            "automation_id",
            "revision",
            "variant",
            "method",
            "bucket",
            name=op.f("pk_experiment_duration_buckets"),
        ),
    )
    op.create_table(
        "experiment_metric_rollups",
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("experiment_id", sa.String(length=200), nullable=False),
        sa.Column("automation_id", sa.String(length=36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("variant", sa.String(length=63), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("sum_sq", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id",
            "experiment_id",
            "automation_id",
            "revision",
            "variant",
            "method",
            "name",
            name=op.f("pk_experiment_metric_rollups"),
        ),
    )
    op.create_table(
        "experiment_rollups",
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("experiment_id", sa.String(length=200), nullable=False),
        sa.Column("automation_id", sa.String(length=36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("variant", sa.String(length=63), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("assigned", sa.BigInteger(), nullable=False),
        sa.Column("succeeded", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("timed_out", sa.BigInteger(), nullable=False),
        sa.Column("cancelled", sa.BigInteger(), nullable=False),
        sa.Column("skipped", sa.BigInteger(), nullable=False),
        sa.Column("duration_count", sa.BigInteger(), nullable=False),
        sa.Column("duration_sum", sa.Float(), nullable=False),
        sa.Column("duration_sum_sq", sa.Float(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint(
            "org_id",
            "experiment_id",
            "automation_id",
            "revision",
            "variant",
            "method",
            name=op.f("pk_experiment_rollups"),
        ),
    )
    op.create_table(
        "run_metrics",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("experiment_id", sa.String(length=200), nullable=True),
        sa.Column("variant", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_metrics_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", "name", name=op.f("pk_run_metrics")),
    )
    with op.batch_alter_table("run_metrics", schema=None) as batch_op:
        batch_op.create_index(
            "ix_run_metrics_series", ["org_id", "experiment_id", "name", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("run_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_run_metrics_series")

    op.drop_table("run_metrics")
    op.drop_table("experiment_rollups")
    op.drop_table("experiment_metric_rollups")
    op.drop_table("experiment_duration_buckets")
