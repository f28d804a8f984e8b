"""Migrations run up and down on both databases and match the models."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from automation_server.db.migrate import alembic_config, current_revision, downgrade, upgrade
from automation_server.db.models import Base
from automation_server.services import build_services
from tests.support import (
    PostgresDatabases,
    SqliteDatabases,
    live_server,
    settings_for,
    skip_or_fail,
)


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


def test_a_populated_sqlite_database_migrates_down_past_table_rebuilds_and_up(
    sqlite_databases: SqliteDatabases, tmp_path: Path
) -> None:
    """Revisions 0010 and 0012 rebuild ``automations`` on SQLite (batch mode): with
    runs, revisions and variants pointing at it the rebuild must keep every row."""
    url = sqlite_databases.fresh()
    services = build_services(settings_for(tmp_path, url))
    try:
        with live_server(services) as server:
            http = server.client(server.new_key("acme", "admin"))
            ref = http.post("/v1/uploads", content=_tarball()).json()["ref"]
            auto = http.post("/v1/automations", json={"name": "kept", "tarball": ref}).json()
            for _ in range(3):
                assert http.post(f"/v1/automations/{auto['id']}/dispatch", json={}).is_success
    finally:
        services.close()
    counts = _counts(url)
    assert counts["runs"] == 3 and counts["automations"] == 1
    downgrade(url, "0009")
    assert _counts(url) == counts
    upgrade(url)
    assert _counts(url) == counts
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    engine.dispose()


def _counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        counts = {
            table: int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in ("automations", "variants", "revisions", "runs")
        }
    engine.dispose()
    return counts


def _tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"print('ok')\n"
        info = tarfile.TarInfo("main.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
