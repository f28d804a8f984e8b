"""``GET /v1/workers``: worker processes and their heartbeats (admin scope)."""

from __future__ import annotations

from datetime import timedelta

from litestar import get
from msgspec import Struct
from sqlalchemy import select

from automation_server.api.deps import CallerDep, ServicesDep
from automation_server.db.models import Worker
from automation_server.ids import to_rfc3339, utcnow


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
    now = utcnow()
    stale = timedelta(seconds=services.settings.worker.lease_s)
    with services.db.read() as session:
        rows = session.scalars(
            select(Worker)
            .where(Worker.heartbeat_at >= now - timedelta(days=1))
            .order_by(Worker.started_at.desc())
            .limit(500)
        )
        items = [
            WorkerOut(
                id=w.id,
                host=w.host,
                pid=w.pid,
                concurrency=w.concurrency,
                running=w.running,
                started_at=to_rfc3339(w.started_at) or "",
                heartbeat_at=to_rfc3339(w.heartbeat_at) or "",
                stopped_at=to_rfc3339(w.stopped_at),
                alive=w.stopped_at is None and now - w.heartbeat_at < stale,
            )
            for w in rows
        ]
    return WorkerPage(items=items)
