"""Run history: filters, keyset pages, one run, its log, cancellation."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, select

from automation_server.db.engine import Database
from automation_server.db.models import Run
from automation_server.errors import BadRequest, BlobMissing, NotFound
from automation_server.pagination import created_between, fetch_page
from automation_server.queue.manager import RunQueue
from automation_server.runs.schemas import RunOut, RunPage
from automation_server.runs.views import run_out
from automation_server.security.accounts import Caller
from automation_server.statuses import FINISHED, RunStatus, Trigger
from automation_server.storage.blobs import log_key
from automation_server.storage.blobstore import BlobStore

STATUSES = {s.value for s in RunStatus}
TRIGGERS = {t.value for t in Trigger}


@dataclass(frozen=True)
class RunFilters:
    automation_id: str | None = None
    experiment_id: str | None = None
    variant: str | None = None
    status: str | None = None
    trigger: str | None = None
    since: str | None = None
    until: str | None = None


class RunService:
    def __init__(self, db: Database, queue: RunQueue, store: BlobStore) -> None:
        self._db = db
        self._queue = queue
        self._store = store

    def list_page(
        self, caller: Caller, filters: RunFilters, *, limit: int, cursor: str | None
    ) -> RunPage:
        query = self._filtered(caller, filters)
        with self._db.read() as session:
            rows, next_cursor = fetch_page(session, query, Run, limit=limit, cursor=cursor)
        return RunPage(items=[run_out(r) for r in rows], next_cursor=next_cursor)

    def _filtered(self, caller: Caller, f: RunFilters) -> Select[Run]:
        if f.status is not None and f.status not in STATUSES:
            raise BadRequest(
                f"status: must be one of {', '.join(sorted(STATUSES))}",
                field="status",
                code="invalid_filter",
            )
        if f.trigger is not None and f.trigger not in TRIGGERS:
            raise BadRequest(
                f"trigger: must be one of {', '.join(sorted(TRIGGERS))}",
                field="trigger",
                code="invalid_filter",
            )
        query = select(Run).where(Run.org_id == caller.org_id)
        for column, value in (
            (Run.automation_id, f.automation_id),
            (Run.experiment_id, f.experiment_id),
            (Run.variant, f.variant),
            (Run.status, f.status),
            (Run.trigger, f.trigger),
        ):
            if value is not None:
                query = query.where(column == value)
        return query.where(*created_between(Run, f.since, f.until))

    def get(self, caller: Caller, run_id: str) -> RunOut:
        return run_out(self._load(caller, run_id))

    def status(self, caller: Caller, run_id: str) -> str:
        return self._load(caller, run_id).status

    def _load(self, caller: Caller, run_id: str) -> Run:
        with self._db.read() as session:
            run = session.scalars(
                select(Run).where(Run.id == run_id, Run.org_id == caller.org_id)
            ).one_or_none()
        if run is None:
            raise NotFound(f"no run with id '{run_id}'")
        return run

    def log(self, caller: Caller, run_id: str) -> tuple[bytes, bool]:
        """The stored log so far and whether the run has finished."""
        finished = self.status(caller, run_id) in FINISHED
        try:
            data = self._store.get(log_key(run_id))
        except BlobMissing:
            data = b""
        return data, finished

    def cancel(self, caller: Caller, run_id: str) -> RunOut:
        return run_out(self._queue.cancel(caller.org_id, run_id))
