"""Dispatch: the server chooses the variant and records it on the queued run."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from scipy.stats import chisquare

from automation_server.dispatch.assignment import gb_hash
from tests.support import LiveServer, targz


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


def make_ab(http: httpx.Client, w1: int = 70, w2: int = 30, **extra: Any) -> dict[str, Any]:
    refs = [
        http.post("/v1/uploads", content=targz({"main.py": f"print({i})"})).json()["ref"]
        for i in (1, 2)
    ]
    body = {
        "name": "ab",
        "experiment_id": "exp-1",
        "variants": [
            {"name": "control", "weight": w1, "tarball": refs[0]},
            {"name": "treatment", "weight": w2, "tarball": refs[1]},
        ],
        **extra,
    }
    r = http.post("/v1/automations", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_dispatch_records_the_assignment_on_the_queued_run(http: httpx.Client) -> None:
    a = make_ab(http)
    r = http.post(f"/v1/automations/{a['id']}/dispatch", json={"payload": {"ticket": 7}})
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["status"] == "queued" and run["trigger"] == "manual" and run["attempt"] == 1
    assert run["experiment_id"] == "exp-1" and run["automation_revision"] == 1
    assert run["variant"] in ("control", "treatment")
    assert run["assignment"]["method"] == "random" and run["assignment"]["key"] is None
    assert 0 <= run["assignment"]["bucket"] < 1
    assert run["assignment"]["weights"] == {"control": 70, "treatment": 30}
    chosen = next(v for v in a["variants"] if v["name"] == run["variant"])
    assert run["tarball_digest"] == chosen["digest"]
    assert run["scheduled_for"] is None and run["started_at"] is None
    assert http.get(f"/v1/runs/{run['id']}").json() == run


def test_random_dispatches_follow_the_weights(http: httpx.Client) -> None:
    a = make_ab(http, 70, 30)
    counts = {"control": 0, "treatment": 0}
    for _ in range(1000):
        counts[http.post(f"/v1/automations/{a['id']}/dispatch").json()["variant"]] += 1
    p = chisquare([counts["control"], counts["treatment"]], [700, 300]).pvalue
    assert p > 1e-6, counts


def test_sticky_key_always_gets_the_same_variant(http: httpx.Client) -> None:
    a = make_ab(http, 50, 50)
    for key in ("user-1", "user-2", "alice@example.com", "42"):
        seen = {
            http.post(f"/v1/automations/{a['id']}/dispatch", json={"assignment_key": key}).json()[
                "variant"
            ]
            for _ in range(3)
        }
        assert len(seen) == 1
        run = http.post(f"/v1/automations/{a['id']}/dispatch", json={"assignment_key": key}).json()
        bucket = gb_hash("exp-1", key, 2)
        assert run["assignment"] == {
            "method": "sticky",
            "bucket": bucket,
            "key": key,
            "weights": {"control": 50, "treatment": 50},
        }
        assert run["variant"] == ("control" if bucket < 0.5 else "treatment")


def test_sticky_without_experiment_is_seeded_by_automation_id(http: httpx.Client) -> None:
    ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
    a = http.post("/v1/automations", json={"name": "solo", "tarball": ref}).json()
    run = http.post(f"/v1/automations/{a['id']}/dispatch", json={"assignment_key": "k"}).json()
    assert run["assignment"]["bucket"] == gb_hash(a["id"], "k", 2)


def test_forced_variant_wins_even_at_weight_zero(http: httpx.Client) -> None:
    a = make_ab(http, 1, 0)
    run = http.post(
        f"/v1/automations/{a['id']}/dispatch", json={"variant": "treatment", "assignment_key": "u"}
    ).json()
    assert run["variant"] == "treatment"
    assert run["assignment"]["method"] == "forced" and run["assignment"]["bucket"] is None
    assert all(
        http.post(f"/v1/automations/{a['id']}/dispatch").json()["variant"] == "control"
        for _ in range(20)
    )


def test_idempotency_key_returns_the_first_run(http: httpx.Client) -> None:
    a = make_ab(http)
    first = http.post(f"/v1/automations/{a['id']}/dispatch", headers={"Idempotency-Key": "abc"})
    again = http.post(f"/v1/automations/{a['id']}/dispatch", headers={"Idempotency-Key": "abc"})
    other = http.post(f"/v1/automations/{a['id']}/dispatch", headers={"Idempotency-Key": "xyz"})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert other.json()["id"] != first.json()["id"]
    runs = http.get("/v1/runs", params={"automation_id": a["id"]}).json()["items"]
    assert len(runs) == 2


def test_bad_dispatches(server: LiveServer, http: httpx.Client) -> None:
    a = make_ab(http)
    path = f"/v1/automations/{a['id']}/dispatch"
    r = http.post(path, json={"variant": "nope"})
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (
        422,
        "unknown_variant",
        "variant",
    )
    assert http.post(path, json={"payload": [1, 2]}).status_code == 400
    assert http.post(path, json={"payload": "text"}).status_code == 400
    assert http.post(path, json={"surprise": 1}).status_code == 400
    big = {"blob": "x" * (server.services.settings.uploads.max_payload_bytes + 10)}
    r = http.post(path, json={"payload": big})
    assert r.status_code == 413 and r.json()["code"] == "too_large"
    assert http.post("/v1/automations/nope/dispatch").status_code == 404
    http.patch(f"/v1/automations/{a['id']}", json={"enabled": False})
    r = http.post(path)
    assert (r.status_code, r.json()["code"]) == (409, "automation_disabled")


def test_dispatch_uses_the_current_revision(http: httpx.Client) -> None:
    a = make_ab(http, 50, 50)
    http.patch(f"/v1/automations/{a['id']}", json={"weights": {"control": 0}})
    run = http.post(f"/v1/automations/{a['id']}/dispatch").json()
    assert run["automation_revision"] == 2 and run["variant"] == "treatment"
    assert run["assignment"]["weights"] == {"control": 0, "treatment": 50}


def test_other_orgs_cannot_dispatch_or_see_runs(server: LiveServer, http: httpx.Client) -> None:
    a = make_ab(http)
    run = http.post(f"/v1/automations/{a['id']}/dispatch").json()
    with server.client(server.new_key("globex")) as globex:
        assert globex.post(f"/v1/automations/{a['id']}/dispatch").status_code == 404
        assert globex.get(f"/v1/runs/{run['id']}").status_code == 404
        assert globex.get(f"/v1/runs/{run['id']}/logs").status_code == 404
        assert globex.post(f"/v1/runs/{run['id']}/cancel").status_code == 404
        assert globex.get("/v1/runs").json()["items"] == []
        assert globex.get("/v1/runs", params={"automation_id": a["id"]}).json()["items"] == []


def test_unstorable_text_is_refused_not_a_500(http: httpx.Client) -> None:
    a = make_ab(http)
    path = f"/v1/automations/{a['id']}/dispatch"
    for payload in ({"x": "nul\u0000byte"}, {"k\u0000": 1}):
        r = http.post(path, json={"payload": payload})
        assert (r.status_code, r.json()["code"], r.json()["field"]) == (
            422,
            "invalid_text",
            "payload",
        )
    surrogate = b'{"payload": {"x": "\\ud800"}}'
    r = http.post(path, content=surrogate, headers={"content-type": "application/json"})
    assert r.status_code in (400, 422)  # the JSON decoder may refuse it first
    r = http.patch(f"/v1/automations/{a['id']}", json={"env": {"A": "x\u0000"}})
    assert r.status_code == 422 and r.json()["field"] == "env"
    for params in ({"name": "a\u0000b"}, {"cursor": "\u0000"}):
        assert http.get("/v1/automations", params=params).status_code in (200, 400)
    assert http.get("/v1/runs/%00").status_code in (400, 404)
