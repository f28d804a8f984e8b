"""What every experiment query shares: which runs count and the variants' order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from automation_server.db.models import Automation, Revision


def methods_for(include_forced: bool) -> tuple[str, ...]:
    """Assignment methods counted: forced runs only when asked for."""
    return ("random", "sticky", "forced") if include_forced else ("random", "sticky")


def scope(
    model: Any, org_id: str, experiment_id: str, methods: Sequence[str]
) -> list[ColumnElement[bool]]:
    return [
        model.org_id == org_id,
        model.experiment_id == experiment_id,
        model.method.in_(methods),
    ]


def variant_order(session: Session, org_id: str, experiment_id: str) -> dict[str, int]:
    """Variants in the order of the experiment's newest revision (the first is the control)."""
    latest = session.execute(
        select(Revision.variants)
        .join(Automation, Automation.id == Revision.automation_id)
        .where(Automation.org_id == org_id, Revision.experiment_id == experiment_id)
        .order_by(Revision.created_at.desc())
        .limit(1)
    ).scalar()
    return {v["name"]: i for i, v in enumerate(latest or [])}
