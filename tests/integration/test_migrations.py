"""Migrations run up and down on both databases and match the models."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from automation_server.db.migrate import alembic_config, current_revision, downgrade, upgrade
from automation_server.db.models import Base
from tests.support import PostgresDatabases, skip_or_fail


def _empty_url(kind: str, tmp_path: Path, pg: PostgresDatabases | None) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    if pg is None:
        skip_or_fail("PostgreSQL is not reachable")
    assert pg is not None
    return pg.fresh(migrated=False)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_migrations_up_down_up_and_match_models(
    kind: str, tmp_path: Path, postgres_databases: PostgresDatabases | None
) -> None:
    url = _empty_url(kind, tmp_path, postgres_databases)
    upgrade(url)
    # `alembic check` fails when the models and the migrations disagree.
    command.check(alembic_config(url))
    engine = sa.create_engine(url)
    tables = set(sa.inspect(engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    downgrade(url, "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(url)
    assert current_revision(url) is not None
    engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_partial_unique_indexes_are_partial(
    kind: str, tmp_path: Path, postgres_databases: PostgresDatabases | None
) -> None:
    """SQLite silently builds a full index when only postgresql_where is given."""
    url = _empty_url(kind, tmp_path, postgres_databases)
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        if kind == "sqlite":
            sql = conn.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE name = 'uq_variants_one_champion'")
            ).scalar()
        else:
            sql = conn.execute(
                sa.text(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_variants_one_champion'"
                )
            ).scalar()
    engine.dispose()
    assert sql is not None and "WHERE" in sql.upper()
