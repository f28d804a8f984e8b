"""Exceptions of the SDK client: one per kind of answer, carrying the server's error.

Every API error response has one shape, ``{status_code, code, detail, field}``;
:class:`ApiError` and its subclasses carry those four values, so callers can
switch on the class (or on ``code``) and show ``field`` and ``detail`` to a user.
"""

from __future__ import annotations

from typing import Any


class SdkError(Exception):
    """Base of every exception the SDK raises on purpose."""


class ApiError(SdkError):
    """The server answered with an error (``status_code``, ``code``, ``detail``, ``field``)."""

    def __init__(
        self,
        status_code: int,
        code: str,
        detail: str,
        field: str | None = None,
        *,
        body: Any = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.detail = detail
        self.field = field
        # The decoded error body as the server sent it (for --json output).
        self.body = body
        super().__init__(f"{status_code} {code}: {detail}")


class ValidationError(ApiError):
    """400 (schema) or 422 (a rule beyond the schema); ``field`` names what broke it."""


class AuthError(ApiError):
    """401 (missing or invalid key) or 403 (the key's scope does not allow the action)."""


class NotFoundError(ApiError):
    """404: missing, or another organization's."""


class ConflictError(ApiError):
    """409: duplicate name, disabled automation, finished run, ..."""


class TooLargeError(ApiError):
    """413: the request body is over the server's limit."""


class RateLimitedError(ApiError):
    """429 after the client's retries ran out; ``retry_after`` is in seconds (or None)."""

    def __init__(
        self,
        status_code: int,
        code: str,
        detail: str,
        field: str | None = None,
        *,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status_code, code, detail, field, body=body)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx: the server failed (or is not ready)."""


class ServerUnreachable(SdkError, ConnectionError):
    """No HTTP answer at all: refused, reset, DNS, or timed out; ``url`` is what was tried."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach {url}: {reason}")


class WaitTimeout(SdkError, TimeoutError):
    """``dispatch(wait=True, timeout=...)`` gave up; ``run`` is the last state seen."""

    def __init__(self, run_id: str, timeout: float, run: Any = None) -> None:
        self.run_id = run_id
        self.run = run
        super().__init__(f"run {run_id} did not finish within {timeout:g} s")


class PackError(SdkError, ValueError):
    """A directory cannot be packed (a link leaving it, a device file, ...)."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: ValidationError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    413: TooLargeError,
    422: ValidationError,
    429: RateLimitedError,
}


def error_class(status_code: int) -> type[ApiError]:
    """The exception class for an HTTP error status."""
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, ApiError)
