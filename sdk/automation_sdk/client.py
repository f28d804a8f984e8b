"""Synchronous HTTP client of the automation server (httpx + msgspec).

    from automation_sdk.client import Client

    with Client("http://127.0.0.1:8080", api_key) as api:
        ref = api.upload(tarball).ref
        auto = api.create_automation(name="hello", tarball=ref)
        run = api.dispatch(auto.id, payload={"ticket": 7}, wait=True)
        print(run.status, run.metrics, api.logs(run.id))

Errors are typed (:mod:`automation_sdk.errors`). Requests that are safe to
repeat are retried with exponential backoff: any request answered 429 (the
server did nothing), and on connection failures only GETs, uploads (content
addressed, so repeating one stores nothing new) and dispatches that carry an
``idempotency_key``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx
import msgspec

from automation_sdk import errors
from automation_sdk.client_operations import OperationsApi
from automation_sdk.models import (
    Automation,
    Decision,
    Page,
    Revision,
    Run,
    Upload,
)
from automation_sdk.responses import decode_as, decode_items
from automation_sdk.summary import ExperimentSummary

T = TypeVar("T")

# The server's page size limit; list helpers ask for full pages.
MAX_PAGE_SIZE = 500
# Backoff between retries: BACKOFF_BASE_S * 2**attempt, at most BACKOFF_MAX_S;
# a Retry-After header wins (but is capped too, so a client never hangs for hours).
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
# Polling of a dispatched run: start fast (most runs are short), slow down to 1 s.
POLL_FIRST_S = 0.1
POLL_MAX_S = 1.0

_sleep = time.sleep  # patched by tests


class Client(OperationsApi):
    """A client bound to one server and one API key.

    ``timeout`` is the per-request timeout in seconds; ``retries`` the number of
    extra attempts for retryable failures. ``transport`` replaces httpx's (tests).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = max(0, retries)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "User-Agent": "automation-sdk/0.1",
            },
            timeout=timeout,
            transport=transport,
        )

    # ---- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- uploads and automations -------------------------------------------------

    def upload(self, data: bytes) -> Upload:
        """Upload a ``.tar.gz``; the same bytes always give the same ref."""
        response = self._request(
            "POST",
            "/v1/uploads",
            content=data,
            headers={"Content-Type": "application/gzip"},
            idempotent=True,
        )
        return decode_as(response, Upload)

    def create_automation(self, **body: Any) -> Automation:
        """Create an automation from the create body of DESIGN section 6."""
        return decode_as(self._request("POST", "/v1/automations", json=body), Automation)

    def get_automation(self, automation_id: str) -> Automation:
        return decode_as(self._request("GET", f"/v1/automations/{automation_id}"), Automation)

    def find_automation(self, name: str) -> Automation | None:
        """The automation called ``name`` in the key's organization, or None."""
        response = self._request("GET", "/v1/automations", params={"name": name, "limit": 1})
        page = decode_as(response, Page)
        return msgspec.json.decode(page.items[0], type=Automation) if page.items else None

    def list_automations(self, *, page_size: int = 100) -> Iterator[Automation]:
        """Every automation, newest first (pages fetched as the iterator advances)."""
        return self._paginate("/v1/automations", {}, Automation, page_size)

    def update_automation(self, automation_id: str, **patch: Any) -> Automation:
        """Partial update (only the fields given change)."""
        response = self._request("PATCH", f"/v1/automations/{automation_id}", json=patch)
        return decode_as(response, Automation)

    def delete_automation(self, automation_id: str) -> None:
        self._request("DELETE", f"/v1/automations/{automation_id}")

    def revisions(self, automation_id: str) -> list[Revision]:
        """Past revisions, newest first."""
        response = self._request("GET", f"/v1/automations/{automation_id}/revisions")
        return decode_items(response, Revision)

    def rotate_webhook_secret(self, automation_id: str) -> Automation:
        """A new webhook secret, shown once in the returned automation's ``webhook_secret``."""
        response = self._request("POST", f"/v1/automations/{automation_id}/webhook-secret")
        return decode_as(response, Automation)

    # ---- runs ------------------------------------------------------------------

    def dispatch(
        self,
        automation_id: str,
        *,
        payload: dict[str, Any] | None = None,
        variant: str | None = None,
        assignment_key: str | None = None,
        idempotency_key: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> Run:
        """Queue a run (the server picks the variant unless ``variant`` forces one).

        With ``wait=True`` poll until the run has finished and return its final
        record; ``timeout`` (seconds, None = no limit) raises :class:`WaitTimeout`.
        """
        body: dict[str, Any] = {}
        if payload is not None:
            body["payload"] = payload
        if variant is not None:
            body["variant"] = variant
        if assignment_key is not None:
            body["assignment_key"] = assignment_key
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self._request(
            "POST",
            f"/v1/automations/{automation_id}/dispatch",
            json=body,
            headers=headers,
            idempotent=idempotency_key is not None,
        )
        run = decode_as(response, Run)
        return self.wait(run.id, timeout=timeout) if wait else run

    def wait(self, run_id: str, *, timeout: float | None = None) -> Run:
        """Poll ``GET /v1/runs/{id}`` until the run has finished; its final record."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = POLL_FIRST_S
        while True:
            run = self.get_run(run_id)
            if run.finished:
                return run
            if deadline is not None and time.monotonic() + delay > deadline:
                raise errors.WaitTimeout(run_id, timeout or 0.0, run)
            _sleep(delay)
            delay = min(delay * 1.5, POLL_MAX_S)

    def runs(
        self,
        *,
        automation_id: str | None = None,
        experiment_id: str | None = None,
        variant: str | None = None,
        status: str | None = None,
        trigger: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[Run]:
        """Runs matching every filter given, newest first, across pages.

        ``since`` is inclusive and ``until`` exclusive on ``created_at``;
        datetimes without a time zone are taken as UTC.
        """
        params = {
            "automation_id": automation_id,
            "experiment_id": experiment_id,
            "variant": variant,
            "status": status,
            "trigger": trigger,
            "since": _time_param(since),
            "until": _time_param(until),
        }
        return self._paginate("/v1/runs", params, Run, page_size)

    def get_run(self, run_id: str) -> Run:
        return decode_as(self._request("GET", f"/v1/runs/{run_id}"), Run)

    def logs(self, run_id: str) -> str:
        """The run's captured stdout and stderr so far (head and tail past the cap)."""
        return self._request("GET", f"/v1/runs/{run_id}/logs").text

    def environment_lock(self, digest: str) -> str:
        """The lock of an environment: ``name==version --hash=...`` lines, then the Python."""
        return self._request("GET", f"/v1/environments/{digest}").text

    def follow_logs(self, run_id: str) -> Iterator[str]:
        """Log text as it is written, chunk by chunk, until the run ends."""
        url = f"/v1/runs/{run_id}/logs"
        # A quiet run sends nothing for a while: no read timeout on the stream.
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        try:
            with self._http.stream(
                "GET", url, params={"follow": "true"}, timeout=timeout
            ) as response:
                if response.is_error:
                    response.read()
                    raise _api_error(response)
                yield from (chunk for chunk in response.iter_text() if chunk)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def cancel(self, run_id: str) -> Run:
        """Cancel a queued or running run (ConflictError once it has finished)."""
        return decode_as(self._request("POST", f"/v1/runs/{run_id}/cancel"), Run)

    # ---- experiments and champion/challenger -----------------------------------

    def experiments(self) -> list[dict[str, Any]]:
        """The organization's experiments (as the server describes them)."""
        data = self._json("GET", "/v1/experiments")
        items = data.get("items", []) if isinstance(data, dict) else data
        return [dict(item) for item in items]

    def experiment(self, experiment_id: str, **params: Any) -> dict[str, Any]:
        """The per-variant summary of DESIGN section 7.

        ``params`` become query parameters: ``by="revision"``, ``control="name"``,
        ``include_forced=True``.
        """
        query = {k: _query_value(v) for k, v in params.items() if v is not None}
        data = self._json("GET", f"/v1/experiments/{experiment_id}", params=query)
        return dict(data)

    def experiment_summary(self, experiment_id: str, **params: Any) -> ExperimentSummary:
        """:meth:`experiment` decoded into typed records (what the CLI renders)."""
        query = {k: _query_value(v) for k, v in params.items() if v is not None}
        response = self._request("GET", f"/v1/experiments/{experiment_id}", params=query)
        return decode_as(response, ExperimentSummary)

    def timeseries(self, experiment_id: str, metric: str, bucket: str = "1h") -> dict[str, Any]:
        """Per-variant series of ``metric`` in buckets of 1m, 5m, 15m, 1h, 6h or 1d."""
        params = {"metric": metric, "bucket": bucket}
        data = self._json("GET", f"/v1/experiments/{experiment_id}/timeseries", params=params)
        return dict(data)

    def promote(self, automation_id: str, variant: str, reason: str) -> Automation:
        """Make ``variant`` the champion with all the weight (a new revision)."""
        body = {"variant": variant, "reason": reason}
        response = self._request("POST", f"/v1/automations/{automation_id}/promote", json=body)
        return decode_as(response, Automation)

    def clone_variant(
        self,
        automation_id: str,
        name: str,
        new_name: str,
        weight: int = 0,
        overrides: dict[str, Any] | None = None,
    ) -> Automation:
        """A new variant ``new_name`` copied from ``name``; ``overrides`` replace fields whole."""
        body: dict[str, Any] = {"name": new_name, "weight": weight}
        if overrides:
            body["overrides"] = overrides
        response = self._request(
            "POST", f"/v1/automations/{automation_id}/variants/{name}/clone", json=body
        )
        return decode_as(response, Automation)

    def decisions(self, automation_id: str) -> list[Decision]:
        """Promotions and rollbacks, newest first."""
        response = self._request("GET", f"/v1/automations/{automation_id}/decisions")
        return decode_items(response, Decision)

    # ---- plumbing ----------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return msgspec.json.decode(self._request(method, path, **kwargs).content)

    def _paginate(
        self, path: str, filters: dict[str, str | None], kind: type[T], page_size: int
    ) -> Iterator[T]:
        params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        params["limit"] = max(1, min(page_size, MAX_PAGE_SIZE))
        while True:
            page = decode_as(self._request("GET", path, params=params), Page)
            for raw in page.items:
                yield msgspec.json.decode(raw, type=kind)
            if not page.next_cursor:
                return
            params["cursor"] = page.next_cursor

    def _request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries; return a 2xx response or raise a typed error."""
        repeatable = method in ("GET", "HEAD") if idempotent is None else idempotent
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if not (repeatable and attempt < self.retries):
                    raise self._unreachable(exc) from exc
                _sleep(_backoff(attempt))
                attempt += 1
                continue
            if response.status_code == 429 and attempt < self.retries:
                wait = _retry_after(response)
                _sleep(_backoff(attempt) if wait is None else wait)
                attempt += 1
                continue
            if response.is_error:
                raise _api_error(response)
            return response

    def _unreachable(self, exc: httpx.TransportError) -> errors.ServerUnreachable:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            reason = f"timed out ({reason})"
        return errors.ServerUnreachable(self.base_url, reason)


def _api_error(response: httpx.Response) -> errors.ApiError:
    """The typed exception for an error response (any body shape tolerated)."""
    status = response.status_code
    body: Any = None
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        body = None
    shaped = body if isinstance(body, dict) else {}
    code = str(shaped.get("code") or f"http_{status}")
    detail = str(shaped.get("detail") or response.text.strip() or response.reason_phrase)
    field = shaped.get("field")
    field = str(field) if field is not None else None
    cls = errors.error_class(status)
    if cls is errors.RateLimitedError:
        return errors.RateLimitedError(
            status, code, detail, field, body=body, retry_after=_retry_after(response)
        )
    return cls(status, code, detail, field, body=body)


def _backoff(attempt: int) -> float:
    return float(min(BACKOFF_BASE_S * 2**attempt, BACKOFF_MAX_S))


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), BACKOFF_MAX_S)


def _time_param(value: str | datetime | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
