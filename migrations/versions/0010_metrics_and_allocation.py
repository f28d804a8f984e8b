"""automations.metrics (declared directions and units) and automations.allocation

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("automations") as batch:
        batch.add_column(sa.Column("metrics", json, nullable=False, server_default="{}"))
        batch.add_column(
            sa.Column("allocation", json, nullable=False, server_default='{"mode": "fixed"}')
        )


def downgrade() -> None:
    with op.batch_alter_table("automations") as batch:
        batch.drop_column("allocation")
        batch.drop_column("metrics")
