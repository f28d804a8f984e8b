"""the claim's indexes: each automation's queued runs oldest first, and its running runs

The claim takes each candidate automation's oldest due runs with an index seek
(``LIMIT`` per automation) instead of ranking every queued run, so its cost no
longer grows with the backlog. It counts each automation's running runs: SQLite
cannot read ``status = 'running'`` as implying the partial index's
``status IN ('queued', 'running')``, so it scanned the whole table, history
included, on every claim; an index with exactly that condition serves it.
``ix_runs_automation_active`` gains ``available_at, id``: PostgreSQL without
statistics yet (a new database) chose it for an automation's oldest queued run
and sorted the automation's whole backlog; now either index gives the order.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")
RUNNING = sa.text("status = 'running'")
ACTIVE = sa.text("status IN ('queued', 'running')")


def _active_index(columns: list[str]) -> None:
    op.drop_index("ix_runs_automation_active", table_name="runs")
    op.create_index(
        "ix_runs_automation_active",
        "runs",
        columns,
        unique=False,
        postgresql_where=ACTIVE,
        sqlite_where=ACTIVE,
    )


def upgrade() -> None:
    op.create_index(
        "ix_runs_automation_queued",
        "runs",
        ["automation_id", "available_at", "id"],
        unique=False,
        postgresql_where=QUEUED,
        sqlite_where=QUEUED,
    )
    op.create_index(
        "ix_runs_automation_running",
        "runs",
        ["automation_id"],
        unique=False,
        postgresql_where=RUNNING,
        sqlite_where=RUNNING,
    )
    _active_index(["automation_id", "status", "available_at", "id"])


def downgrade() -> None:
    _active_index(["automation_id", "status"])
    op.drop_index("ix_runs_automation_running", table_name="runs")
    op.drop_index("ix_runs_automation_queued", table_name="runs")
