"""The audit log: every change with who, when, what, before and after.

Events are written in the same transaction as the change they describe, so the
log never claims a change that did not happen nor misses one that did.
Snapshots are API shapes, which list secret names and never their values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from msgspec import Struct
from sqlalchemy import select
from sqlalchemy.orm import Session

from automation_server.db.engine import Database
from automation_server.db.models import AuditEvent
from automation_server.ids import new_id, to_rfc3339, utcnow
from automation_server.pagination import created_between, fetch_page

if TYPE_CHECKING:
    from automation_server.security.accounts import Caller


def record(
    session: Session,
    *,
    org_id: str,
    actor: str,
    action: str,
    resource_type: str,
    resource_id: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEvent(
            id=new_id(),
            org_id=org_id,
            actor=actor,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            before=before,
            after=after,
            created_at=utcnow(),
        )
    )


class AuditOut(Struct):
    id: str
    actor: str
    action: str
    resource_type: str
    resource_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: str


class AuditPage(Struct):
    items: list[AuditOut]
    next_cursor: str | None


@dataclass(frozen=True)
class AuditFilters:
    resource_type: str | None = None
    resource_id: str | None = None
    actor: str | None = None
    action: str | None = None
    since: str | None = None
    until: str | None = None


class AuditService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def list_page(
        self, caller: Caller, f: AuditFilters, *, limit: int, cursor: str | None
    ) -> AuditPage:
        e = AuditEvent
        query = select(e).where(e.org_id == caller.org_id)
        for column, value in (
            (e.resource_type, f.resource_type),
            (e.resource_id, f.resource_id),
            (e.actor, f.actor),
            (e.action, f.action),
        ):
            if value is not None:
                query = query.where(column == value)
        query = query.where(*created_between(e, f.since, f.until))
        with self._db.read() as session:
            rows, next_cursor = fetch_page(session, query, e, limit=limit, cursor=cursor)
        items = [
            AuditOut(
                id=r.id,
                actor=r.actor,
                action=r.action,
                resource_type=r.resource_type,
                resource_id=r.resource_id,
                before=r.before,
                after=r.after,
                created_at=to_rfc3339(r.created_at) or "",
            )
            for r in rows
        ]
        return AuditPage(items=items, next_cursor=next_cursor)
