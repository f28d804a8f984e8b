"""Persistence of automations, their live variants and their immutable revisions.

Shared by the automation service (create, update) and the variant lifecycle
(clone, promote, rollback), so every path that changes variants writes rows and
revisions the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from automation_server.db.models import Automation, EventSource, Revision, Variant
from automation_server.errors import Invalid, NotFound
from automation_server.ids import new_id, utcnow


@dataclass(frozen=True)
class VariantDraft:
    """A variant as it will be stored: tarball pinned to a digest."""

    name: str
    weight: int
    digest: str
    entrypoint: list[str]
    env: dict[str, str]
    description: str
    source: dict[str, Any]
    # Normalised requirement lines, where they came from ("body" or "requirements.txt"),
    # and the digest of the locked environment they resolved to.
    requirements: tuple[str, ...] | None = None
    requirements_source: str | None = None
    environment: str | None = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weight": self.weight,
            "tarball": f"blob:{self.digest}",
            "digest": self.digest,
            "entrypoint": self.entrypoint,
            "env": self.env,
            "description": self.description,
            "source": self.source,
            "requirements": list(self.requirements) if self.requirements is not None else None,
            "requirements_source": self.requirements_source,
            "environment_digest": self.environment,
        }

    def requirements_json(self) -> dict[str, Any] | None:
        if self.requirements is None:
            return None
        return {"lines": list(self.requirements), "source": self.requirements_source}


def draft_of(row: Variant) -> VariantDraft:
    requirements = row.requirements or None
    return VariantDraft(
        row.name,
        row.weight,
        row.tarball_digest,
        list(row.entrypoint),
        dict(row.env),
        row.description,
        dict(row.source),
        tuple(requirements["lines"]) if requirements else None,
        requirements["source"] if requirements else None,
        row.environment_digest,
    )


def load_automation(
    session: Session,
    org_id: str,
    automation_id: str,
    *,
    lock: bool = False,
    include_deleted: bool = False,
) -> Automation:
    """The organization's automation, or NotFound (another organization's is not found)."""
    query = select(Automation).where(Automation.id == automation_id, Automation.org_id == org_id)
    if not include_deleted:
        query = query.where(Automation.deleted_at.is_(None))
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).one_or_none()
    if row is None:
        raise NotFound(f"no automation with id '{automation_id}'")
    return row


def live_variants(session: Session, automation_id: str) -> list[Variant]:
    return list(
        session.scalars(
            select(Variant)
            .where(Variant.automation_id == automation_id, Variant.deleted_at.is_(None))
            .order_by(Variant.position)
        )
    )


def live_drafts(session: Session, automation_id: str) -> list[VariantDraft]:
    return [draft_of(v) for v in live_variants(session, automation_id)]


def write_variants(
    session: Session, automation_id: str, drafts: list[VariantDraft], champion: str | None
) -> None:
    """Make the live variant rows match ``drafts``; removed ones are soft-deleted.

    The champion flag is cleared everywhere and flushed before it is set again,
    so the one-champion unique index never sees two flagged rows mid-update.
    """
    now = utcnow()
    keep = {d.name for d in drafts}
    rows = {v.name: v for v in live_variants(session, automation_id)}
    for name, existing in rows.items():
        existing.is_champion = False
        if name not in keep:
            existing.deleted_at = now
    session.flush()
    for position, d in enumerate(drafts):
        found = rows.get(d.name)
        row = (
            found
            if found is not None
            else Variant(
                id=new_id(),
                automation_id=automation_id,
                name=d.name,
                created_at=now,
                is_champion=False,
            )
        )
        session.add(row)
        row.position, row.weight, row.tarball_digest = position, d.weight, d.digest
        row.entrypoint, row.env, row.description = d.entrypoint, d.env, d.description
        row.source, row.updated_at = d.source, now
        row.requirements, row.environment_digest = d.requirements_json(), d.environment
    session.flush()
    if champion in keep:
        flagged = {v.name: v for v in live_variants(session, automation_id)}[str(champion)]
        flagged.is_champion = True
        session.flush()


def add_revision(
    session: Session, row: Automation, drafts: list[VariantDraft], actor: str, reason: str
) -> None:
    session.add(
        Revision(
            automation_id=row.id,
            number=row.revision,
            experiment_id=row.experiment_id,
            champion=row.champion,
            variants=[d.snapshot() for d in drafts],
            actor=actor,
            reason=reason,
            created_at=utcnow(),
        )
    )


def new_revision(
    session: Session, row: Automation, drafts: list[VariantDraft], actor: str, reason: str
) -> None:
    """Store the variants and record them as the automation's next revision."""
    write_variants(session, row.id, drafts, row.champion)
    row.revision += 1
    row.updated_at = utcnow()
    add_revision(session, row, drafts, actor, reason)


def revision_experiment(session: Session, row: Automation) -> str | None:
    current = session.get(Revision, (row.id, row.revision))
    return current.experiment_id if current else None


def event_source_of(session: Session, org_id: str, trigger: dict[str, Any]) -> str | None:
    """The id of an event trigger's source, named in the trigger (422 if the organization
    has no such source); None for other triggers."""
    if trigger.get("type") != "event":
        return None
    found = session.scalar(
        select(EventSource.id).where(
            EventSource.org_id == org_id, EventSource.name == trigger["source"]
        )
    )
    if found is None:
        raise Invalid(
            f"trigger.source: no event source named '{trigger['source']}' in this "
            "organization (create it with POST /v1/event-sources)",
            field="trigger.source",
            code="unknown_event_source",
        )
    return str(found)
