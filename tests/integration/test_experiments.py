"""Experiment summaries agree with an independent computation over the same runs."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import httpx
import numpy as np
import pytest
from scipy import stats as sps
from sqlalchemy import select

from automation_server.db.models import Automation, Run
from automation_server.queue.manager import RunResult
from tests.support import LiveServer, targz

P_SUCCESS = {"control": 0.6, "faster": 0.8, "cheap": 0.5}
SCORE_MEAN = {"control": 1.0, "faster": 1.4, "cheap": 0.9}


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


def make_experiment(http: httpx.Client, weights: tuple[int, int, int] = (50, 30, 20)) -> str:
    ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
    r = http.post(
        "/v1/automations",
        json={
            "name": "exp",
            "experiment_id": "exp-stats",
            "concurrency": {"max_running": 1000, "on_overlap": "queue"},
            "variants": [
                {"name": n, "weight": w, "tarball": ref}
                for n, w in zip(P_SUCCESS, weights, strict=True)
            ],
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def simulate_worker(server: LiveServer, rng: random.Random) -> None:
    """Claim every queued run and finish it the way a worker would, with known outcomes."""
    queue = server.services.queue
    while ids := [c.run_id for c in queue.claim("sim-worker", 100, 60)]:
        with server.services.db.read() as session:
            variants = dict(
                session.execute(select(Run.id, Run.variant).where(Run.id.in_(ids))).all()
            )
        for run_id in ids:
            v = variants[run_id]
            roll = rng.random()
            status = (
                "succeeded"
                if roll < P_SUCCESS[v]
                else "failed"
                if roll < P_SUCCESS[v] + (1 - P_SUCCESS[v]) * 0.8
                else "timed_out"
            )
            metrics = {"score": rng.gauss(SCORE_MEAN[v], 0.5)} if status == "succeeded" else {}
            queue.finish(
                run_id,
                "sim-worker",
                RunResult(
                    status=status,
                    exit_code=0 if status == "succeeded" else 1,
                    error=None,
                    duration_ms=int(rng.lognormvariate(5, 0.6)),
                    metrics=metrics,
                ),
            )


def wilson(s: int, n: int) -> tuple[float, float]:
    z = sps.norm.ppf(0.975)
    p = s / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def runs_of(server: LiveServer, automation_id: str) -> list[Run]:
    with server.services.db.read() as session:
        return list(session.scalars(select(Run).where(Run.automation_id == automation_id)))


def test_summary_matches_an_independent_computation(server: LiveServer, http: httpx.Client) -> None:
    rng = random.Random(7)
    automation_id = make_experiment(http)
    for i in range(400):
        body: dict[str, Any] = {}
        if i % 20 == 0:
            body["variant"] = "cheap"  # forced: left out unless include_forced
        elif i % 7 == 0:
            body["assignment_key"] = f"user-{i}"
        http.post(f"/v1/automations/{automation_id}/dispatch", json=body)
    queued = http.get("/v1/runs", params={"automation_id": automation_id, "limit": 3}).json()
    for run in queued["items"]:
        http.post(f"/v1/runs/{run['id']}/cancel")
    simulate_worker(server, rng)

    summary = http.get("/v1/experiments/exp-stats").json()
    assert summary["control"] == "control"
    runs = [r for r in runs_of(server, automation_id) if r.assignment_method != "forced"]
    # Assignment is truly random (the CSPRNG), so the SRM check flags one run in a
    # thousand by chance: compare it with the same chi-square computed here.
    names = list(P_SUCCESS)
    random_counts = [
        sum(r.variant == v and r.assignment_method == "random" for r in runs) for v in names
    ]
    expected = [sum(random_counts) * w / 100 for w in (50, 30, 20)]
    srm_p = float(sps.chisquare(random_counts, expected).pvalue)
    assert summary["srm"][0]["p_value"] == pytest.approx(srm_p)
    assert summary["srm_flagged"] is (srm_p < 0.001)
    by_variant = {item["variant"]: item for item in summary["variants"]}
    assert list(by_variant) == ["control", "faster", "cheap"]
    for name, item in by_variant.items():
        mine = [r for r in runs if r.variant == name]
        assert item["runs_assigned"] == len(mine)
        for status in ("succeeded", "failed", "timed_out", "cancelled"):
            assert item["runs_finished"][status] == sum(r.status == status for r in mine)
        ok = sum(r.status == "succeeded" for r in mine)
        trials = sum(r.status in ("succeeded", "failed", "timed_out") for r in mine)
        assert item["success_rate"]["estimate"] == pytest.approx(ok / trials)
        assert item["success_rate"]["interval"] == pytest.approx(list(wilson(ok, trials)))
        durations = np.array([r.duration_ms for r in mine if r.status != "cancelled"])
        for q, key in ((0.5, "p50"), (0.95, "p95")):
            exact = np.quantile(durations, q, method="lower")
            assert item["duration_ms"][key] == pytest.approx(exact, rel=0.011)
        scores = np.array([r.metrics["score"] for r in mine if "score" in r.metrics])
        metric = item["metrics"]["score"]
        assert metric["count"] == len(scores)
        assert metric["mean"] == pytest.approx(scores.mean())
        low, high = sps.t.interval(0.95, len(scores) - 1, loc=scores.mean(), scale=sps.sem(scores))
        assert metric["interval"] == pytest.approx([low, high])
        if name == "control":
            assert item["vs_control"] is None
            control_scores, control_ok = scores, (ok, trials)
            continue
        cmp = item["vs_control"]["metrics"]["score"]
        welch = sps.ttest_ind(scores, control_scores, equal_var=False)
        ci = welch.confidence_interval(0.95)
        assert cmp["difference"]["estimate"] == pytest.approx(scores.mean() - control_scores.mean())
        assert cmp["difference"]["interval"] == pytest.approx([ci.low, ci.high])
        assert cmp["difference"]["p_value"] == pytest.approx(welch.pvalue)
        se = math.sqrt(
            scores.var(ddof=1) / len(scores) + control_scores.var(ddof=1) / len(control_scores)
        )
        assert cmp["prob_better"] == pytest.approx(
            sps.norm.cdf((scores.mean() - control_scores.mean()) / se)
        )
        always = cmp["always_valid"]["interval"]
        assert always[0] < ci.low and always[1] > ci.high  # wider than the fixed-n interval
        assert cmp["always_valid"]["tau2"] > 0
        rate = item["vs_control"]["success_rate"]
        draws = 200_000
        gen = np.random.default_rng(1)
        pv = gen.beta(1 + ok, 1 + trials - ok, draws)
        pc = gen.beta(1 + control_ok[0], 1 + control_ok[1] - control_ok[0], draws)
        assert rate["prob_better"] == pytest.approx(float(np.mean(pv > pc)), abs=0.01)
    # SRM: randomly assigned runs against the weights 50/30/20.
    random_runs = [r for r in runs if r.assignment_method == "random"]
    observed = [sum(r.variant == v for r in random_runs) for v in P_SUCCESS]
    expected = np.array([50, 30, 20]) / 100 * len(random_runs)
    (srm,) = summary["srm"]
    assert srm["observed"] == dict(zip(P_SUCCESS, observed, strict=True))
    assert srm["p_value"] == pytest.approx(sps.chisquare(observed, expected).pvalue)

    forced = http.get("/v1/experiments/exp-stats", params={"include_forced": "true"}).json()
    cheap = next(i for i in forced["variants"] if i["variant"] == "cheap")
    assert cheap["runs_assigned"] == by_variant["cheap"]["runs_assigned"] + 20


def test_summary_by_revision_and_control(server: LiveServer, http: httpx.Client) -> None:
    automation_id = make_experiment(http)
    for _ in range(30):
        http.post(f"/v1/automations/{automation_id}/dispatch")
    http.patch(f"/v1/automations/{automation_id}", json={"weights": {"cheap": 0}})
    for _ in range(30):
        http.post(f"/v1/automations/{automation_id}/dispatch")
    simulate_worker(server, random.Random(3))
    out = http.get(
        "/v1/experiments/exp-stats", params={"by": "revision", "control": "faster"}
    ).json()
    assert out["control"] == "faster" and out["by"] == "revision"
    revs = {(i["revision"], i["variant"]) for i in out["variants"]}
    assert {r for r, _ in revs} == {1, 2}
    assert (2, "cheap") not in revs
    assert sum(i["runs_assigned"] for i in out["variants"]) == 60
    assert [s["revision"] for s in out["srm"]] == [1, 2]
    faster = [i for i in out["variants"] if i["variant"] == "faster"]
    assert all(i["vs_control"] is None for i in faster)


def test_sample_ratio_mismatch_is_flagged(server: LiveServer, http: httpx.Client) -> None:
    automation_id = make_experiment(http, (50, 50, 0))
    services = server.services
    with services.db.write() as session:
        automation = session.get(Automation, automation_id)
        assert automation is not None
        for i in range(600):  # a broken randomiser: control far more often than 50%
            u = 0.1 if i % 3 else 0.9
            services.dispatcher.enqueue(
                session, automation, trigger="manual", payload={}, rng=lambda u=u: u
            )
    summary = http.get("/v1/experiments/exp-stats").json()
    (srm,) = summary["srm"]
    assert srm["flagged"] and srm["p_value"] < 0.001 and summary["srm_flagged"]
    assert srm["observed"] == {"control": 400, "faster": 200, "cheap": 0}


def test_timeseries_buckets(server: LiveServer, http: httpx.Client) -> None:
    automation_id = make_experiment(http)
    for _ in range(40):
        http.post(f"/v1/automations/{automation_id}/dispatch")
    simulate_worker(server, random.Random(5))
    out = http.get(
        "/v1/experiments/exp-stats/timeseries", params={"metric": "score", "bucket": "1m"}
    ).json()
    assert out["bucket"] == "1m" and out["metric"] == "score"
    total = sum(p["count"] for s in out["series"] for p in s["points"])
    assert total == 40, json.dumps(out)[:3000]
    stamps = [p["t"] for p in out["series"][0]["points"]]
    assert all(t.endswith(":00Z") for t in stamps)  # UTC-aligned minutes
    assert len({len(s["points"]) for s in out["series"]}) == 1  # empty buckets included
    scores = [p for s in out["series"] for p in s["points"] if p["metric_count"]]
    assert scores and all(p["metric_mean"] is not None for p in scores)
    hourly = http.get("/v1/experiments/exp-stats/timeseries", params={"bucket": "1h"}).json()
    assert sum(p["count"] for s in hourly["series"] for p in s["points"]) == 40


def test_experiment_errors(server: LiveServer, http: httpx.Client) -> None:
    make_experiment(http)
    assert http.get("/v1/experiments/nope").status_code == 404
    http.post(f"/v1/automations/{make_experiment_id(http)}/dispatch")
    assert http.get("/v1/experiments/exp-stats", params={"by": "day"}).status_code == 400
    r = http.get("/v1/experiments/exp-stats", params={"control": "ghost"})
    assert (r.status_code, r.json()["field"]) == (422, "control")
    assert (
        http.get("/v1/experiments/exp-stats/timeseries", params={"bucket": "2h"}).status_code == 400
    )
    listed = http.get("/v1/experiments").json()["items"]
    assert [e["experiment_id"] for e in listed] == ["exp-stats"]
    with server.client(server.new_key("globex")) as globex:
        assert globex.get("/v1/experiments/exp-stats").status_code == 404
        assert globex.get("/v1/experiments/exp-stats/timeseries").status_code == 404
        assert globex.get("/v1/experiments").json()["items"] == []


def make_experiment_id(http: httpx.Client) -> str:
    return str(http.get("/v1/automations", params={"name": "exp"}).json()["items"][0]["id"])
