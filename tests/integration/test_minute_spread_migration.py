"""Migration 0011 backfills each metric minute's M2 from the runs where they are all
still there and leaves NULL (unknown) where retention deleted some; the writer keeps
an unknown minute unknown and the effect charts start after it. On both databases.

The backfill runs on a database at head whose M2 column has been emptied, the state
0011 finds right after adding it, so the data the runs left are the ones under test;
the schema steps themselves are tested up and down (also with data) by
test_migrations.py.
"""

from __future__ import annotations

import importlib.util
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

from automation_server.db.migrate import MIGRATIONS_DIR, upgrade
from automation_server.db.models import ExperimentMetricMinute, Run, RunMetric
from automation_server.experiments.effects import Effects, ExperimentEffects
from automation_server.queue.results import RunResult
from automation_server.security.accounts import Caller, ensure_organization
from automation_server.services import Services, build_services
from automation_server.statuses import RunStatus
from tests.integration.test_experiment_effects import dispatch_at
from tests.integration.test_experiments import make_experiment, simulate_worker
from tests.support import (
    LiveServer,
    PostgresDatabases,
    SqliteDatabases,
    live_server,
    settings_for,
    skip_or_fail,
)

START = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)
Key = tuple[str, str, int]  # variant, method, minute
# A random draw that lands on each variant with the weights 50/30/20 of make_experiment.
DRAW = {"control": 0.1, "faster": 0.6, "cheap": 0.9}


@pytest.fixture(params=["sqlite", "postgres"])
def url(
    request: pytest.FixtureRequest,
    sqlite_databases: SqliteDatabases,
    postgres_databases: PostgresDatabases | None,
) -> str:
    """A migrated database of the test's own (it is migrated down and up again)."""
    if request.param == "sqlite":
        return sqlite_databases.fresh()
    if postgres_databases is None:
        skip_or_fail("PostgreSQL is not reachable")
    assert postgres_databases is not None
    fresh = postgres_databases.fresh(migrated=False)
    upgrade(fresh)
    return fresh


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path


def serve(data_dir: Path, url: str) -> Iterator[LiveServer]:
    services = build_services(settings_for(data_dir, url))
    try:
        with live_server(services) as server:
            yield server
    finally:
        services.close()


def scores_by_minute(services: Services) -> dict[Key, list[float]]:
    values: dict[Key, list[float]] = defaultdict(list)
    with services.db.read() as session:
        for run in session.scalars(sa.select(Run)):
            if "score" in run.metrics:
                minute = int(run.created_at.timestamp()) // 60
                values[(run.variant, run.assignment_method, minute)].append(run.metrics["score"])
    return values


def minute_rows(services: Services) -> dict[Key, tuple[int, float | None]]:
    m = ExperimentMetricMinute
    with services.db.read() as session:
        rows = session.execute(sa.select(m.variant, m.method, m.minute, m.count, m.m2)).all()
    return {(v, method, int(minute)): (int(n), m2) for v, method, minute, n, m2 in rows}


def m2_of(values: list[float]) -> float:
    return float(((np.array(values) - np.mean(values)) ** 2).sum())


def forget_runs(services: Services, count: int) -> None:
    """What retention does to old runs: their rows and their metrics go."""
    with services.db.write() as session:
        ids = [
            r.id for r in session.scalars(sa.select(Run).order_by(Run.id)) if "score" in r.metrics
        ][:count]
        session.execute(sa.delete(RunMetric).where(RunMetric.run_id.in_(ids)))
        session.execute(sa.delete(Run).where(Run.id.in_(ids)))


def run_backfill(services: Services) -> None:
    """Migration 0011's backfill, as ``alembic upgrade`` runs it, after emptying M2."""
    path = MIGRATIONS_DIR / "versions" / "0011_minute_rollup_spread.py"
    spec = importlib.util.spec_from_file_location("migration_0011", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    with services.db.engine.begin() as conn:
        conn.execute(sa.update(ExperimentMetricMinute).values(m2=None))
        with Operations.context(MigrationContext.configure(conn)):
            migration.backfill(conn.dialect.name)


def finish_one_at(server: LiveServer, automation_id: str, key: Key, score: float) -> None:
    variant, _, minute = key
    when = datetime.fromtimestamp(minute * 60 + 30, tz=UTC)
    dispatch_at(server, automation_id, when, rng=lambda: DRAW[variant])
    queue = server.services.queue
    (claim,) = queue.claim("test-worker", 10, 60)
    result = RunResult(RunStatus.SUCCEEDED, 0, None, 5, metrics={"score": score})
    queue.finish(claim.run_id, "test-worker", result)


def score_effects(services: Services) -> Effects:
    org_id = ensure_organization(services.db, "acme")
    return ExperimentEffects(services.db).effects(
        Caller.system(org_id),
        "exp-stats",
        measure="score",
        control="control",
        bucket="1m",
        now=START + timedelta(hours=1),
    )


def test_backfill_where_complete_and_null_where_not(data_dir: Path, url: str) -> None:
    for server in serve(data_dir, url):
        automation_id = make_experiment(server.client(server.new_key("acme")))
        rng = random.Random(3)
        for _ in range(120):  # 30 minutes: several scores per minute and variant
            dispatch_at(server, automation_id, START + timedelta(seconds=rng.uniform(0, 1800)))
        simulate_worker(server, rng)
        written = minute_rows(server.services)
        before = scores_by_minute(server.services)
        assert set(written) == set(before)
        for key, (count, m2) in written.items():  # the writer's merge matches numpy
            assert count == len(before[key])
            assert m2 == pytest.approx(m2_of(before[key]), rel=1e-9, abs=1e-12)
        forget_runs(server.services, 3)
        run_backfill(server.services)

        backfilled = minute_rows(server.services)
        after = scores_by_minute(server.services)
        assert {k: n for k, (n, _) in backfilled.items()} == {k: n for k, (n, _) in written.items()}
        unknown = {k for k, (n, _) in backfilled.items() if len(after.get(k, [])) != n}
        assert 1 <= len(unknown) <= 3
        for key, (_, m2) in backfilled.items():
            if key in unknown:
                assert m2 is None, key
            else:
                assert m2 == pytest.approx(m2_of(after[key]), rel=1e-9, abs=1e-12), key

        effects = score_effects(server.services)
        last_unknown = max(minute for _, _, minute in unknown)
        assert effects.complete_from == datetime.fromtimestamp((last_unknown + 1) * 60, tz=UTC)
        assert all(p.t > effects.complete_from for s in effects.series for p in s.points)

        # A new value in an unknown minute (every run here was randomly assigned): it is
        # counted, and the minute's spread stays unknown.
        key = min(unknown)
        finish_one_at(server, automation_id, key, 2.5)
        count, m2 = minute_rows(server.services)[key]
        assert (count, m2) == (backfilled[key][0] + 1, None)
