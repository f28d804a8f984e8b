"""The signed-in session as a dependency, and the checks every form POST makes."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import NamedDependency

from automation_server.api.deps import ServicesDep
from automation_server.api.ui.session import COOKIE, Session, open_session
from automation_server.errors import Forbidden

SessionDep = NamedDependency[Session]

READ_ONLY = (
    "This API key is read-only (scope 'read'): it can look at every page, but dispatching, "
    "promoting, cloning, editing weights, enabling or disabling and cancelling need a key "
    "with write scope. Sign out and sign in with such a key."
)


def provide_session(request: Request[Any, Any, Any], services: ServicesDep) -> Session:
    """The caller behind the session cookie; :class:`Unauthorized` leads to the sign-in page."""
    session = open_session(services.box, services.auth, request.cookies.get(COOKIE))
    services.rate_limiter.check(session.caller.key_id)  # the same per-key limit as the API
    # Kept for the error pages, which show the navigation to a signed-in user.
    request.state.ui_session = session
    return session


def check_form(session: Session, form: dict[str, str]) -> None:
    """A change needs the session's CSRF token and a key allowed to write."""
    session.check_csrf(form.get("csrf_token"))
    if not session.can_write:
        raise Forbidden(READ_ONLY)
