"""The scheduler's reads and writes of schedules (``automations.next_run_at``).

Due automations are claimed with ``FOR NO KEY UPDATE SKIP LOCKED`` (any number
of schedulers share the work; dispatches, which take KEY SHARE, never wait),
and compared against the database's clock.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from automation_server.db.engine import Database
from automation_server.db.models import Automation


def claim_due(session: Session, now: datetime, limit: int) -> list[Automation]:
    """Enabled automations due at ``now``, locked for this scheduler, earliest first."""
    return list(
        session.scalars(
            select(Automation)
            .where(
                Automation.enabled,
                Automation.deleted_at.is_(None),
                Automation.next_run_at <= now,
            )
            .order_by(Automation.next_run_at)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True)
        ).all()
    )


def earliest_due(db: Database) -> datetime | None:
    with db.read() as session:
        return session.scalar(
            select(func.min(Automation.next_run_at)).where(
                Automation.enabled,
                Automation.deleted_at.is_(None),
                Automation.next_run_at.is_not(None),
            )
        )
