"""Keys and scopes, tenancy on every endpoint, audit log, rate limits, queue caps, metrics."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest

from automation_server.config import GuardSettings
from automation_server.security.ratelimit import RateLimiter
from tests.support import LiveServer, live_server, settings_for, targz


@pytest.fixture
def admin(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


def seed(http: httpx.Client) -> dict[str, str]:
    """One of everything in the organization: automation, run, experiment, key."""
    ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
    a = http.post(
        "/v1/automations",
        json={
            "name": "seeded",
            "experiment_id": "seed-exp",
            "trigger": {"type": "webhook"},
            "variants": [{"name": "a", "tarball": ref}, {"name": "b", "tarball": ref}],
        },
    ).json()
    run = http.post(f"/v1/automations/{a['id']}/dispatch").json()
    key = http.post("/v1/keys", json={"scope": "read"}).json()
    return {"automation": a["id"], "run": run["id"], "ref": ref, "key": key["id"]}


def routes(ids: dict[str, str]) -> list[tuple[str, str, Any]]:
    a, r = ids["automation"], ids["run"]
    return [
        ("GET", f"/v1/automations/{a}", None),
        ("PATCH", f"/v1/automations/{a}", {"enabled": False}),
        ("DELETE", f"/v1/automations/{a}", None),
        ("GET", f"/v1/automations/{a}/revisions", None),
        ("POST", f"/v1/automations/{a}/dispatch", {}),
        ("POST", f"/v1/automations/{a}/webhook-secret", None),
        ("POST", f"/v1/automations/{a}/variants/a/clone", {"name": "c"}),
        ("POST", f"/v1/automations/{a}/promote", {"variant": "a"}),
        ("GET", f"/v1/automations/{a}/decisions", None),
        ("GET", f"/v1/runs/{r}", None),
        ("GET", f"/v1/runs/{r}/logs", None),
        ("POST", f"/v1/runs/{r}/cancel", None),
        ("GET", "/v1/experiments/seed-exp", None),
        ("GET", "/v1/experiments/seed-exp/timeseries", None),
        ("DELETE", f"/v1/keys/{ids['key']}", None),
    ]


def test_another_organization_gets_404_everywhere(server: LiveServer, admin: httpx.Client) -> None:
    ids = seed(admin)
    other = server.client(server.new_key("globex"))
    for method, path, body in routes(ids):
        r = other.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.status_code)
        assert "seeded" not in r.text, r.text  # the automation's name never leaks
    for path in ("/v1/automations", "/v1/runs", "/v1/experiments"):
        assert other.get(path).json()["items"] == [], path
    theirs = {e["resource_id"] for e in other.get("/v1/audit").json()["items"]}
    assert not theirs & set(ids.values())  # only globex's own key creation
    assert {k["prefix"] for k in other.get("/v1/keys").json()["items"]} == {
        other.headers["Authorization"].split("_")[1]
    }
    r = other.post("/v1/automations", json={"name": "x", "tarball": ids["ref"]})
    assert r.json()["code"] == "unknown_blob"
    for method, path, _ in routes(ids):
        if method == "GET":
            assert admin.request(method, path).status_code == 200, path


def test_read_scope_cannot_write_anywhere(server: LiveServer, admin: httpx.Client) -> None:
    ids = seed(admin)
    reader = server.client(server.new_key("acme", scope="read"))
    writes = [(m, p, b) for m, p, b in routes(ids) if m != "GET"]
    writes += [
        ("POST", "/v1/automations", {"name": "n", "tarball": ids["ref"]}),
        ("POST", "/v1/keys", {"scope": "read"}),
    ]
    for method, path, body in writes:
        r = reader.request(method, path, json=body)
        assert r.status_code == 403, (method, path, r.status_code)
        assert r.json()["code"] == "forbidden"
    assert reader.post("/v1/uploads", content=targz({"x.py": ""})).status_code == 403
    writer = server.client(server.new_key("acme", scope="write"))
    for path in ("/v1/keys", "/v1/workers", "/v1/audit"):
        assert writer.get(path).status_code == 403, path
    assert writer.post(f"/v1/automations/{ids['automation']}/dispatch").status_code == 202


def test_keys_are_listed_created_once_and_revoked_at_once(
    server: LiveServer, admin: httpx.Client
) -> None:
    r = admin.post("/v1/keys", json={"scope": "write", "name": "ci"})
    assert r.status_code == 201
    created = r.json()
    assert created["key"].startswith(f"ak_{created['prefix']}_")
    listed = {k["id"]: k for k in admin.get("/v1/keys").json()["items"]}
    assert listed[created["id"]]["scope"] == "write" and listed[created["id"]]["name"] == "ci"
    assert "key" not in listed[created["id"]] and created["key"] not in admin.get("/v1/keys").text
    new = server.client(created["key"])
    assert new.get("/v1/automations").status_code == 200
    used = {k["id"]: k for k in admin.get("/v1/keys").json()["items"]}[created["id"]]
    assert used["last_used_at"] is not None
    assert admin.delete(f"/v1/keys/{created['id']}").status_code == 204
    assert new.get("/v1/automations").status_code == 401
    assert admin.post("/v1/keys", json={"scope": "root"}).status_code == 400
    assert admin.delete("/v1/keys/nope").status_code == 404


def test_audit_log_records_changes_with_before_and_after(admin: httpx.Client) -> None:
    ids = seed(admin)
    admin.patch(
        f"/v1/automations/{ids['automation']}",
        json={"weights": {"a": 7}, "secrets": {"TOKEN": "hunter22"}},
    )
    admin.post(f"/v1/automations/{ids['automation']}/promote", json={"variant": "b"})
    events = admin.get("/v1/audit", params={"resource_id": ids["automation"]}).json()["items"]
    actions = [e["action"] for e in events]
    assert actions == ["variant.promote", "automation.update", "automation.create"]
    update = events[1]
    weights = lambda s: {v["name"]: v["weight"] for v in s["variants"]}  # noqa: E731
    assert weights(update["before"]) == {"a": 1, "b": 1}
    assert weights(update["after"]) == {"a": 7, "b": 1}
    assert update["after"]["secrets"] == ["TOKEN"] and "hunter22" not in str(events)
    assert all(e["actor"].startswith("key:") for e in events)
    keys = admin.get("/v1/audit", params={"resource_type": "key"}).json()["items"]
    assert [(e["action"], e["actor"].split(":")[0]) for e in keys] == [
        ("key.create", "key"),
        ("key.create", "cli"),
    ]  # the seeded key, then the admin's
    page = admin.get("/v1/audit", params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    assert admin.get("/v1/audit", params={"since": "nonsense"}).status_code == 400


def test_rate_limit_answers_429_with_retry_after(server: LiveServer) -> None:
    services = server.services
    original = services.rate_limiter
    services.rate_limiter = RateLimiter(per_minute=60, burst=5)
    try:
        http = server.client(server.new_key("acme"))
        codes = [http.get("/v1/automations").status_code for _ in range(8)]
        assert codes[:5] == [200] * 5 and 429 in codes[5:]
        r = http.get("/v1/automations")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert r.json()["code"] == "rate_limited"
        other = server.client(server.new_key("acme"))  # limits are per key
        assert other.get("/v1/automations").status_code == 200
    finally:
        services.rate_limiter = original


def test_queued_runs_are_capped_per_organization(data_dir: Any, database_url: str) -> None:
    from automation_server.services import build_services

    settings = settings_for(data_dir, database_url)
    settings = replace(settings, guards=GuardSettings(max_queued_runs_per_org=3))
    services = build_services(settings)
    try:
        with live_server(services) as server:
            http = server.client(server.new_key("acme"))
            ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
            a = http.post("/v1/automations", json={"name": "cap", "tarball": ref}).json()
            codes = [http.post(f"/v1/automations/{a['id']}/dispatch").status_code for _ in range(4)]
            assert codes == [202, 202, 202, 429]
            r = http.post(f"/v1/automations/{a['id']}/dispatch")
            assert "3 queued runs" in r.json()["detail"] and "Retry-After" in r.headers
            other = server.client(server.new_key("globex"))  # another org is not affected
            ref2 = other.post("/v1/uploads", content=targz({"main.py": "2"})).json()["ref"]
            b = other.post("/v1/automations", json={"name": "cap", "tarball": ref2}).json()
            assert other.post(f"/v1/automations/{b['id']}/dispatch").status_code == 202
    finally:
        services.close()


def test_metrics_endpoint_speaks_prometheus(server: LiveServer, admin: httpx.Client) -> None:
    ids = seed(admin)
    admin.post(f"/v1/runs/{ids['run']}/cancel")
    with server.client() as anonymous:
        r = anonymous.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'automation_runs_dispatched_total{trigger="manual"} 1.0' in text
    assert 'automation_runs_finished_total{status="cancelled"} 1.0' in text
    assert "automation_queue_depth 0.0" in text
    assert 'automation_runs_active{status="queued"} 0.0' in text
    for name in (
        "automation_dispatch_latency_seconds_bucket",
        "automation_run_duration_seconds",
        "automation_sandbox_failures_total",
    ):
        assert name in text
