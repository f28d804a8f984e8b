"""Worker processes as the queue knows them: registration, liveness, the operator's list."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from automation_server.db.engine import Database
from automation_server.db.models import Worker
from automation_server.queue.clock import DbClock


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    concurrency: int
    running: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    alive: bool


class WorkerRegistry:
    def __init__(self, db: Database, clock: DbClock) -> None:
        self._db = db
        self._clock = clock

    def register(self, worker_id: str, concurrency: int) -> None:
        with self._db.write() as session:
            now = self._clock.read(session)
            session.add(
                Worker(
                    id=worker_id,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    concurrency=concurrency,
                    running=0,
                    started_at=now,
                    heartbeat_at=now,
                    stopped_at=None,
                )
            )

    def beat(self, worker_id: str, running: int) -> None:
        with self._db.write() as session:
            session.execute(
                update(Worker)
                .where(Worker.id == worker_id)
                .values(heartbeat_at=self._clock.now(), running=running)
            )

    def stopped(self, worker_id: str) -> None:
        with self._db.write() as session:
            session.execute(
                update(Worker)
                .where(Worker.id == worker_id)
                .values(stopped_at=self._clock.now(), running=0)
            )

    def recent(self, stale_after_s: float) -> list[WorkerInfo]:
        """Workers seen in the last day, newest first; ``alive`` means a recent heartbeat."""
        with self._db.read() as session:
            now = self._clock.read(session)
            rows = session.scalars(
                select(Worker)
                .where(Worker.heartbeat_at >= now - timedelta(days=1))
                .order_by(Worker.started_at.desc())
                .limit(500)
            ).all()
        stale = timedelta(seconds=stale_after_s)
        return [
            WorkerInfo(
                id=w.id,
                host=w.host,
                pid=w.pid,
                concurrency=w.concurrency,
                running=w.running,
                started_at=w.started_at,
                heartbeat_at=w.heartbeat_at,
                stopped_at=w.stopped_at,
                alive=w.stopped_at is None and now - w.heartbeat_at < stale,
            )
            for w in rows
        ]
