"""Clone, promote, decisions and automatic champion/challenger through the real API."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from automation_server.db.models import Variant
from automation_server.queue.manager import RunResult
from tests.support import LiveServer, targz


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


def create(http: httpx.Client, **extra: Any) -> dict[str, Any]:
    ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
    other = http.post("/v1/uploads", content=targz({"run.py": "2"})).json()["ref"]
    body = {
        "name": "life",
        "experiment_id": "life-exp",
        "concurrency": {"max_running": 1000, "on_overlap": "queue"},
        "variants": [
            {
                "name": "control",
                "weight": 50,
                "tarball": ref,
                "env": {"A": "1"},
                "description": "the original",
                "entrypoint": ["python3", "main.py", "--fast"],
            },
            {"name": "other", "weight": 50, "tarball": other},
        ],
        **extra,
    }
    r = http.post("/v1/automations", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_clone_copies_every_field_not_overridden(http: httpx.Client) -> None:
    a = create(http)
    r = http.post(
        f"/v1/automations/{a['id']}/variants/control/clone",
        json={"name": "control-v2", "weight": 10, "overrides": {"env": {"B": "2"}}},
    )
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["revision"] == 2
    src, clone = out["variants"][0], out["variants"][2]
    assert clone["name"] == "control-v2" and clone["weight"] == 10
    assert clone["env"] == {"B": "2"}  # replaced whole
    for field in ("tarball", "digest", "entrypoint", "description"):
        assert clone[field] == src[field]
    assert clone["source"]["kind"] == "clone" and clone["source"]["of"] == "control"
    revisions = http.get(f"/v1/automations/{a['id']}/revisions").json()["items"]
    assert revisions[0]["weights"] == {"control": 50, "other": 50, "control-v2": 10}


def test_clone_errors(http: httpx.Client) -> None:
    a = create(http)
    path = f"/v1/automations/{a['id']}/variants"
    assert http.post(f"{path}/ghost/clone", json={"name": "x"}).status_code == 422
    r = http.post(f"{path}/control/clone", json={"name": "other"})
    assert (r.status_code, r.json()["code"]) == (422, "duplicate_variant")
    assert http.post(f"{path}/control/clone", json={"name": "Bad Name"}).status_code == 400
    r = http.post(
        f"{path}/control/clone",
        json={"name": "x", "overrides": {"tarball": "blob:sha256:" + "0" * 64}},
    )
    assert (r.status_code, r.json()["code"]) == (422, "unknown_blob")
    r = http.post(
        f"{path}/control/clone", json={"name": "x", "overrides": {"entrypoint": ["/bin/sh"]}}
    )
    assert r.status_code == 422
    assert http.get(f"/v1/automations/{a['id']}").json()["revision"] == 1


def test_promote_gives_all_weight_and_records_the_decision(
    server: LiveServer, http: httpx.Client
) -> None:
    a = create(http)
    for _ in range(12):
        http.post(f"/v1/automations/{a['id']}/dispatch")
    r = http.post(
        f"/v1/automations/{a['id']}/promote",
        json={"variant": "other", "reason": "faster in the test"},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["champion"] == "other" and out["revision"] == 2
    assert {v["name"]: v["weight"] for v in out["variants"]} == {"control": 0, "other": 100}
    (decision,) = http.get(f"/v1/automations/{a['id']}/decisions").json()["items"]
    assert decision["kind"] == "promote" and decision["variant"] == "other"
    assert decision["reason"] == "faster in the test" and decision["automatic"] is False
    assert decision["actor"].startswith("key:") and decision["revision"] == 2
    assert decision["summary"]["experiment_id"] == "life-exp"
    assert sum(v["runs_assigned"] for v in decision["summary"]["variants"]) == 12
    runs = [http.post(f"/v1/automations/{a['id']}/dispatch").json() for _ in range(10)]
    assert {r["variant"] for r in runs} == {"other"}
    with server.services.db.read() as session:
        flags = session.execute(
            sa.select(Variant.name, Variant.is_champion).where(
                Variant.automation_id == a["id"], Variant.deleted_at.is_(None)
            )
        ).all()
    assert dict(flags) == {"control": False, "other": True}


def test_database_refuses_a_second_champion(server: LiveServer, http: httpx.Client) -> None:
    a = create(http)
    http.post(f"/v1/automations/{a['id']}/promote", json={"variant": "control"})
    with pytest.raises(IntegrityError), server.services.db.write() as session:
        session.execute(
            sa.update(Variant).where(Variant.automation_id == a["id"]).values(is_champion=True)
        )


def test_promote_errors_and_isolation(server: LiveServer, http: httpx.Client) -> None:
    a = create(http)
    r = http.post(f"/v1/automations/{a['id']}/promote", json={"variant": "ghost"})
    assert (r.status_code, r.json()["code"]) == (422, "unknown_variant")
    assert http.post(f"/v1/automations/{a['id']}/promote", json={}).status_code == 400
    with server.client(server.new_key("globex")) as globex:
        assert (
            globex.post(f"/v1/automations/{a['id']}/promote", json={"variant": "other"}).status_code
            == 404
        )
        assert globex.get(f"/v1/automations/{a['id']}/decisions").status_code == 404
        assert (
            globex.post(
                f"/v1/automations/{a['id']}/variants/control/clone", json={"name": "x"}
            ).status_code
            == 404
        )


def test_patch_champion_and_deleting_it(http: httpx.Client) -> None:
    a = create(http)
    r = http.patch(f"/v1/automations/{a['id']}", json={"champion": "control"})
    assert r.json()["champion"] == "control" and r.json()["revision"] == 2
    assert http.patch(f"/v1/automations/{a['id']}", json={"champion": "ghost"}).status_code == 422
    r = http.patch(
        f"/v1/automations/{a['id']}", json={"experiment_id": None, "variants": [{"name": "other"}]}
    )
    assert r.json()["champion"] is None and [v["name"] for v in r.json()["variants"]] == ["other"]


def finish_all(server: LiveServer, outcome: dict[str, tuple[float, float]], seed: int) -> None:
    """Finish every queued run like a worker, score ~ N(mean, sd) by variant."""
    rng = random.Random(seed)
    queue = server.services.queue
    while ids := [c.run_id for c in queue.claim("sim", 200, 60)]:
        with server.services.db.read() as session:
            from automation_server.db.models import Run

            variants = dict(
                session.execute(sa.select(Run.id, Run.variant).where(Run.id.in_(ids))).all()
            )
        for run_id in ids:
            mean, sd = outcome[variants[run_id]]
            queue.finish(
                run_id,
                "sim",
                RunResult(
                    status="succeeded",
                    exit_code=0,
                    error=None,
                    duration_ms=100,
                    metrics={"score": rng.gauss(mean, sd)},
                ),
            )


def test_auto_promotes_a_clearly_better_challenger(server: LiveServer, http: httpx.Client) -> None:
    a = create(
        http,
        auto_promote={
            "metric": "score",
            "direction": "higher",
            "min_runs_per_variant": 30,
            "alpha": 0.05,
        },
    )
    for _ in range(200):
        http.post(f"/v1/automations/{a['id']}/dispatch")
    finish_all(server, {"control": (1.0, 0.2), "other": (1.5, 0.2)}, seed=1)
    verdict = server.services.lifecycle.evaluate(a["id"])
    assert verdict is not None and verdict.action == "promote"
    out = http.get(f"/v1/automations/{a['id']}").json()
    assert out["champion"] == "other"
    (decision,) = http.get(f"/v1/automations/{a['id']}/decisions").json()["items"]
    assert decision["automatic"] is True and decision["actor"] == "system:auto-promote"
    assert "excludes 0" in decision["reason"] and decision["summary"] is not None
    # Idempotent: evaluating again decides nothing more.
    again = server.services.lifecycle.evaluate(a["id"])
    assert again is not None and again.action == "none"
    assert len(http.get(f"/v1/automations/{a['id']}/decisions").json()["items"]) == 1


def test_auto_rolls_back_a_challenger_breaking_a_guardrail(
    server: LiveServer, http: httpx.Client
) -> None:
    a = create(
        http,
        auto_promote={
            "metric": "success_rate",
            "direction": "higher",
            "min_runs_per_variant": 30,
            "guardrails": [{"metric": "score", "direction": "lower", "max_regression": 0.1}],
        },
    )
    for _ in range(200):
        http.post(f"/v1/automations/{a['id']}/dispatch")
    finish_all(server, {"control": (1.0, 0.1), "other": (2.0, 0.1)}, seed=2)
    verdict = server.services.lifecycle.evaluate(a["id"])
    assert verdict is not None and verdict.action == "rollback" and verdict.variant == "other"
    out = http.get(f"/v1/automations/{a['id']}").json()
    assert {v["name"]: v["weight"] for v in out["variants"]} == {"control": 50, "other": 0}
    (decision,) = http.get(f"/v1/automations/{a['id']}/decisions").json()["items"]
    assert decision["kind"] == "rollback" and "guardrail 'score'" in decision["reason"]


def test_sample_ratio_mismatch_blocks_decisions(server: LiveServer, http: httpx.Client) -> None:
    from automation_server.db.models import Automation

    a = create(http, auto_promote={"metric": "score", "min_runs_per_variant": 30})
    services = server.services
    with services.db.write() as session:
        automation = session.get(Automation, a["id"])
        assert automation is not None
        for i in range(300):
            u = 0.9 if i % 4 == 0 else 0.1  # 75% control at 50/50 weights
            services.dispatcher.enqueue(
                session, automation, trigger="manual", payload={}, rng=lambda u=u: u
            )
    finish_all(server, {"control": (1.0, 0.1), "other": (3.0, 0.1)}, seed=3)
    verdict = services.lifecycle.evaluate(a["id"])
    assert verdict is not None and verdict.action == "none" and "sample-ratio" in verdict.reason
    assert http.get(f"/v1/automations/{a['id']}").json()["champion"] is None
