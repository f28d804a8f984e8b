"""Cumulative effects from the minute rollups agree with the same computed from raw runs.

Runs are created at known past times through the real dispatcher (the scheduler's
``Batch`` carries the time) and finished through the real queue, so the rollups are
written by the real listener; the expected values come from the runs table with
numpy and the mSPRT formula written out again here.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from automation_server.db.models import Automation, Run
from automation_server.dispatch.service import Batch
from automation_server.experiments import stats
from automation_server.experiments.effects import SUCCESS_RATE, Effects, ExperimentEffects
from automation_server.experiments.timeseries import BUCKETS
from automation_server.security.accounts import Caller, ensure_organization
from tests.integration.test_experiments import make_experiment, simulate_worker
from tests.support import LiveServer

ALPHA = 0.05
START = datetime(2026, 3, 2, 9, 0, 7, tzinfo=UTC)


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


def dispatch_at(server: LiveServer, automation_id: str, when: datetime, **how: str) -> None:
    """One run created at ``when`` (the dispatcher takes the scheduler's batch time)."""
    services = server.services
    with services.db.write() as session:
        automation = session.get(Automation, automation_id)
        assert automation is not None
        batch = Batch.load(session, services.queue, [automation], when)
        services.dispatcher.enqueue(
            session, automation, trigger="manual", payload={}, batch=batch, **how
        )


def spread_runs(server: LiveServer, automation_id: str, rng: random.Random) -> None:
    """About 260 runs over three hours, some sticky and some forced (left out)."""
    for i in range(260):
        when = START + timedelta(seconds=rng.uniform(0, 3 * 3600))
        if i % 23 == 0:
            dispatch_at(server, automation_id, when, variant="cheap")
        elif i % 5 == 0:
            dispatch_at(server, automation_id, when, key=f"user-{i}")
        else:
            dispatch_at(server, automation_id, when)
    simulate_worker(server, rng)


def raw_stats(runs: list[Run], variant: str, before: datetime, measure: str) -> np.ndarray:
    """The measured values of one variant's runs created before ``before``."""
    mine = [
        r
        for r in runs
        if r.variant == variant
        and r.created_at < before
        and r.assignment_method != "forced"
        and r.status in ("succeeded", "failed", "timed_out")
    ]
    if measure == SUCCESS_RATE:
        return np.array([1.0 if r.status == "succeeded" else 0.0 for r in mine])
    return np.array([r.metrics[measure] for r in mine if measure in r.metrics])


def expected(
    control: np.ndarray, treatment: np.ndarray, rate: bool
) -> tuple[float, list[float] | None]:
    """Difference of means and the always-valid interval (DESIGN 7), from the values;
    no interval while both samples are constant (as the summary has none)."""
    estimate = float(treatment.mean() - control.mean())
    var_c, var_t = control.var(ddof=1), treatment.var(ddof=1)
    v = var_c / len(control) + var_t / len(treatment)
    if v == 0:
        return estimate, None
    pooled = ((len(control) - 1) * var_c + (len(treatment) - 1) * var_t) / (
        len(control) + len(treatment) - 2
    )
    tau2 = stats.optimal_tau2_ratio(ALPHA) * 2 * pooled / 100
    half = math.sqrt(v * (v + tau2) / tau2 * (math.log((v + tau2) / v) + 2 * math.log(1 / ALPHA)))
    low, high = estimate - half, estimate + half
    if rate:
        low, high = max(-1.0, low), min(1.0, high)
    return estimate, [low, high]


def effects_of(server: LiveServer, measure: str, bucket: str) -> Effects:
    org_id = ensure_organization(server.services.db, "acme")
    return ExperimentEffects(server.services.db).effects(
        Caller.system(org_id),
        "exp-stats",
        measure=measure,
        control="control",
        bucket=bucket,
        now=START + timedelta(hours=4),
    )


@pytest.mark.parametrize("bucket", ["5m", "1h"])
def test_cumulative_effects_match_the_raw_runs(
    server: LiveServer, http: httpx.Client, bucket: str
) -> None:
    automation_id = make_experiment(http)
    spread_runs(server, automation_id, random.Random(11))
    with server.services.db.read() as session:
        runs = list(session.scalars(select(Run).where(Run.automation_id == automation_id)))
    step = timedelta(seconds=BUCKETS[bucket])
    for measure in (SUCCESS_RATE, "score"):
        effects = effects_of(server, measure, bucket)
        assert effects.complete_from is None
        assert [s.variant for s in effects.series] == ["faster", "cheap"]
        for series in effects.series:
            points = series.points
            assert points, measure
            # One point per bucket end, from the first bucket with data to "now".
            assert all(b.t - a.t == step for a, b in pairwise(points))
            seconds = BUCKETS[bucket]
            now = int((START + timedelta(hours=4)).timestamp())
            assert points[-1].t.timestamp() == now // seconds * seconds + seconds
            checked = 0
            for point in points:
                control = raw_stats(runs, "control", point.t, measure)
                treatment = raw_stats(runs, series.variant, point.t, measure)
                assert (point.control.count, point.treatment.count) == (
                    len(control),
                    len(treatment),
                )
                if min(len(control), len(treatment)) < 2:
                    continue
                estimate, interval = expected(control, treatment, measure == SUCCESS_RATE)
                assert point.estimate == pytest.approx(estimate, rel=1e-9, abs=1e-12)
                if interval is None:
                    assert point.interval is None
                    continue
                assert point.interval is not None
                assert list(point.interval) == pytest.approx(interval, rel=1e-9, abs=1e-12)
                checked += 1
            assert checked >= len(points) // 2, (measure, series.variant, checked)


def test_the_last_point_is_the_summary(server: LiveServer, http: httpx.Client) -> None:
    """The chart ends where the summary's always-valid interval is (other rollups)."""
    automation_id = make_experiment(http)
    spread_runs(server, automation_id, random.Random(5))
    summary = http.get("/v1/experiments/exp-stats").json()
    faster = next(i for i in summary["variants"] if i["variant"] == "faster")["vs_control"]
    for measure, part in ((SUCCESS_RATE, faster["success_rate"]), ("score", None)):
        cmp = part or faster["metrics"][measure]
        last = effects_of(server, measure, "15m").series[0].points[-1]
        assert last.estimate == pytest.approx(cmp["difference"]["estimate"])
        assert last.interval == pytest.approx(cmp["always_valid"]["interval"])
        assert last.tau2 == pytest.approx(cmp["always_valid"]["tau2"])
