"""The SDK client's retries and error typing, against an httpx MockTransport."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from automation_sdk import client as client_module
from automation_sdk import errors
from automation_sdk.client import Client

RUN = {
    "id": "r1",
    "automation_id": "a1",
    "automation_revision": 1,
    "experiment_id": None,
    "variant": "default",
    "assignment": {"method": "random", "bucket": 0.5, "key": None, "weights": {"default": 1}},
    "tarball_digest": "sha256:00",
    "trigger": "manual",
    "scheduled_for": None,
    "status": "queued",
    "attempt": 1,
    "attempts": [],
    "exit_code": None,
    "error": None,
    "created_at": "2026-11-24T09:00:00Z",
    "started_at": None,
    "finished_at": None,
    "duration_ms": None,
    "metrics": {},
    "outputs": {},
    "log_bytes": 0,
    "log_truncated": False,
    "sandbox": None,
    "a_field_from_a_newer_server": {"ignored": True},
}
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(client_module, "_sleep", slept.append)
    return slept


def _client(handler: Handler, retries: int = 3) -> Client:
    return Client("http://test", "ak_x_y", retries=retries, transport=httpx.MockTransport(handler))


def _sequence(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = responses[min(len(seen), len(responses)) - 1]
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


def _limited(retry_after: str | None = "2") -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    body = {"status_code": 429, "code": "rate_limited", "detail": "slow down", "field": None}
    return httpx.Response(429, json=body, headers=headers)


def test_429_is_retried_after_the_retry_after_seconds(sleeps: list[float]) -> None:
    handler, seen = _sequence(
        _limited("2"), _limited("0"), _limited("3"), httpx.Response(200, json=RUN)
    )
    with _client(handler) as api:
        run = api.get_run("r1")
    assert run.id == "r1" and len(seen) == 4
    assert sleeps == [2.0, 0.0, 3.0]


def test_429_without_retry_after_backs_off_exponentially(sleeps: list[float]) -> None:
    handler, _ = _sequence(_limited(None), _limited(None), _limited(None), httpx.Response(200))
    with _client(handler) as api:
        api.delete_automation("a1")
    assert sleeps == [0.5, 1.0, 2.0]


def test_429_gives_up_after_the_retries_with_retry_after(sleeps: list[float]) -> None:
    handler, seen = _sequence(_limited("7"))
    with _client(handler, retries=2) as api, pytest.raises(errors.RateLimitedError) as caught:
        api.get_run("r1")
    assert len(seen) == 3
    assert caught.value.retry_after == 7.0 and caught.value.status_code == 429
    assert caught.value.detail == "slow down"


def test_connection_error_on_get_is_retried(sleeps: list[float]) -> None:
    handler, seen = _sequence(httpx.ConnectError("refused"), httpx.Response(200, json=RUN))
    with _client(handler) as api:
        assert api.get_run("r1").status == "queued"
    assert len(seen) == 2 and len(sleeps) == 1


def test_connection_error_on_create_is_not_retried(sleeps: list[float]) -> None:
    handler, seen = _sequence(httpx.ReadTimeout("slow"), httpx.Response(201, json={}))
    with _client(handler) as api, pytest.raises(errors.ServerUnreachable) as caught:
        api.create_automation(name="x", tarball="blob:sha256:00")
    assert len(seen) == 1 and sleeps == []
    assert caught.value.url == "http://test" and "timed out" in str(caught.value)
    assert isinstance(caught.value, ConnectionError)


def test_dispatch_is_retried_only_with_an_idempotency_key(sleeps: list[float]) -> None:
    handler, seen = _sequence(httpx.ConnectError("reset"), httpx.Response(202, json=RUN))
    with _client(handler) as api:
        run = api.dispatch("a1", payload={"n": 1}, idempotency_key="k-1")
    assert run.id == "r1" and len(seen) == 2
    assert all(r.headers["Idempotency-Key"] == "k-1" for r in seen)

    handler, seen = _sequence(httpx.ConnectError("reset"), httpx.Response(202, json=RUN))
    with _client(handler) as api, pytest.raises(errors.ServerUnreachable):
        api.dispatch("a1")
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.ValidationError),
        (401, errors.AuthError),
        (403, errors.AuthError),
        (404, errors.NotFoundError),
        (409, errors.ConflictError),
        (413, errors.TooLargeError),
        (422, errors.ValidationError),
        (500, errors.ServerError),
        (503, errors.ServerError),
    ],
)
def test_error_statuses_map_to_typed_exceptions(status: int, cls: type, sleeps: list) -> None:
    body = {"status_code": status, "code": "c", "detail": "d", "field": "f.g"}
    handler, _ = _sequence(httpx.Response(status, json=body))
    with _client(handler) as api, pytest.raises(cls) as caught:
        api.get_automation("a1")
    assert (caught.value.status_code, caught.value.code, caught.value.detail) == (status, "c", "d")
    assert caught.value.field == "f.g"


def test_error_without_a_json_body_still_has_a_detail(sleeps: list[float]) -> None:
    handler, _ = _sequence(httpx.Response(502, text="Bad Gateway from the proxy"))
    with _client(handler) as api, pytest.raises(errors.ServerError) as caught:
        api.get_run("r1")
    assert caught.value.code == "http_502" and "Bad Gateway" in caught.value.detail


def test_wait_polls_until_the_run_finishes(sleeps: list[float]) -> None:
    states = ["queued", "running", "running", "succeeded"]
    handler, seen = _sequence(*[httpx.Response(200, json={**RUN, "status": s}) for s in states])
    with _client(handler) as api:
        run = api.wait("r1")
    assert run.status == "succeeded" and run.finished and len(seen) == 4
    assert sleeps == sorted(sleeps)  # backing off, never faster


def test_wait_times_out_with_the_last_state(sleeps: list[float]) -> None:
    handler, _ = _sequence(httpx.Response(200, json=RUN))
    with _client(handler) as api, pytest.raises(errors.WaitTimeout) as caught:
        api.wait("r1", timeout=0)
    assert caught.value.run.status == "queued"
