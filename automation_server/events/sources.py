"""Event sources: create, read, change, delete and rotate their signing secret.

A source's secret is stored encrypted and shown once (on create and rotation).
Automations name their source in an ``event`` trigger; the automation row also
keeps the source's id, so a renamed source keeps its automations.
"""

from __future__ import annotations

import secrets as pysecrets
from typing import Any

import msgspec
from msgspec import UNSET
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from automation_server.audit import record
from automation_server.automations.validation import check_assignment_key_path
from automation_server.db.engine import Database
from automation_server.db.models import Automation, EventSource
from automation_server.errors import Conflict, Invalid, NotFound
from automation_server.events.schemas import (
    EventSourceCreate,
    EventSourceOut,
    EventSourcePage,
    EventSourcePatch,
    EventTypeSpec,
)
from automation_server.ids import new_id, to_rfc3339, utcnow
from automation_server.security.accounts import Caller
from automation_server.security.crypto import SecretBox


def new_source_secret() -> str:
    return "evsec_" + pysecrets.token_urlsafe(32)


def event_type_json(spec: EventTypeSpec) -> dict[str, str]:
    """Exactly one of ``header`` and ``path``; a path must be a JMESPath expression (422)."""
    if (spec.header is None) == (spec.path is None):
        raise Invalid(
            'event_type: give exactly one of {"header": "X-GitHub-Event"} or '
            '{"path": "type"} (a JMESPath expression into the body)',
            field="event_type",
            code="invalid_event_type",
        )
    if spec.header is not None:
        return {"header": spec.header}
    try:
        check_assignment_key_path(spec.path)
    except Invalid as exc:
        raise Invalid(
            f"event_type.path: {exc.detail.split(': ', 1)[-1]}",
            field="event_type.path",
            code="invalid_event_type",
        ) from None
    return {"path": str(spec.path)}


class EventSourceService:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self._db = db
        self._box = box

    def create(self, caller: Caller, body: EventSourceCreate) -> EventSourceOut:
        event_type = event_type_json(body.event_type)
        secret = new_source_secret()
        now = utcnow()
        row = EventSource(
            id=new_id(),
            org_id=caller.org_id,
            name=body.name,
            event_type=event_type,
            signature_header=body.signature.header,
            delivery_id_header=body.delivery_id_header,
            secret=self._box.encrypt(secret),
            created_at=now,
            updated_at=now,
        )
        try:
            with self._db.write() as session:
                session.add(row)
                session.flush()
                self._audit(session, caller, "event_source.create", row, after=_public(row))
        except IntegrityError as exc:
            raise _duplicate(body.name) from exc
        return msgspec.structs.replace(self.get(caller, row.id), secret=secret)

    def list(self, caller: Caller) -> EventSourcePage:
        with self._db.read() as session:
            rows = session.scalars(
                select(EventSource)
                .where(EventSource.org_id == caller.org_id)
                .order_by(EventSource.name)
            ).all()
            return EventSourcePage(items=[_out(session, r) for r in rows])

    def get(self, caller: Caller, source_id: str) -> EventSourceOut:
        with self._db.read() as session:
            return _out(session, _load(session, caller.org_id, source_id))

    def update(self, caller: Caller, source_id: str, patch: EventSourcePatch) -> EventSourceOut:
        event_type = None if patch.event_type is UNSET else event_type_json(patch.event_type)
        try:
            with self._db.write() as session:
                row = _load(session, caller.org_id, source_id, lock=True)
                before = _public(row)
                if patch.name is not UNSET and patch.name != row.name:
                    row.name = patch.name
                    _rename_in_triggers(session, row)
                if event_type is not None:
                    row.event_type = event_type
                if patch.signature is not UNSET:
                    row.signature_header = patch.signature.header
                if patch.delivery_id_header is not UNSET:
                    row.delivery_id_header = patch.delivery_id_header
                row.updated_at = utcnow()
                session.flush()
                self._audit(session, caller, "event_source.update", row, before, _public(row))
        except IntegrityError as exc:
            raise _duplicate(str(patch.name)) from exc
        return self.get(caller, source_id)

    def delete(self, caller: Caller, source_id: str) -> None:
        """Refused (409) while automations use the source: their trigger would dangle."""
        with self._db.write() as session:
            row = _load(session, caller.org_id, source_id, lock=True)
            users = _automation_names(session, row.id)
            if users:
                raise Conflict(
                    f"event source '{row.name}' is used by automation(s) "
                    f"{', '.join(users[:10])}; change their trigger first",
                    code="event_source_in_use",
                )
            self._audit(session, caller, "event_source.delete", row, before=_public(row))
            session.delete(row)

    def rotate_secret(self, caller: Caller, source_id: str) -> EventSourceOut:
        secret = new_source_secret()
        with self._db.write() as session:
            row = _load(session, caller.org_id, source_id, lock=True)
            row.secret = self._box.encrypt(secret)
            row.updated_at = utcnow()
            self._audit(session, caller, "event_source.rotate_secret", row)
        return msgspec.structs.replace(self.get(caller, source_id), secret=secret)

    def _audit(
        self,
        session: Session,
        caller: Caller,
        action: str,
        row: EventSource,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> None:
        record(
            session,
            org_id=caller.org_id,
            actor=caller.actor,
            action=action,
            resource_type="event_source",
            resource_id=row.id,
            before=before,
            after=after,
        )


def _load(session: Session, org_id: str, source_id: str, *, lock: bool = False) -> EventSource:
    query = select(EventSource).where(EventSource.id == source_id, EventSource.org_id == org_id)
    row = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        raise NotFound(f"no event source with id '{source_id}'")
    return row


def _automation_names(session: Session, source_id: str) -> list[str]:
    return list(
        session.scalars(
            select(Automation.name)
            .where(Automation.event_source_id == source_id, Automation.deleted_at.is_(None))
            .order_by(Automation.name)
        )
    )


def _rename_in_triggers(session: Session, row: EventSource) -> None:
    """Triggers show the source by name: keep them in step with a rename."""
    users = session.execute(
        select(Automation.id, Automation.trigger).where(Automation.event_source_id == row.id)
    ).all()
    for automation_id, trigger in users:
        session.execute(
            update(Automation)
            .where(Automation.id == automation_id)
            .values(trigger={**trigger, "source": row.name})
        )


def _public(row: EventSource) -> dict[str, Any]:
    """What the audit log keeps of a source (never its secret)."""
    return {
        "name": row.name,
        "event_type": dict(row.event_type),
        "signature": {"header": row.signature_header},
        "delivery_id_header": row.delivery_id_header,
    }


def _out(session: Session, row: EventSource) -> EventSourceOut:
    return EventSourceOut(
        id=row.id,
        name=row.name,
        url=f"/v1/events/{row.id}",
        event_type=dict(row.event_type),
        signature={"header": row.signature_header},
        delivery_id_header=row.delivery_id_header,
        automations=_automation_names(session, row.id),
        created_at=to_rfc3339(row.created_at) or "",
        updated_at=to_rfc3339(row.updated_at) or "",
    )


def _duplicate(name: str) -> Conflict:
    return Conflict(
        f"name: an event source named '{name}' already exists in this organization",
        field="name",
        code="duplicate_name",
    )
