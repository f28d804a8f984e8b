"""Signing in with an API key and signing out."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery

from automation_server.api.deps import ServicesDep
from automation_server.api.ui.render import page, redirect
from automation_server.api.ui.session import (
    COOKIE,
    COOKIE_PATH,
    SESSION_TTL_S,
    SIGNIN_COOKIE,
    new_token,
    open_session,
    safe_next,
    seal,
)
from automation_server.errors import Unauthorized

FormBody = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
SIGNIN_TTL_S = 3600


def is_https(request: Request[Any, Any, Any]) -> bool:
    return request.url.scheme == "https"


def set_cookie(
    response: Response[Any], request: Request[Any, Any, Any], name: str, value: str, max_age: int
) -> None:
    """HttpOnly, SameSite=Strict, only under /ui, Secure whenever the page came over https."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def sign_in_form(
    request: Request[Any, Any, Any], *, target: str, error: str | None = None, status: int = 200
) -> Response[str]:
    """The form, with a fresh token in a cookie and a hidden field (login CSRF)."""
    token = new_token()
    response = page(
        "sign_in.html", status=status, next_path=target, signin_token=token, error=error
    )
    set_cookie(response, request, SIGNIN_COOKIE, token, SIGNIN_TTL_S)
    return response


@get("/", sync_to_thread=False)
def index() -> Response[Any]:
    return redirect("/ui/automations")


@get("/sign-in", sync_to_thread=True)
def sign_in_page(
    request: Request[Any, Any, Any],
    services: ServicesDep,
    next: FromQuery[str | None] = None,
) -> Response[Any]:
    target = safe_next(next)
    try:
        open_session(services.box, services.auth, request.cookies.get(COOKIE))
    except Unauthorized:
        return sign_in_form(request, target=target)
    return redirect(target)


@post("/sign-in", sync_to_thread=True)
def sign_in(
    request: Request[Any, Any, Any], services: ServicesDep, data: FormBody
) -> Response[Any]:
    target = safe_next(data.get("next"))
    expected = request.cookies.get(SIGNIN_COOKIE, "")
    submitted = data.get("signin_token", "")
    if not expected or not hmac.compare_digest(expected, submitted):
        return sign_in_form(
            request,
            target=target,
            status=403,
            error="The sign-in form had expired, or this browser blocks cookies: try again.",
        )
    api_key = data.get("api_key", "").strip()
    try:
        services.auth.authenticate(f"Bearer {api_key}")
    except Unauthorized:
        return sign_in_form(
            request,
            target=target,
            status=401,
            error="That key was not accepted: it is malformed, unknown or revoked.",
        )
    response = redirect(target)
    set_cookie(response, request, COOKIE, seal(services.box, api_key), SESSION_TTL_S)
    response.delete_cookie(SIGNIN_COOKIE, path=COOKIE_PATH)
    return response


@post("/sign-out", sync_to_thread=True)
def sign_out(
    request: Request[Any, Any, Any], services: ServicesDep, data: FormBody
) -> Response[Any]:
    try:
        session = open_session(services.box, services.auth, request.cookies.get(COOKIE))
    except Unauthorized:
        session = None  # already signed out: clearing the cookie again is harmless
    if session is not None:
        session.check_csrf(data.get("csrf_token"))
    response = redirect("/ui/sign-in")
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response
