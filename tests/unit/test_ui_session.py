"""The dashboard session cookie: encrypted, authenticated, expiring, Secure over https."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.fernet import Fernet
from litestar import Response

from automation_server.api.ui.auth_routes import set_cookie
from automation_server.api.ui.session import (
    SESSION_TTL_S,
    CsrfRejected,
    open_session,
    safe_next,
    seal,
)
from automation_server.errors import Unauthorized
from automation_server.security.accounts import Caller
from automation_server.security.crypto import SecretBox

KEY = "ak_abcd1234_" + "s" * 40


class FakeAuth:
    """Accepts exactly KEY, as the real Authenticator would a live key."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def authenticate(self, header: str) -> Caller:
        self.seen.append(header)
        if header != f"Bearer {KEY}":
            raise Unauthorized("invalid or revoked API key")
        return Caller("org-1", "key-1", "abcd1234", "write")


def box() -> SecretBox:
    return SecretBox(Fernet.generate_key().decode())


def test_cookie_hides_the_key_and_opens_to_the_same_caller() -> None:
    b, auth = box(), FakeAuth()
    cookie = seal(b, KEY)
    assert KEY not in cookie and "abcd1234" not in cookie
    session = open_session(b, auth, cookie)  # type: ignore[arg-type]
    assert session.caller.org_id == "org-1" and auth.seen == [f"Bearer {KEY}"]
    assert len(session.csrf) >= 32
    assert seal(b, KEY) != cookie  # a fresh token per sign-in


def test_forged_tampered_foreign_and_expired_cookies_are_refused() -> None:
    b, auth = box(), FakeAuth()
    cookie = seal(b, KEY, now=1_000_000)
    tampered = cookie[:-6] + ("A" if cookie[-6] != "A" else "B") + cookie[-5:]
    for bad in (None, "", "not-a-token", tampered, seal(box(), KEY)):
        with pytest.raises(Unauthorized):
            open_session(b, auth, bad, now=1_000_010)  # type: ignore[arg-type]
    with pytest.raises(Unauthorized, match="expired"):
        open_session(b, auth, cookie, now=1_000_000 + SESSION_TTL_S + 1)  # type: ignore[arg-type]
    assert open_session(b, auth, cookie, now=1_000_000 + SESSION_TTL_S - 1)  # type: ignore[arg-type]


def test_a_revoked_key_ends_the_session() -> None:
    b = box()
    cookie = seal(b, "ak_abcd1234_revokedsecret")
    with pytest.raises(Unauthorized):
        open_session(b, FakeAuth(), cookie, now=time.time())  # type: ignore[arg-type]


def test_csrf_token_must_match() -> None:
    session = open_session(box_ := box(), FakeAuth(), seal(box_, KEY))  # type: ignore[arg-type]
    session.check_csrf(session.csrf)
    for wrong in (None, "", session.csrf[:-1], session.csrf + "x"):
        with pytest.raises(CsrfRejected):
            session.check_csrf(wrong)


@pytest.mark.parametrize(
    ("value", "target"),
    [
        ("/ui/runs?status=failed", "/ui/runs?status=failed"),
        ("https://evil.example/ui/", "/ui/automations"),
        ("//evil.example/ui/", "/ui/automations"),
        ("/ui/\\evil", "/ui/automations"),
        ("/v1/keys", "/ui/automations"),
        (None, "/ui/automations"),
    ],
)
def test_sign_in_only_returns_to_dashboard_pages(value: str | None, target: str) -> None:
    assert safe_next(value) == target


@pytest.mark.parametrize(("scheme", "secure"), [("https", True), ("http", False)])
def test_cookie_flags(scheme: str, secure: bool) -> None:
    response: Response[Any] = Response("x")
    request: Any = SimpleNamespace(url=SimpleNamespace(scheme=scheme))
    set_cookie(response, request, "as_session", "value", 60)
    (cookie,) = response.cookies
    assert cookie.httponly and cookie.samesite == "strict" and cookie.path == "/ui"
    assert cookie.secure is secure and cookie.max_age == 60
