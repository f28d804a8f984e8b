"""Run statuses and failure origins: the names every module shares.

``RunStatus`` values are what the API returns and what the ``runs.status``
column holds (a CHECK constraint keeps other values out). ``FailureOrigin``
says whose fault a failed attempt was: the program's (``run``) or the
platform's (``infrastructure``); only the first counts in experiments.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class FailureOrigin(StrEnum):
    RUN = "run"
    INFRASTRUCTURE = "infrastructure"


class Trigger(StrEnum):
    MANUAL = "manual"
    CRON = "cron"
    INTERVAL = "interval"
    WEBHOOK = "webhook"
    EVENT = "event"


ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})
FINISHED = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.TIMED_OUT,
        RunStatus.CANCELLED,
        RunStatus.SKIPPED,
    }
)
# Outcomes of a program that executed to an end of its own: the ones experiments measure.
MEASURED = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT})
# What a user's retry policy may repeat.
RETRYABLE = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT})


def check_constraint(values: type[StrEnum], column: str) -> str:
    """The SQL of a CHECK constraint admitting exactly the enum's values."""
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return f"{column} IN ({allowed})"
