"""What one attempt produced, and what the queue did with it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from automation_server.statuses import FailureOrigin, RunStatus

# Exponential backoff is capped so a misconfigured retry never waits for days.
MAX_BACKOFF_S = 3600.0
WORKER_LOST = "worker lost (its lease expired)"


@dataclass(frozen=True)
class RunResult:
    """What a worker learned from executing one attempt.

    ``origin`` says whose fault a failure was: ``run`` (the program's exit
    code, its timeout or its own limits) or ``infrastructure`` (the platform
    could not run it). It is ignored for other statuses.
    """

    status: RunStatus
    exit_code: int | None
    error: str | None
    duration_ms: int | None
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    log_bytes: int = 0
    log_truncated: bool = False
    sandbox: str | None = None
    limits: dict[str, Any] | None = None
    origin: FailureOrigin = FailureOrigin.RUN
    # The automation's new state (``report.state``), kept only if the run succeeds.
    state: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # Accept plain strings from callers; store the enums.
        object.__setattr__(self, "status", RunStatus(self.status))
        object.__setattr__(self, "origin", FailureOrigin(self.origin))

    @classmethod
    def infrastructure(cls, error: str, *, sandbox: str | None = None) -> RunResult:
        """The platform could not run the attempt: retried without using the user's attempts."""
        return cls(
            status=RunStatus.FAILED,
            exit_code=None,
            error=error,
            duration_ms=None,
            sandbox=sandbox,
            origin=FailureOrigin.INFRASTRUCTURE,
        )

    @property
    def failure_origin(self) -> FailureOrigin | None:
        if self.status in (RunStatus.FAILED, RunStatus.TIMED_OUT):
            return self.origin
        return None


@dataclass(frozen=True)
class FinishReport:
    """What :meth:`RunQueue.finish` did: ``final`` is False when a retry was queued."""

    recorded: bool
    final: bool
    status: RunStatus
    # The automation has a champion/challenger policy or a bandit to evaluate now.
    evaluate: bool = False


def backoff_delay(backoff_s: float, attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff, jittered to 50-100% of ``backoff_s * 2^(attempt-1)``."""
    base = min(MAX_BACKOFF_S, backoff_s * 2.0 ** max(0, attempt - 1))
    jitter: float = (rng or random).random()
    return base * (0.5 + 0.5 * jitter)
