"""The events a notification channel may subscribe to (DESIGN section 9.5)."""

from __future__ import annotations

from enum import StrEnum


class NotifyEvent(StrEnum):
    RUN_FAILED = "run.failed"
    RUN_TIMED_OUT = "run.timed_out"
    AUTOMATION_DISABLED = "automation.disabled"
    EXPERIMENT_DECISION = "experiment.decision"
    EXPERIMENT_SRM = "experiment.srm"


NOTIFY_EVENTS = tuple(e.value for e in NotifyEvent)
