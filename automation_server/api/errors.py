"""One error shape for every response: ``{status_code, code, detail, field}``.

Domain exceptions map to statuses in one table; Litestar's own exceptions
(validation, not found, body too large) are reshaped the same way, and anything
unexpected becomes a 500 in the same shape with nothing internal in it.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError

from automation_server import errors
from automation_server.logging import get_logger

log = get_logger("api")

STATUS: dict[type[errors.AutomationError], int] = {
    errors.BadRequest: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.Invalid: 422,
    errors.RateLimited: 429,
    errors.Unavailable: 503,
}

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}

_BACKTICK = re.compile(r"`([^`]+)`")


def error_body(status: int, code: str, detail: str, field: str | None = None) -> dict[str, Any]:
    return {"status_code": status, "code": code, "detail": detail, "field": field}


def _status_of(exc: errors.AutomationError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def domain_error(request: Request[Any, Any, Any], exc: errors.AutomationError) -> Response[Any]:
    status = _status_of(exc)
    headers = {}
    if isinstance(exc, errors.RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    if status >= 500:
        log.warning("request.failed", path=request.url.path, code=exc.code, detail=exc.detail)
    return Response(
        error_body(status, exc.code, exc.detail, exc.field), status_code=status, headers=headers
    )


def validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """msgspec's messages, with the JSON path of the field that failed."""
    extra = exc.extra if isinstance(exc.extra, list) and exc.extra else []
    first: dict[str, Any] = extra[0] if extra and isinstance(extra[0], dict) else {}
    message = str(first.get("message") or exc.detail)
    key = first.get("key")
    if key in (None, "data", "body"):
        named = _BACKTICK.search(message)
        key = named.group(1) if named and "field" in message else None
    detail = f"{key}: {message}" if key else message
    return Response(error_body(400, "invalid_request", detail, key), status_code=400)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    detail = exc.detail
    if status == 400 and ("JSON" in detail or "truncated" in detail):
        return Response(
            error_body(400, "malformed_json", f"body is not valid JSON: {detail}"), status_code=400
        )
    if status == 413:
        detail = "request body is larger than this endpoint accepts"
    code = HTTP_CODES.get(status, "error")
    return Response(error_body(status, code, detail), status_code=status, headers=exc.headers or {})


def database_error(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[Any]:
    """A lost or refused database connection is a 503 the client may retry, not a 500;
    a value the database cannot store is the client's 400."""
    if isinstance(exc, DataError):
        return unstorable_input(request, exc)
    if not exc.connection_invalidated and not isinstance(exc, OperationalError | InterfaceError):
        return unexpected_error(request, exc)
    log.warning(
        "request.database_unavailable",
        path=request.url.path,
        error=type(exc.orig).__name__ if exc.orig else type(exc).__name__,
    )
    return Response(
        error_body(503, "unavailable", "the database is unreachable; retry shortly"),
        status_code=503,
        headers={"Retry-After": "2"},
    )


def unstorable_input(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Input the database cannot store (NUL characters, unpaired surrogates, huge numbers)."""
    log.info("request.unstorable_input", path=request.url.path, error=type(exc).__name__)
    return Response(
        error_body(
            400,
            "invalid_data",
            "the request contains a value that cannot be "
            "stored (a NUL character, invalid Unicode or an out-of-range "
            "number)",
        ),
        status_code=400,
    )


def unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("request.crashed", path=request.url.path, method=request.method)
    return Response(
        error_body(
            500, "internal_error", "the server failed to handle this request; it has been logged"
        ),
        status_code=500,
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    errors.AutomationError: domain_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    DBAPIError: database_error,
    UnicodeEncodeError: unstorable_input,
    Exception: unexpected_error,
}
