"""State carried between an automation's runs (DESIGN section 9.7).

Runs read the state as of their start (the queue hands it over with the claim)
and set a new one with ``report.state``; it is stored here, through the queue's
listener, in the transaction that records the run's success, so a run that does
not succeed changes nothing and concurrent successes apply one after the other
(the last to finish wins). ``PUT`` replaces it by hand.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from msgspec import Struct
from sqlalchemy.orm import Session

from automation_server.audit import record
from automation_server.automations.store import load_automation
from automation_server.automations.validation import storable_problem
from automation_server.db.engine import Database
from automation_server.db.helpers import upsert_insert
from automation_server.db.models import AutomationState
from automation_server.errors import Invalid
from automation_server.ids import to_rfc3339, utcnow
from automation_server.queue.listeners import RunFacts
from automation_server.security.accounts import Caller
from automation_server.statuses import RunStatus


class StateOut(Struct):
    state: dict[str, Any]
    version: int
    updated_at: str | None
    updated_by_run: str | None


def state_size(state: Any) -> int:
    """Bytes of the state as stored (compact JSON): what the limit counts."""
    return len(msgspec.json.encode(state))


def state_from_body(body: Any) -> dict[str, Any]:
    """A PUT body is ``{"state": {...}}`` (the GET shape; a ``version`` beside it is
    ignored) or the state object itself."""
    if isinstance(body, dict) and "state" in body and set(body) <= {"state", "version"}:
        body = body["state"]
    if not isinstance(body, dict):
        raise Invalid(
            'state: must be a JSON object, e.g. {"state": {"last_ticket": 41}}',
            field="state",
            code="invalid_state",
        )
    return body


class AutomationStates:
    """The state store, and the queue listener that applies what successful runs report."""

    def __init__(self, db: Database, max_bytes: int) -> None:
        self._db = db
        self._max_bytes = max_bytes

    def get(self, caller: Caller, automation_id: str) -> StateOut:
        with self._db.read() as session:
            load_automation(session, caller.org_id, automation_id)
            return _out(session.get(AutomationState, automation_id))

    def put(self, caller: Caller, automation_id: str, body: Any) -> StateOut:
        state = state_from_body(body)
        self.check(state)
        with self._db.write() as session:
            load_automation(session, caller.org_id, automation_id, lock=True)
            before = _out(session.get(AutomationState, automation_id))
            _store(session, automation_id, state, None, utcnow())
            record(
                session,
                org_id=caller.org_id,
                actor=caller.actor,
                action="automation.state.put",
                resource_type="automation",
                resource_id=automation_id,
                before={"version": before.version},
                after={"version": before.version + 1, "bytes": state_size(state)},
            )
        return self.get(caller, automation_id)

    def check(self, state: dict[str, Any]) -> None:
        problem = storable_problem(state)
        if problem:
            raise Invalid(f"state: {problem}", field="state", code="invalid_state")
        size = state_size(state)
        if size > self._max_bytes:
            raise Invalid(
                f"state: {size} bytes is over the limit of {self._max_bytes} bytes "
                "(AUTOMATION_MAX_STATE_BYTES); keep less between runs",
                field="state",
                code="state_too_large",
            )

    # ---- RunListener -----------------------------------------------------------

    def run_created(self, session: Session, run: RunFacts) -> None:
        return None

    def run_finished(self, session: Session, run: RunFacts) -> None:
        if run.status == RunStatus.SUCCEEDED and run.state is not None:
            _store(session, run.automation_id, run.state, run.id, utcnow())


def _store(
    session: Session, automation_id: str, state: dict[str, Any], run_id: str | None, now: datetime
) -> None:
    """Insert or replace in one statement: two first writers cannot both insert."""
    insert = upsert_insert(session, AutomationState).values(
        automation_id=automation_id, state=state, version=1, updated_at=now, updated_by_run=run_id
    )
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[AutomationState.automation_id],
            set_={
                "state": insert.excluded.state,
                "version": AutomationState.version + 1,
                "updated_at": insert.excluded.updated_at,
                "updated_by_run": insert.excluded.updated_by_run,
            },
        )
    )


def _out(row: AutomationState | None) -> StateOut:
    if row is None:
        return StateOut(state={}, version=0, updated_at=None, updated_by_run=None)
    return StateOut(
        state=dict(row.state),
        version=row.version,
        updated_at=to_rfc3339(row.updated_at),
        updated_by_run=row.updated_by_run,
    )
