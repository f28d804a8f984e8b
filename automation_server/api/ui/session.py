"""The dashboard's sign-in session: an API key kept encrypted in a cookie.

The cookie holds a Fernet token (AES-CBC + HMAC, from ``services.box``) of the
key, a per-session CSRF token and the time of sign-in; the plain key never
leaves the server again. Every request decrypts it and authenticates the key
exactly as the API does, so a revoked key ends its sessions at once.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import dataclass

from automation_server.errors import Forbidden, Unauthorized
from automation_server.security.accounts import Authenticator, Caller
from automation_server.security.crypto import SecretBox, SecretKeyError
from automation_server.security.keys import scope_allows

COOKIE = "as_session"
SIGNIN_COOKIE = "as_signin"
COOKIE_PATH = "/ui"
# A dashboard tab left open for a working day stays signed in; no longer.
SESSION_TTL_S = 12 * 3600


class CsrfRejected(Forbidden):
    """This form did not come from a page of this dashboard (or its session ended)."""

    code = "csrf_rejected"


@dataclass(frozen=True)
class Session:
    caller: Caller
    csrf: str

    @property
    def can_write(self) -> bool:
        return scope_allows(self.caller.scope, "write")

    def check_csrf(self, submitted: str | None) -> None:
        if not submitted or not hmac.compare_digest(submitted, self.csrf):
            raise CsrfRejected()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def seal(box: SecretBox, api_key: str, *, now: float | None = None) -> str:
    """The cookie value for a freshly signed-in key."""
    issued = int(time.time() if now is None else now)
    return box.encrypt(json.dumps({"key": api_key, "csrf": new_token(), "iat": issued}))


def open_session(
    box: SecretBox, auth: Authenticator, cookie: str | None, *, now: float | None = None
) -> Session:
    """The session a cookie carries; :class:`Unauthorized` when missing, forged, expired or
    revoked."""
    if not cookie:
        raise Unauthorized("sign in with an API key")
    try:
        data = json.loads(box.decrypt(cookie))
        key, csrf, issued = str(data["key"]), str(data["csrf"]), int(data["iat"])
    except (SecretKeyError, ValueError, KeyError, TypeError):
        raise Unauthorized("the session cookie is not valid: sign in again") from None
    current = time.time() if now is None else now
    if not 0 <= current - issued <= SESSION_TTL_S:
        raise Unauthorized("the session has expired: sign in again")
    return Session(auth.authenticate(f"Bearer {key}"), csrf)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a dashboard path only (no open redirect)."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/automations"
