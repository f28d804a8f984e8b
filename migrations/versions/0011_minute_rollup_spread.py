"""experiment_metric_minutes.m2: each minute's sum of squared deviations

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 09:00:00

The dashboard's cumulative effect charts need a variance per minute, so each
minute row keeps M2 = sum((x - mean)^2) beside its count and sum (mean =
sum / count), merged with Chan's formula as rollups.py writes it.

Existing rows are backfilled from ``run_metrics`` (joined to ``runs`` for the
assignment method) where that minute's values are all still there, i.e. the
number of values found equals the row's count. Where retention has deleted
some of them, M2 stays NULL ("unknown"): the writer keeps a NULL NULL, and
the effect charts start after the last minute whose spread is unknown.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

MINUTES = sa.table(
    "experiment_metric_minutes",
    sa.column("org_id"),
    sa.column("experiment_id"),
    sa.column("variant"),
    sa.column("method"),
    sa.column("name"),
    sa.column("minute", sa.BigInteger()),
    sa.column("count", sa.BigInteger()),
    sa.column("sum", sa.Float()),
    sa.column("m2", sa.Float()),
)
METRICS = sa.table(
    "run_metrics",
    sa.column("run_id"),
    sa.column("name"),
    sa.column("org_id"),
    sa.column("experiment_id"),
    sa.column("variant"),
    sa.column("created_at"),
    sa.column("value", sa.Float()),
)
RUNS = sa.table("runs", sa.column("id"), sa.column("assignment_method"))


def _minute_bounds(dialect: str) -> tuple[sa.ColumnElement[object], sa.ColumnElement[object]]:
    """The row's minute as [start, end) timestamps comparable with run_metrics.created_at.

    SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' text, which sorts against
    datetime()'s 'YYYY-MM-DD HH:MM:SS' as the times do; PostgreSQL has timestamptz.
    """
    start, end = MINUTES.c.minute * 60, (MINUTES.c.minute + 1) * 60
    if dialect == "postgresql":
        return sa.func.to_timestamp(start), sa.func.to_timestamp(end)
    return sa.func.datetime(start, "unixepoch"), sa.func.datetime(end, "unixepoch")


def _values_of_the_minute(dialect: str) -> list[sa.ColumnElement[bool]]:
    low, high = _minute_bounds(dialect)
    return [
        METRICS.c.org_id == MINUTES.c.org_id,
        METRICS.c.experiment_id == MINUTES.c.experiment_id,
        METRICS.c.name == MINUTES.c.name,
        METRICS.c.variant == MINUTES.c.variant,
        METRICS.c.created_at >= low,
        METRICS.c.created_at < high,
        RUNS.c.assignment_method == MINUTES.c.method,
    ]


def backfill(dialect: str) -> None:
    """M2 around the row's own mean (a two-pass sum, no cancellation), where complete."""
    joined = METRICS.join(RUNS, RUNS.c.id == METRICS.c.run_id)
    where = _values_of_the_minute(dialect)
    deviation = METRICS.c.value - MINUTES.c.sum / sa.cast(MINUTES.c.count, sa.Float())
    m2 = sa.select(sa.func.sum(deviation * deviation)).select_from(joined).where(*where)
    found = sa.select(sa.func.count()).select_from(joined).where(*where)
    op.execute(
        sa.update(MINUTES)
        .where(MINUTES.c.count > 0, MINUTES.c.count == found.scalar_subquery())
        .values(m2=m2.scalar_subquery())
    )


def upgrade() -> None:
    with op.batch_alter_table("experiment_metric_minutes") as batch:
        batch.add_column(sa.Column("m2", sa.Float(), nullable=True))
    backfill(op.get_bind().dialect.name)


def downgrade() -> None:
    with op.batch_alter_table("experiment_metric_minutes") as batch:
        batch.drop_column("m2")
