"""queue: failure origins, status checks, max_running column, (n, mean, M2) rollups

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

STATUSES = "'queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'skipped'"
ORIGINS = "'run', 'infrastructure'"


def _is_pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("failure_origin", sa.String(length=16), nullable=True))
        batch.add_column(
            sa.Column("infra_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch.create_check_constraint("status", f"status IN ({STATUSES})")
        batch.create_check_constraint(
            "failure_origin", f"failure_origin IS NULL OR failure_origin IN ({ORIGINS})"
        )
    op.execute(
        "UPDATE runs SET failure_origin = CASE WHEN error LIKE 'worker lost%' "
        "THEN 'infrastructure' ELSE 'run' END WHERE status IN ('failed', 'timed_out')"
    )

    with op.batch_alter_table("automations") as batch:
        batch.add_column(sa.Column("max_running", sa.Integer(), nullable=False, server_default="1"))
    extract = (
        "(concurrency ->> 'max_running')::int"
        if _is_pg()
        else "CAST(json_extract(concurrency, '$.max_running') AS INTEGER)"
    )
    op.execute(f"UPDATE automations SET max_running = COALESCE({extract}, 1)")  # noqa: S608

    with op.batch_alter_table("experiment_rollups") as batch:
        batch.add_column(
            sa.Column(
                "infrastructure_failures", sa.BigInteger(), nullable=False, server_default="0"
            )
        )
        batch.add_column(sa.Column("duration_mean", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("duration_m2", sa.Float(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE experiment_rollups SET "
        "duration_mean = CASE WHEN duration_count > 0 "
        "THEN duration_sum / duration_count ELSE 0 END, "
        "duration_m2 = CASE WHEN duration_count > 0 AND "
        "duration_sum_sq - duration_sum * duration_sum / duration_count > 0 "
        "THEN duration_sum_sq - duration_sum * duration_sum / duration_count ELSE 0 END"
    )
    with op.batch_alter_table("experiment_rollups") as batch:
        batch.drop_column("duration_sum")
        batch.drop_column("duration_sum_sq")

    with op.batch_alter_table("experiment_metric_rollups") as batch:
        batch.add_column(sa.Column("mean", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("m2", sa.Float(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE experiment_metric_rollups SET "
        "mean = CASE WHEN count > 0 THEN sum / count ELSE 0 END, "
        "m2 = CASE WHEN count > 0 AND sum_sq - sum * sum / count > 0 "
        "THEN sum_sq - sum * sum / count ELSE 0 END"
    )
    with op.batch_alter_table("experiment_metric_rollups") as batch:
        batch.drop_column("sum")
        batch.drop_column("sum_sq")


def downgrade() -> None:
    with op.batch_alter_table("experiment_metric_rollups") as batch:
        batch.add_column(sa.Column("sum", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("sum_sq", sa.Float(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE experiment_metric_rollups SET sum = mean * count, sum_sq = m2 + mean * mean * count"
    )
    with op.batch_alter_table("experiment_metric_rollups") as batch:
        batch.drop_column("mean")
        batch.drop_column("m2")

    with op.batch_alter_table("experiment_rollups") as batch:
        batch.add_column(sa.Column("duration_sum", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("duration_sum_sq", sa.Float(), nullable=False, server_default="0")
        )
    op.execute(
        "UPDATE experiment_rollups SET duration_sum = duration_mean * duration_count, "
        "duration_sum_sq = duration_m2 + duration_mean * duration_mean * duration_count"
    )
    with op.batch_alter_table("experiment_rollups") as batch:
        batch.drop_column("duration_mean")
        batch.drop_column("duration_m2")
        batch.drop_column("infrastructure_failures")

    with op.batch_alter_table("automations") as batch:
        batch.drop_column("max_running")

    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("failure_origin", type_="check")
        batch.drop_constraint("status", type_="check")
        batch.drop_column("infra_failures")
        batch.drop_column("failure_origin")
