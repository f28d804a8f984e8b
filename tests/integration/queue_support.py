"""Helpers for queue tests: automations and runs made through the services, no HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from automation_server.automations.schemas import AutomationCreate, ConcurrencySpec, RetrySpec
from automation_server.db.models import Run
from automation_server.runs.schemas import DispatchRequest
from automation_server.security.accounts import Caller, create_key, ensure_organization
from automation_server.statuses import ACTIVE, RunStatus
from tests.support import targz


@dataclass
class QueueKit:
    services: Any
    caller: Caller
    ref: str

    @classmethod
    def make(cls, services: Any, org: str = "queue-tests") -> QueueKit:
        org_id = ensure_organization(services.db, org)
        key = create_key(services.db, org_id, "admin")
        caller = Caller(org_id=org_id, key_id=key.key_id, key_prefix=key.prefix, scope="admin")
        ref = services.blobs.upload(org_id, targz({"main.py": "print(1)"})).ref
        return cls(services, caller, ref)

    def automation(
        self, name: str, *, max_running: int = 1, max_attempts: int = 1, **extra: Any
    ) -> str:
        body = AutomationCreate(
            name=name,
            tarball=self.ref,
            concurrency=ConcurrencySpec(max_running=max_running, on_overlap="queue"),
            retry=RetrySpec(max_attempts=max_attempts, backoff_s=0),
            **extra,
        )
        return str(self.services.automations.create(self.caller, body).id)

    def dispatch(self, automation_id: str, n: int = 1) -> list[str]:
        return [
            self.services.dispatcher.dispatch(self.caller, automation_id, DispatchRequest()).id
            for _ in range(n)
        ]

    def set_runs(self, run_ids: list[str], **values: Any) -> None:
        with self.services.db.write() as session:
            session.execute(sa.update(Run).where(Run.id.in_(run_ids)).values(**values))

    def mark_running(self, run_ids: list[str], owner: str = "elsewhere") -> None:
        with self.services.db.write() as session:
            now = self.services.queue.now(session)
        self.set_runs(
            run_ids,
            status=RunStatus.RUNNING,
            lease_owner=owner,
            lease_expires_at=now + timedelta(hours=1),
            started_at=now,
        )

    def delay(self, run_ids: list[str], seconds: float) -> None:
        with self.services.db.write() as session:
            now = self.services.queue.now(session)
        self.set_runs(run_ids, available_at=now + timedelta(seconds=seconds))

    def clear(self) -> None:
        """Every active run cancelled: the next scenario starts from an empty queue."""
        with self.services.db.write() as session:
            session.execute(
                sa.update(Run)
                .where(Run.status.in_(ACTIVE))
                .values(status=RunStatus.CANCELLED, lease_owner=None)
            )

    def run(self, run_id: str) -> Run:
        with self.services.db.read() as session:
            row = session.get(Run, run_id)
            assert row is not None
            return row
