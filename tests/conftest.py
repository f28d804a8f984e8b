"""Fixtures: a fresh database per test on SQLite and PostgreSQL, a live server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from automation_server.logging import configure_logging
from tests.support import (
    PG_ADMIN_URL,
    LiveServer,
    PostgresDatabases,
    SqliteDatabases,
    live_server,
    reachable_by_sandbox,
    settings_for,
    skip_or_fail,
)

configure_logging("warning", "json")
POSTGRES_ERROR = "not tried yet"


@pytest.fixture(scope="session")
def sqlite_databases(tmp_path_factory: pytest.TempPathFactory) -> SqliteDatabases:
    dbs = SqliteDatabases(tmp_path_factory.mktemp("sqlite"))
    dbs.prepare_template()
    return dbs


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases | None]:
    try:
        dbs = PostgresDatabases(PG_ADMIN_URL)
        with dbs.admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        # Tests that need PostgreSQL skip on a laptop and fail in CI, showing this error.
        global POSTGRES_ERROR
        POSTGRES_ERROR = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
        yield None
        return
    dbs.prepare_template()
    yield dbs
    dbs.drop_all()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest,
    sqlite_databases: SqliteDatabases,
    postgres_databases: PostgresDatabases | None,
) -> str:
    """A fresh migrated database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_databases.fresh()
    if postgres_databases is None:
        skip_or_fail(f"PostgreSQL not reachable at {PG_ADMIN_URL} ({POSTGRES_ERROR})")
    assert postgres_databases is not None
    return postgres_databases.fresh()


@pytest.fixture
def sqlite_url(sqlite_databases: SqliteDatabases) -> str:
    return sqlite_databases.fresh()


@pytest.fixture
def pg_url(postgres_databases: PostgresDatabases | None) -> str:
    if postgres_databases is None:
        skip_or_fail(f"PostgreSQL not reachable at {PG_ADMIN_URL} ({POSTGRES_ERROR})")
    assert postgres_databases is not None
    return postgres_databases.fresh()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    reachable_by_sandbox(path)
    return path


@pytest.fixture
def services(data_dir: Path, database_url: str) -> Iterator[object]:
    from automation_server.services import build_services

    svc = build_services(settings_for(data_dir, database_url))
    yield svc
    svc.close()


@pytest.fixture
def server(services: object) -> Iterator[LiveServer]:
    with live_server(services) as live:
        yield live


def _hypothesis_profiles() -> None:
    import os

    from hypothesis import settings

    # The machine is shared and noisy: no per-example deadlines. In CI, the
    # same examples every run, so a failure is reproducible and never flaky.
    settings.register_profile("default", deadline=None)
    settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
    settings.load_profile("ci" if os.environ.get("CI", "").lower() == "true" else "default")


_hypothesis_profiles()
