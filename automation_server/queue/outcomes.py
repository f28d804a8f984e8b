"""What happens after an attempt: retry it, or give the run its final status.

Pure decisions (no database), so every combination is unit-tested:

- an infrastructure failure goes back to the queue without using one of the
  user's ``retry.max_attempts``, up to ``max_infra_attempts`` such failures;
  the last one ends the run ``failed`` with origin ``infrastructure``. The
  first retry is due at once; later ones wait 1, 2, 4 ... seconds (at most
  30), so an outage of the object store or the sandbox host lasting a few
  seconds does not use up every attempt within milliseconds;
- a failure or timeout of the program is retried after the backoff while the
  user's attempts (attempts minus infrastructure failures) last;
- a requested cancellation wins over any retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from automation_server.queue.results import RunResult, backoff_delay
from automation_server.statuses import RETRYABLE, FailureOrigin, RunStatus


@dataclass(frozen=True)
class AttemptState:
    """The run's counters before this attempt's result is applied."""

    attempt: int
    infra_failures: int
    cancel_requested: bool


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 1
    backoff_s: float = 30.0
    max_infra_attempts: int = 3

    @classmethod
    def of(cls, retry: dict[str, Any] | None, max_infra_attempts: int) -> RetryPolicy:
        retry = retry or {}
        return cls(
            max_attempts=int(retry.get("max_attempts", 1)),
            backoff_s=float(retry.get("backoff_s", 30)),
            max_infra_attempts=max_infra_attempts,
        )


@dataclass(frozen=True)
class NextStep:
    """``retry_in_s`` is set when the run goes back to the queue; else ``status`` is final."""

    status: RunStatus
    failure_origin: FailureOrigin | None
    retry_in_s: float | None
    infra_failures: int

    @property
    def final(self) -> bool:
        return self.retry_in_s is None


INFRA_BACKOFF_CAP_S = 30.0


def infra_retry_delay(failures: int) -> float:
    """0 s after the first platform failure, then 1, 2, 4 ... s, capped."""
    return 0.0 if failures <= 1 else min(INFRA_BACKOFF_CAP_S, 2.0 ** (failures - 2))


def next_step(result: RunResult, state: AttemptState, policy: RetryPolicy) -> NextStep:
    origin = result.failure_origin
    infra = state.infra_failures + (origin is FailureOrigin.INFRASTRUCTURE)
    if state.cancel_requested and result.status is not RunStatus.SUCCEEDED:
        return NextStep(RunStatus.CANCELLED, None, None, infra)
    if origin is FailureOrigin.INFRASTRUCTURE:
        if infra < policy.max_infra_attempts:
            return NextStep(RunStatus.QUEUED, None, infra_retry_delay(infra), infra)
        return NextStep(RunStatus.FAILED, origin, None, infra)
    if result.status in RETRYABLE:
        used = state.attempt - state.infra_failures  # the user's attempts, this one included
        if used < policy.max_attempts:
            return NextStep(RunStatus.QUEUED, None, backoff_delay(policy.backoff_s, used), infra)
    return NextStep(result.status, origin, None, infra)
