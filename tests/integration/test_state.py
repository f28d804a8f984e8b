"""State carried between runs (9.7): stored with a success, read at the next claim."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from automation_server.queue.results import RunResult
from automation_server.statuses import RunStatus
from tests.integration.queue_support import QueueKit
from tests.support import LiveServer, targz


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


def automation(http: httpx.Client, name: str = "stateful") -> str:
    ref = http.post("/v1/uploads", content=targz({"main.py": "print(1)"})).json()["ref"]
    r = http.post("/v1/automations", json={"name": name, "tarball": ref})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_get_and_put_the_state(server: LiveServer, http: httpx.Client) -> None:
    aid = automation(http)
    first = http.get(f"/v1/automations/{aid}/state").json()
    assert first == {"state": {}, "version": 0, "updated_at": None, "updated_by_run": None}
    put = http.put(f"/v1/automations/{aid}/state", json={"state": {"last_ticket": 41}})
    assert put.status_code == 200, put.text
    assert put.json()["state"] == {"last_ticket": 41} and put.json()["version"] == 1
    raw = http.put(f"/v1/automations/{aid}/state", json={"cursor": "abc"})
    assert raw.json()["state"] == {"cursor": "abc"} and raw.json()["version"] == 2
    assert http.get(f"/v1/automations/{aid}/state").json()["updated_at"] is not None


def test_bad_states_are_refused_and_change_nothing(server: LiveServer, http: httpx.Client) -> None:
    aid = automation(http)
    http.put(f"/v1/automations/{aid}/state", json={"keep": 1})
    for body in ([1, 2], "text", 3, {"state": [1]}):
        r = http.put(f"/v1/automations/{aid}/state", json=body)
        assert r.status_code == 422 and r.json()["code"] == "invalid_state", (body, r.text)
    limit = server.services.settings.uploads.max_state_bytes
    big = http.put(f"/v1/automations/{aid}/state", json={"blob": "x" * limit})
    assert big.status_code == 422 and big.json()["code"] == "state_too_large"
    assert "AUTOMATION_MAX_STATE_BYTES" in big.json()["detail"]
    broken = http.put(
        f"/v1/automations/{aid}/state",
        content=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code == 400
    assert http.get(f"/v1/automations/{aid}/state").json()["state"] == {"keep": 1}
    assert http.get("/v1/automations/nope/state").status_code == 404
    other = server.client(server.new_key("other"))
    assert other.get(f"/v1/automations/{aid}/state").status_code == 404
    assert other.put(f"/v1/automations/{aid}/state", json={}).status_code == 404
    reader = server.client(server.new_key("acme", scope="read"))
    assert reader.get(f"/v1/automations/{aid}/state").status_code == 200
    assert reader.put(f"/v1/automations/{aid}/state", json={}).status_code == 403


def succeeded(state: dict[str, Any] | None) -> RunResult:
    return RunResult(RunStatus.SUCCEEDED, 0, None, 5, state=state)


def test_a_success_stores_the_state_and_the_next_claim_reads_it(services: Any) -> None:
    kit = QueueKit.make(services)
    aid = kit.automation("carry", max_running=2)
    queue = services.queue
    [first] = kit.dispatch(aid)
    [claimed] = queue.claim("w", 1, 30)
    assert claimed.state == {}
    queue.finish(first, "w", succeeded({"seen": 1}))
    stored = services.states.get(kit.caller, aid)
    assert stored.state == {"seen": 1} and stored.version == 1 and stored.updated_by_run == first
    # A run that does not succeed changes nothing, whatever it reported.
    [second] = kit.dispatch(aid)
    [claimed] = queue.claim("w", 1, 30)
    assert claimed.state == {"seen": 1}
    queue.finish(second, "w", RunResult(RunStatus.FAILED, 1, "boom", 5, state={"seen": 99}))
    assert services.states.get(kit.caller, aid).state == {"seen": 1}
    # A success that reports no state keeps it too.
    [third] = kit.dispatch(aid)
    queue.claim("w", 1, 30)
    queue.finish(third, "w", succeeded(None))
    assert services.states.get(kit.caller, aid).version == 1


def test_two_concurrent_runs_the_later_success_wins_whole(services: Any) -> None:
    kit = QueueKit.make(services)
    aid = kit.automation("race", max_running=2)
    services.states.put(kit.caller, aid, {"n": 0})
    a, b = kit.dispatch(aid, 2)
    claimed = services.queue.claim("w", 2, 30)
    assert [c.state for c in claimed] == [{"n": 0}, {"n": 0}]
    services.queue.finish(b, "w", succeeded({"n": 1, "by": "b", "items": list(range(50))}))
    services.queue.finish(a, "w", succeeded({"n": 1, "by": "a"}))
    final = services.states.get(kit.caller, aid)
    assert final.state == {"n": 1, "by": "a"} and final.version == 3
    assert final.updated_by_run == a
