"""Run history: filters, keyset pagination under concurrent inserts, cancel of queued runs."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.support import LiveServer, targz


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


def automation(http: httpx.Client, name: str, **extra: object) -> str:
    ref = http.post("/v1/uploads", content=targz({"main.py": name})).json()["ref"]
    r = http.post("/v1/automations", json={"name": name, "tarball": ref, **extra})
    return str(r.json()["id"])


def test_filters(http: httpx.Client) -> None:
    a, b = automation(http, "a"), automation(http, "b")
    ra = [http.post(f"/v1/automations/{a}/dispatch").json()["id"] for _ in range(3)]
    rb = [http.post(f"/v1/automations/{b}/dispatch").json()["id"] for _ in range(2)]
    http.post(f"/v1/runs/{ra[0]}/cancel")

    def ids(**params: str) -> list[str]:
        return [r["id"] for r in http.get("/v1/runs", params=params).json()["items"]]

    assert ids(automation_id=a) == list(reversed(ra))
    assert ids(automation_id=b) == list(reversed(rb))
    assert ids(status="cancelled") == [ra[0]]
    assert set(ids(status="queued")) == set(ra[1:] + rb)
    assert ids(trigger="cron") == []
    assert len(ids(trigger="manual")) == 5
    assert ids(variant="default", automation_id=b) == list(reversed(rb))
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert ids(since=future) == [] and len(ids(since=past)) == 5
    assert ids(until=past) == [] and len(ids(until=future)) == 5
    first = http.get(f"/v1/runs/{ra[1]}").json()["created_at"]
    assert ra[1] in ids(since=first) and ra[1] not in ids(until=first)


@pytest.mark.parametrize(
    "params",
    [
        {"status": "exploded"},
        {"trigger": "sometimes"},
        {"since": "yesterday"},
        {"until": "2026-01-01T00:00:00"},
        {"limit": 0},
        {"limit": 501},
        {"cursor": "!!"},
    ],
)
def test_bad_filters_are_400(http: httpx.Client, params: dict[str, object]) -> None:
    r = http.get("/v1/runs", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["status_code"] == 400


def test_pages_stay_correct_while_runs_are_inserted(server: LiveServer, http: httpx.Client) -> None:
    a = automation(http, "pager")
    before = [http.post(f"/v1/automations/{a}/dispatch").json()["id"] for _ in range(30)]
    stop = threading.Event()
    other = server.client(http.headers["Authorization"].split()[1])

    def insert() -> None:
        while not stop.is_set():
            other.post(f"/v1/automations/{a}/dispatch")

    writer = threading.Thread(target=insert)
    writer.start()
    try:
        known = set(before)
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, object] = {"automation_id": a, "limit": 7}
            if cursor:
                params["cursor"] = cursor
            page = http.get("/v1/runs", params=params).json()
            # Runs inserted meanwhile are newer than the first page: leave them out.
            seen.extend(r["id"] for r in page["items"] if r["id"] in known)
            cursor = page["next_cursor"]
            if not cursor:
                break
    finally:
        stop.set()
        writer.join()
    assert seen == list(reversed(before))  # no run skipped, none repeated


def test_cancel_queued_then_finished_is_409(http: httpx.Client) -> None:
    a = automation(http, "c")
    run = http.post(f"/v1/automations/{a}/dispatch").json()
    r = http.post(f"/v1/runs/{run['id']}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    again = http.post(f"/v1/runs/{run['id']}/cancel")
    assert (again.status_code, again.json()["code"]) == (409, "run_finished")
    assert http.post("/v1/runs/nope/cancel").status_code == 404


def test_queued_run_has_an_empty_log(http: httpx.Client) -> None:
    a = automation(http, "l")
    run = http.post(f"/v1/automations/{a}/dispatch").json()
    r = http.get(f"/v1/runs/{run['id']}/logs")
    assert r.status_code == 200 and r.text == ""
    assert r.headers["content-type"].startswith("text/plain")


def test_deleting_an_automation_keeps_its_runs(http: httpx.Client) -> None:
    a = automation(http, "d")
    run = http.post(f"/v1/automations/{a}/dispatch").json()
    assert http.delete(f"/v1/automations/{a}").status_code == 204
    kept = http.get(f"/v1/runs/{run['id']}").json()
    assert kept["status"] == "cancelled" and kept["error"] == "automation deleted"
    assert [r["id"] for r in http.get("/v1/runs", params={"automation_id": a}).json()["items"]] == [
        run["id"]
    ]
