"""Database rows to API shapes for automations and revisions."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.orm import Session

from automation_server.audit import record
from automation_server.automations.schemas import (
    AutomationOut,
    EnvironmentOut,
    LastRun,
    RevisionOut,
    VariantOut,
)
from automation_server.db.models import Automation, AutomationSecret, Environment, Revision, Variant
from automation_server.ids import to_rfc3339


def environments_of(session: Session, digests: list[str | None]) -> dict[str, dict[str, Any]]:
    """Environment details by digest, for the variants that have one."""
    wanted = {d for d in digests if d}
    if not wanted:
        return {}
    rows = session.execute(
        select(Environment.digest, Environment.python, Environment.packages).where(
            Environment.digest.in_(wanted)
        )
    ).all()
    return {d: {"digest": d, "python": p, "packages": list(pkgs)} for d, p, pkgs in rows}


def variant_out(row: Variant, environments: dict[str, dict[str, Any]]) -> VariantOut:
    requirements = row.requirements or None
    env = environments.get(row.environment_digest or "")
    return VariantOut(
        name=row.name,
        weight=row.weight,
        tarball=f"blob:{row.tarball_digest}",
        digest=row.tarball_digest,
        entrypoint=list(row.entrypoint),
        env=dict(row.env),
        description=row.description,
        source=dict(row.source),
        requirements=list(requirements["lines"]) if requirements else None,
        requirements_source=requirements["source"] if requirements else None,
        environment=msgspec.convert(env, EnvironmentOut) if env else None,
    )


def automation_out(session: Session, row: Automation) -> AutomationOut:
    variants = session.scalars(
        select(Variant)
        .where(Variant.automation_id == row.id, Variant.deleted_at.is_(None))
        .order_by(Variant.position)
    ).all()
    environments = environments_of(session, [v.environment_digest for v in variants])
    secret_names = session.scalars(
        select(AutomationSecret.name)
        .where(AutomationSecret.automation_id == row.id)
        .order_by(AutomationSecret.name)
    )
    last_run = (
        LastRun(id=row.last_run_id, status=row.last_run_status or "queued")
        if row.last_run_id
        else None
    )
    return AutomationOut(
        id=row.id,
        name=row.name,
        trigger=dict(row.trigger),
        experiment_id=row.experiment_id,
        variants=[variant_out(v, environments) for v in variants],
        champion=row.champion,
        revision=row.revision,
        enabled=row.enabled,
        timeout_s=row.timeout_s,
        network=row.network,
        limits=dict(row.limits),
        concurrency=dict(row.concurrency),
        retry=dict(row.retry),
        misfire=dict(row.misfire),
        auto_promote=dict(row.auto_promote) if row.auto_promote else None,
        metrics=dict(row.metrics or {}),
        allocation=dict(row.allocation or {"mode": "fixed"}),
        assignment_key_path=row.assignment_key_path,
        env=dict(row.env),
        secrets=list(secret_names),
        created_at=to_rfc3339(row.created_at) or "",
        updated_at=to_rfc3339(row.updated_at) or "",
        next_run_at=to_rfc3339(row.next_run_at),
        last_run=last_run,
        missed_ticks=row.missed_ticks,
        disable_after_failures=row.disable_after_failures or 0,
        consecutive_failures=row.failure_streak or 0,
        disabled_reason=row.disabled_reason,
    )


def snapshot(session: Session, row: Automation) -> dict[str, Any]:
    """The automation as the API shows it (secret names, never values), for the audit log."""
    data: dict[str, Any] = msgspec.to_builtins(automation_out(session, row))
    return data


def audit_change(
    session: Session, actor: str, action: str, row: Automation, before: dict[str, Any] | None
) -> None:
    """Record an automation change with its state before and after (nothing if unchanged)."""
    session.flush()
    after = snapshot(session, row)
    if before is not None and _comparable(before) == _comparable(after):
        return
    record(
        session,
        org_id=row.org_id,
        actor=actor,
        action=action,
        resource_type="automation",
        resource_id=row.id,
        before=before,
        after=after,
    )


def _comparable(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in ("updated_at", "next_run_at")}


def revision_out(row: Revision) -> RevisionOut:
    return RevisionOut(
        revision=row.number,
        experiment_id=row.experiment_id,
        champion=row.champion,
        weights={v["name"]: v["weight"] for v in row.variants},
        variants=list(row.variants),
        actor=row.actor,
        reason=row.reason,
        created_at=to_rfc3339(row.created_at) or "",
    )
