"""``GET /v1/workers``: worker processes and their heartbeats (admin scope)."""

from __future__ import annotations

from litestar import get
from msgspec import Struct

from automation_server.api.deps import CallerDep, ServicesDep
from automation_server.ids import to_rfc3339


class WorkerOut(Struct):
    id: str
    host: str
    pid: int
    concurrency: int
    running: int
    started_at: str
    heartbeat_at: str
    stopped_at: str | None
    alive: bool


class WorkerPage(Struct):
    items: list[WorkerOut]


@get("/workers", sync_to_thread=True, opt={"scope": "admin"}, tags=["operations"])
def list_workers(services: ServicesDep, caller: CallerDep) -> WorkerPage:
    """Workers seen in the last day, newest first; `alive` means a recent heartbeat."""
    rows = services.workers.recent(stale_after_s=services.settings.worker.lease_s)
    return WorkerPage(
        items=[
            WorkerOut(
                id=w.id,
                host=w.host,
                pid=w.pid,
                concurrency=w.concurrency,
                running=w.running,
                started_at=to_rfc3339(w.started_at) or "",
                heartbeat_at=to_rfc3339(w.heartbeat_at) or "",
                stopped_at=to_rfc3339(w.stopped_at),
                alive=w.alive,
            )
            for w in rows
        ]
    )
