"""Authentication and scopes for API handlers.

Handlers declare the scope they need with ``opt={"scope": ...}``; without it,
GET needs ``read`` and every other method ``write``.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from automation_server.api.deps import ServicesDep
from automation_server.security.accounts import Caller
from automation_server.security.keys import Scope


def required_scope(request: Request[Any, Any, Any]) -> Scope:
    declared = request.route_handler.opt.get("scope")
    if declared:
        return declared  # type: ignore[no-any-return]
    return "read" if request.method in ("GET", "HEAD") else "write"


def provide_caller(request: Request[Any, Any, Any], services: ServicesDep) -> Caller:
    """The authenticated caller, or 401/403 before the handler runs."""
    caller = services.auth.authenticate(request.headers.get("authorization"))
    services.rate_limiter.check(caller.key_id)
    caller.require(required_scope(request))
    return caller
