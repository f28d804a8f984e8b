"""Errors on dashboard pages: HTML pages instead of the API's JSON, sign-in when needed."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from automation_server import errors
from automation_server.api.errors import STATUS
from automation_server.api.ui.render import page, redirect
from automation_server.api.ui.session import COOKIE, COOKIE_PATH, Session
from automation_server.logging import get_logger

log = get_logger("ui")

TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    422: "Not accepted",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Unavailable",
}


def status_of(exc: errors.AutomationError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_page(
    status: int, message: str, request: Request[Any, Any, Any] | None = None
) -> Response[str]:
    session = getattr(request.state, "ui_session", None) if request is not None else None
    return page(
        "error.html",
        status=status,
        title=TITLES.get(status, "Error"),
        message=message,
        status_code=status,
        session=session if isinstance(session, Session) else None,
    )


def _sign_in(request: Request[Any, Any, Any], exc: errors.Unauthorized) -> Response[Any]:
    # A failed poll from the log follower must not receive the sign-in page as log text.
    if request.url.path.endswith("/log"):
        return Response(exc.detail, status_code=401, media_type="text/plain")
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = here if request.method == "GET" else "/ui/automations"
    response = redirect(f"/ui/sign-in?next={quote(target, safe='/')}")
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


def domain_error(request: Request[Any, Any, Any], exc: errors.AutomationError) -> Response[Any]:
    if isinstance(exc, errors.Unauthorized):
        return _sign_in(request, exc)
    status = status_of(exc)
    if status >= 500:
        log.warning("ui.failed", path=request.url.path, code=exc.code, detail=exc.detail)
    return error_page(status, exc.detail, request)


def validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[str]:
    return error_page(400, "The request had a value this page cannot read.", request)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[str]:
    if exc.status_code == 413:
        return error_page(413, "The form was larger than the dashboard accepts.", request)
    return error_page(exc.status_code, exc.detail, request)


def unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
    log.exception("ui.crashed", path=request.url.path, method=request.method)
    return error_page(
        500, "The server failed to show this page; the error has been logged.", request
    )


UI_EXCEPTION_HANDLERS: dict[Any, Any] = {
    errors.AutomationError: domain_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
