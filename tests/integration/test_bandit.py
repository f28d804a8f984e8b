"""Bandit allocation through the real API and queue, on SQLite and PostgreSQL: Thompson
sampling moves weight to the variant that works, never starves an arm below
``min_weight``, holds under a sample-ratio mismatch, and ends with a champion."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from automation_sdk.cli import main
from click.testing import CliRunner
from sqlalchemy import select

from automation_server.automations.bandit import plan_reweight
from automation_server.automations.store import VariantDraft
from automation_server.db.models import Run
from automation_server.experiments import stats
from automation_server.experiments.policy import ArmStats
from automation_server.queue.results import RunResult
from automation_server.statuses import RunStatus
from tests.support import LiveServer, targz

BANDIT = {"mode": "bandit", "metric": "success_rate", "every_runs": 50, "min_weight": 100}


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


def create(http: httpx.Client, arms: list[str], **body: Any) -> dict[str, Any]:
    ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
    r = http.post(
        "/v1/automations",
        json={
            "name": "bandit",
            "experiment_id": "bandit-exp",
            "concurrency": {"max_running": 1000, "on_overlap": "queue"},
            "variants": [{"name": a, "weight": 1, "tarball": ref} for a in arms],
            **body,
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def play(
    server: LiveServer,
    http: httpx.Client,
    automation_id: str,
    runs: int,
    outcome: Callable[[str, random.Random], tuple[bool, dict[str, float]]],
    seed: int = 1,
) -> None:
    """Dispatch and finish runs one at a time, evaluating after each as the worker does."""
    rng = random.Random(seed)
    services = server.services
    for _ in range(runs):
        assert http.post(f"/v1/automations/{automation_id}/dispatch").status_code == 202
        (claimed,) = services.queue.claim("sim", 1, 60)
        with services.db.read() as session:
            variant = session.scalar(select(Run.variant).where(Run.id == claimed.run_id))
        ok, metrics = outcome(str(variant), rng)
        status = RunStatus.SUCCEEDED if ok else RunStatus.FAILED
        report = services.queue.finish(
            claimed.run_id, "sim", RunResult(status, 0 if ok else 1, None, 10, metrics=metrics)
        )
        if report.evaluate:
            services.lifecycle.evaluate(automation_id)


def weights(http: httpx.Client, automation_id: str) -> dict[str, int]:
    auto = http.get(f"/v1/automations/{automation_id}").json()
    return {v["name"]: v["weight"] for v in auto["variants"]}


def reweights(http: httpx.Client, automation_id: str) -> list[dict[str, Any]]:
    items = http.get(f"/v1/automations/{automation_id}/decisions").json()["items"]
    return [d for d in items if d["kind"] == "reweight"]


def test_three_arms_the_best_gets_most_of_the_weight(
    server: LiveServer, http: httpx.Client
) -> None:
    rates = {"low": 0.1, "mid": 0.5, "high": 0.9}
    auto = create(http, list(rates), allocation=BANDIT)
    assert auto["allocation"] == BANDIT
    play(server, http, auto["id"], 300, lambda v, rng: (rng.random() < rates[v], {}))
    final = weights(http, auto["id"])
    assert sum(final.values()) == 10_000 and min(final.values()) >= 100
    assert final["high"] > 5_000 and final["high"] > final["mid"] >= final["low"], final
    decisions = reweights(http, auto["id"])
    assert 4 <= len(decisions) <= 6  # every 50 randomly assigned outcomes
    latest = decisions[0]
    assert latest["automatic"] is True and latest["variant"] == "high"
    facts = latest["summary"]["bandit"]
    assert facts["method"] == "thompson sampling" and facts["draws"] >= 10_000
    assert facts["weights"] == weights_at(http, auto["id"], latest["revision"])
    assert abs(sum(facts["prob_best"].values()) - 1) < 1e-9
    assert "probability of being the best" in latest["reason"]
    assert latest["actor"] == "system:bandit"

    # The CLI shows how traffic is split now.
    env = {"AUTOMATION_URL": server.base_url, "AUTOMATION_API_KEY": server.new_key("acme")}
    shown = CliRunner().invoke(main, ["experiment", "bandit-exp"], env={**env, "COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    assert "bandit on success_rate (reweights every 50 runs, min weight 100)" in shown.output
    assert f"high {final['high']}" in shown.output


def weights_at(http: httpx.Client, automation_id: str, revision: int) -> dict[str, int]:
    items = http.get(f"/v1/automations/{automation_id}/revisions").json()["items"]
    return dict(next(r["weights"] for r in items if r["revision"] == revision))


def test_an_a_a_bandit_never_starves_an_arm_below_min_weight(
    server: LiveServer, http: httpx.Client
) -> None:
    auto = create(
        http, ["a", "b", "c"], allocation={**BANDIT, "every_runs": 10, "min_weight": 1_000}
    )
    play(server, http, auto["id"], 200, lambda v, rng: (rng.random() < 0.5, {}), seed=5)
    revisions = http.get(f"/v1/automations/{auto['id']}/revisions").json()["items"]
    assert len(revisions) >= 15
    for revision in revisions:
        shares = list(revision["weights"].values())
        assert sum(shares) in (3, 10_000) and min(shares) >= (1 if sum(shares) == 3 else 1_000)


def test_a_lower_is_better_metric_moves_weight_to_the_lower_arm(
    server: LiveServer, http: httpx.Client
) -> None:
    latency = {"slow": 200.0, "quick": 150.0}
    auto = create(
        http,
        list(latency),
        metrics={"latency_ms": {"direction": "lower", "unit": "ms"}},
        allocation={**BANDIT, "metric": "latency_ms", "every_runs": 40},
    )
    play(
        server,
        http,
        auto["id"],
        120,
        lambda v, rng: (True, {"latency_ms": rng.gauss(latency[v], 20)}),
    )
    final = weights(http, auto["id"])
    assert final["quick"] > 9_000, final


def test_no_reweight_while_the_sample_ratio_is_flagged(
    server: LiveServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from automation_server.dispatch import assignment

    class Broken:
        """An assignment that always lands in the first range: what SRM exists to catch."""

        def random(self) -> float:
            return 0.0

    monkeypatch.setattr(assignment, "_SYSTEM_RANDOM", Broken())
    auto = create(http, ["a", "b"], allocation=BANDIT)
    play(server, http, auto["id"], 120, lambda v, rng: (v == "a", {}))
    summary = http.get("/v1/experiments/bandit-exp").json()
    assert summary["srm_flagged"] is True
    assert reweights(http, auto["id"]) == []
    assert weights(http, auto["id"]) == {"a": 1, "b": 1}


def test_a_champion_ends_the_bandit(server: LiveServer, http: httpx.Client) -> None:
    auto = create(http, ["a", "b"], allocation=BANDIT)
    play(server, http, auto["id"], 60, lambda v, rng: (v == "b", {}))
    assert len(reweights(http, auto["id"])) == 1
    promoted = http.post(
        f"/v1/automations/{auto['id']}/promote", json={"variant": "b", "reason": "clear winner"}
    )
    assert promoted.status_code == 200, promoted.text
    assert http.get(f"/v1/automations/{auto['id']}").json()["allocation"] == {"mode": "fixed"}
    play(server, http, auto["id"], 60, lambda v, rng: (v == "b", {}))
    assert len(reweights(http, auto["id"])) == 1
    assert weights(http, auto["id"])["a"] == 0, "the champion gets all traffic"


@pytest.mark.parametrize(
    ("allocation", "field"),
    [
        ({"mode": "greedy"}, "allocation.mode"),
        ({**BANDIT, "every_runs": 9}, "allocation.every_runs"),
        ({**BANDIT, "every_runs": 100_001}, "allocation.every_runs"),
        ({**BANDIT, "min_weight": -1}, "allocation.min_weight"),
        ({**BANDIT, "min_weight": 10_001}, "allocation.min_weight"),
        ({**BANDIT, "min_weight": 4_000}, "allocation.min_weight"),  # 3 variants x 4000
        ({**BANDIT, "metric": "latency_ms"}, "allocation.metric"),  # not declared
    ],
)
def test_bad_allocations_are_refused(
    http: httpx.Client, allocation: dict[str, Any], field: str
) -> None:
    ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
    r = http.post(
        "/v1/automations",
        json={
            "name": "bad",
            "experiment_id": "bad",
            "variants": [{"name": n, "tarball": ref} for n in ("a", "b", "c")],
            "allocation": allocation,
        },
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_allocation" and r.json()["field"] == field


def test_patching_variants_rechecks_the_allocation(http: httpx.Client) -> None:
    auto = create(http, ["a", "b"], allocation={**BANDIT, "min_weight": 5_000})
    ref = http.post("/v1/uploads", content=targz({"main.py": "2"})).json()["ref"]
    third = http.patch(
        f"/v1/automations/{auto['id']}",
        json={"variants": [{"name": "a"}, {"name": "b"}, {"name": "c", "tarball": ref}]},
    )
    assert third.status_code == 422 and third.json()["field"] == "allocation.min_weight"
    back = http.patch(f"/v1/automations/{auto['id']}", json={"allocation": {"mode": "fixed"}})
    assert back.status_code == 200 and back.json()["allocation"] == {"mode": "fixed"}


def test_the_plan_is_reproducible_from_its_seed() -> None:
    drafts = [VariantDraft(n, 1, "sha256:" + "0" * 64, ["python3"], {}, "", {}) for n in ("a", "b")]
    arms = {"a": ArmStats(40, 100, {}), "b": ArmStats(55, 100, {"x": stats.MeanStats(0)})}
    one = plan_reweight(BANDIT, {}, drafts, arms, seed=42)
    two = plan_reweight(BANDIT, {}, drafts, arms, seed=42)
    assert one.facts == two.facts and one.best == "b"
    assert sum(d.weight for d in one.drafts) == 10_000
