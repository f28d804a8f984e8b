"""environments: locked Python packages per variant

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 23:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("python", sa.String(length=32), nullable=False),
        sa.Column("packages", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_environments")),
    )
    op.create_table(
        "environment_owners",
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["digest"],
            ["environments.digest"],
            name=op.f("fk_environment_owners_digest_environments"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_environment_owners_org_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("org_id", "digest", name=op.f("pk_environment_owners")),
    )
    with op.batch_alter_table("variants") as batch:
        batch.add_column(sa.Column("requirements", _json(), nullable=True))
        batch.add_column(sa.Column("environment_digest", sa.String(length=80), nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("environment_digest", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("environment_digest")
    with op.batch_alter_table("variants") as batch:
        batch.drop_column("environment_digest")
        batch.drop_column("requirements")
    op.drop_table("environment_owners")
    op.drop_table("environments")
