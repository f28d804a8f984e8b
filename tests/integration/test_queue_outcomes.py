"""Platform failures kept out of experiments; the database's clock decides leases."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from automation_server.queue.results import RunResult
from automation_server.statuses import RunStatus
from tests.integration.queue_support import QueueKit


def _expire_lease(kit: QueueKit, run_id: str) -> None:
    with kit.services.db.write() as session:
        now = kit.services.queue.now(session)
    kit.set_runs([run_id], lease_expires_at=now - timedelta(seconds=1))


def test_a_lost_worker_is_retried_without_using_the_users_attempt(services: Any) -> None:
    kit = QueueKit.make(services)
    automation_id = kit.automation("lost", max_attempts=1)
    [run_id] = kit.dispatch(automation_id)
    queue = services.queue
    for expected_attempt in (2, 3):
        [claimed] = queue.claim("dying-worker", 1, 30)
        _expire_lease(kit, claimed.run_id)
        assert queue.reap() == 1
        run = kit.run(run_id)
        assert run.status == RunStatus.QUEUED and run.attempt == expected_attempt
        assert run.attempts[-1]["origin"] == "infrastructure"
        assert "worker lost" in run.attempts[-1]["error"]
        kit.set_runs([run_id], available_at=run.created_at)  # skip the short backoff
    # The third platform failure (AUTOMATION_MAX_INFRA_ATTEMPTS=3) ends it.
    queue.claim("dying-worker", 1, 30)
    _expire_lease(kit, run_id)
    queue.reap()
    run = kit.run(run_id)
    assert run.status == RunStatus.FAILED and run.failure_origin == "infrastructure"
    assert run.infra_failures == 3 and len(run.attempts) == 2


def test_program_failures_use_attempts_and_end_with_origin_run(services: Any) -> None:
    kit = QueueKit.make(services)
    automation_id = kit.automation("flaky", max_attempts=2)
    [run_id] = kit.dispatch(automation_id)
    queue = services.queue
    failed = RunResult(RunStatus.FAILED, 3, "exited with 3", 12)
    queue.claim("w", 1, 30)
    assert queue.finish(run_id, "w", failed).final is False
    kit.set_runs([run_id], available_at=kit.run(run_id).created_at)
    queue.claim("w", 1, 30)
    report = queue.finish(run_id, "w", failed)
    run = kit.run(run_id)
    assert report.final and run.status == RunStatus.FAILED and run.failure_origin == "run"
    assert [a["origin"] for a in run.attempts] == ["run"]


def test_experiments_count_only_the_programs_outcomes(services: Any) -> None:
    kit = QueueKit.make(services)
    automation_id = kit.automation("exp-origin", experiment_id="origin-exp")
    runs = kit.dispatch(automation_id, 4)
    queue = services.queue
    outcomes = [
        RunResult(RunStatus.SUCCEEDED, 0, None, 100, metrics={"score": 1.0}),
        RunResult(RunStatus.FAILED, 1, "bad", 50, metrics={"score": 0.0}),
        RunResult.infrastructure("the sandbox could not start"),
    ]
    for run_id, result in zip(runs, outcomes, strict=False):
        [claimed] = queue.claim("w", 1, 30)
        assert claimed.run_id == run_id
        queue.finish(run_id, "w", result)
        if result.status == RunStatus.FAILED and result.error == "the sandbox could not start":
            for _ in range(2):  # two more platform failures end it
                kit.set_runs([run_id], available_at=kit.run(run_id).created_at)
                queue.claim("w", 1, 30)
                queue.finish(run_id, "w", result)
    summary = services.experiments.summary(kit.caller, "origin-exp")
    [item] = summary["variants"]
    assert item["runs_assigned"] == 4
    assert item["infrastructure_failures"] == 1
    assert item["runs_finished"]["failed"] == 2  # by status, as the runs show
    assert item["success_rate"]["trials"] == 2 and item["success_rate"]["successes"] == 1
    assert item["duration_ms"]["count"] == 2 and item["duration_ms"]["mean"] == 75.0
    assert item["metrics"]["score"]["count"] == 2


def test_concurrent_claimers_never_exceed_max_running(services: Any) -> None:
    kit = QueueKit.make(services)
    capped = kit.automation("capped", max_running=2)
    free = kit.automation("free", max_running=50)
    kit.dispatch(capped, 20)
    kit.dispatch(free, 20)
    got: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def claimer(i: int) -> None:
        start.wait()
        claimed = services.queue.claim(f"w{i}", 3, 30)
        with lock:
            got.extend(c.automation_id for c in claimed)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = Counter(got)
    assert counts[capped] == 2
    assert counts[free] >= 1  # no claimer waited for another: each took what it could


@pytest.mark.parametrize("skew_s", [60.0, -60.0])
def test_a_skewed_host_clock_neither_reaps_live_runs_nor_claims_retries_early(
    pg_url: str, data_dir: Any, skew_s: float
) -> None:
    """PostgreSQL: the queue compares times with now() in the SQL, so a host whose clock
    is a minute off cannot reap another worker's live run or start a retry too soon."""
    from automation_server.ids import utcnow
    from automation_server.queue import clock as clock_module
    from automation_server.services import build_services
    from tests.support import settings_for

    honest = build_services(settings_for(data_dir, pg_url))
    skewed = build_services(settings_for(data_dir, pg_url))
    try:
        original = clock_module.utcnow
        skewed.queue.clock = clock_module.DbClock(
            postgres=True, host_clock=lambda: original() + timedelta(seconds=skew_s)
        )
        kit = QueueKit.make(honest)
        automation_id = kit.automation("skew", max_attempts=2)
        live, retried = kit.dispatch(automation_id, 2), None
        [claimed] = honest.queue.claim("honest", 1, 5)  # a 5-second lease, renewed
        assert skewed.queue.reap() == 0
        assert kit.run(claimed.run_id).status == RunStatus.RUNNING
        # A retry due in 30 s is not claimed by the skewed worker now.
        honest.queue.finish(claimed.run_id, "honest", RunResult(RunStatus.FAILED, 1, "x", 5))
        retried = kit.run(claimed.run_id)
        assert retried.status == RunStatus.QUEUED
        kit.set_runs([claimed.run_id], available_at=utcnow() + timedelta(seconds=30))
        kit.set_runs([live[1]], status=RunStatus.CANCELLED)
        assert skewed.queue.claim("skewed", 5, 5) == []
    finally:
        honest.close()
        skewed.close()


def test_rollups_keep_the_spread_of_large_metric_values(services: Any) -> None:
    """The metric rollup merges (n, mean, M2) in SQL: values near 1e9 keep their spread."""
    import numpy as np

    kit = QueueKit.make(services)
    automation_id = kit.automation("big-values", experiment_id="big-exp", max_running=100)
    values = np.random.default_rng(5).normal(1e9, 2.0, 60)
    kit.dispatch(automation_id, len(values))
    claimed = services.queue.claim("w", len(values), 30)
    for run, value in zip(claimed, values, strict=True):
        result = RunResult(RunStatus.SUCCEEDED, 0, None, 10, metrics={"bytes": float(value)})
        services.queue.finish(run.run_id, "w", result)
    [item] = services.experiments.summary(kit.caller, "big-exp")["variants"]
    low, high = item["metrics"]["bytes"]["interval"]
    sd = float(values.std(ddof=1))
    half = (high - low) / 2
    # t(0.975, 59) * sd / sqrt(60)
    assert half == pytest.approx(2.0009954 * sd / np.sqrt(60), rel=1e-3)
