"""Who hears of run changes, inside the transaction that makes them.

The queue owns run state; other concepts keep their own books from what it
tells them (experiment rollups today). A listener is called in the queue's
transaction, so its writes commit or roll back with the change itself; a
listener never changes runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from automation_server.statuses import FailureOrigin, RunStatus


@dataclass(frozen=True)
class RunFacts:
    """A run as listeners see it when it is created or reaches its final state."""

    id: str
    org_id: str
    automation_id: str
    revision: int
    experiment_id: str | None
    variant: str
    method: str
    trigger: str
    status: RunStatus
    created_at: datetime
    failure_origin: FailureOrigin | None = None
    duration_ms: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    attempt: int = 1
    # The automation's new state, reported by a run (``report.state``); None: unchanged.
    state: dict[str, Any] | None = None


class RunListener(Protocol):
    def run_created(self, session: Session, run: RunFacts) -> None:
        """A run was queued (or recorded as skipped)."""

    def run_finished(self, session: Session, run: RunFacts) -> None:
        """A run reached its final status (not between retry attempts)."""
