"""Liveness and readiness (no authentication)."""

from __future__ import annotations

from litestar import get
from litestar.response import Response

from automation_server.api.deps import ServicesDep
from automation_server.errors import Unavailable


@get("/health", sync_to_thread=False, tags=["health"])
def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/ready", sync_to_thread=True, tags=["health"])
def ready(services: ServicesDep) -> Response[dict[str, object]]:
    """The database and the object store are reachable (503 otherwise)."""
    checks: dict[str, str] = {}
    for name, ping in (("database", services.db.ping), ("object_store", services.store.ping)):
        try:
            ping()
            checks[name] = "ok"
        except Unavailable as exc:
            checks[name] = exc.detail
    ok = all(v == "ok" for v in checks.values())
    return Response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )
