"""Disabling an automation after N consecutive failures the program caused (9.6)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from automation_server.db.models import AuditEvent
from automation_server.queue.results import RunResult
from automation_server.runs.schemas import DispatchRequest
from automation_server.statuses import RunStatus
from tests.integration.queue_support import QueueKit
from tests.support import LiveServer, targz

FAILED = RunResult(RunStatus.FAILED, 1, "exit code 1", 5)
TIMED_OUT = RunResult(RunStatus.TIMED_OUT, None, "timed out", 5)
OK = RunResult(RunStatus.SUCCEEDED, 0, None, 5)


def finish_next(kit: QueueKit, aid: str, result: RunResult) -> str:
    [run_id] = kit.dispatch(aid)
    [claimed] = kit.services.queue.claim("w", 1, 30)
    assert claimed.run_id == run_id
    kit.services.queue.finish(run_id, "w", result)
    return run_id


def lose_to_the_platform(kit: QueueKit, aid: str) -> str:
    """A run that ends failed with origin infrastructure (every platform attempt used)."""
    [run_id] = kit.dispatch(aid)
    for _ in range(kit.services.settings.worker.max_infra_attempts):
        kit.delay([run_id], -1)  # platform retries wait a moment: due now
        [claimed] = kit.services.queue.claim("w", 1, 30)
        kit.services.queue.finish(claimed.run_id, "w", RunResult.infrastructure("no sandbox"))
    assert kit.run(run_id).failure_origin == "infrastructure"
    return run_id


def state(kit: QueueKit, aid: str) -> Any:
    return kit.services.automations.get(kit.caller, aid)


def test_disabled_after_n_program_failures_not_counting_the_platforms(services: Any) -> None:
    kit = QueueKit.make(services)
    aid = kit.automation("flaky", disable_after_failures=3)
    finish_next(kit, aid, FAILED)
    lose_to_the_platform(kit, aid)  # neither counts nor resets
    finish_next(kit, aid, TIMED_OUT)
    [cancelled] = kit.dispatch(aid)
    services.queue.cancel(kit.caller.org_id, cancelled)  # neither counts nor resets
    assert state(kit, aid).enabled and state(kit, aid).consecutive_failures == 2
    last = finish_next(kit, aid, FAILED)
    after = state(kit, aid)
    assert not after.enabled and after.next_run_at is None
    assert after.disabled_reason is not None and last in after.disabled_reason
    assert "3 consecutive failed runs" in after.disabled_reason
    with services.db.read() as session:
        audit = session.scalars(
            sa.select(AuditEvent).where(
                AuditEvent.resource_id == aid, AuditEvent.action == "automation.disable"
            )
        ).all()
    assert len(audit) == 1 and audit[0].actor == "system:auto-disable"
    with pytest.raises(Exception, match="disabled"):
        services.dispatcher.dispatch(kit.caller, aid, DispatchRequest())


def test_a_success_resets_the_streak(services: Any) -> None:
    kit = QueueKit.make(services)
    aid = kit.automation("recovering", disable_after_failures=2)
    finish_next(kit, aid, FAILED)
    finish_next(kit, aid, OK)
    assert state(kit, aid).consecutive_failures == 0
    finish_next(kit, aid, FAILED)
    assert state(kit, aid).enabled
    finish_next(kit, aid, FAILED)
    assert not state(kit, aid).enabled


def test_zero_never_disables(services: Any) -> None:
    kit = QueueKit.make(services)
    aid = kit.automation("stubborn")
    for _ in range(4):
        finish_next(kit, aid, FAILED)
    assert state(kit, aid).enabled and state(kit, aid).consecutive_failures == 4


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


def test_reenabling_clears_the_reason_and_bad_values_are_refused(
    server: LiveServer, http: httpx.Client
) -> None:
    ref = http.post("/v1/uploads", content=targz({"main.py": "x"})).json()["ref"]
    for bad in (-1, 1001, 2.5):
        r = http.post(
            "/v1/automations",
            json={"name": "bad", "tarball": ref, "disable_after_failures": bad},
        )
        assert r.status_code == 400, (bad, r.text)
    created = http.post(
        "/v1/automations", json={"name": "a", "tarball": ref, "disable_after_failures": 1}
    ).json()
    assert created["disable_after_failures"] == 1 and created["disabled_reason"] is None
    services = server.services
    run_id = http.post(f"/v1/automations/{created['id']}/dispatch", json={}).json()["id"]
    [claimed] = services.queue.claim("w", 1, 30)
    services.queue.finish(claimed.run_id, "w", FAILED)
    disabled = http.get(f"/v1/automations/{created['id']}").json()
    assert disabled["enabled"] is False and run_id in disabled["disabled_reason"]
    assert (
        http.patch(
            f"/v1/automations/{created['id']}", json={"disable_after_failures": 1001}
        ).status_code
        == 400
    )
    enabled = http.patch(f"/v1/automations/{created['id']}", json={"enabled": True}).json()
    assert enabled["enabled"] is True and enabled["disabled_reason"] is None
    assert enabled["consecutive_failures"] == 0
