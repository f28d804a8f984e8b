"""The queue's hot-path statements, built once per process, and the facts listeners get.

Values come as ``b_*`` bound parameters, so a claim or a finish costs SQL
execution only: no statement is constructed or compiled per run.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Select, Update, bindparam, case, insert, select, update

from automation_server.db.models import Automation, Run
from automation_server.ids import to_rfc3339
from automation_server.queue.clock import DbClock
from automation_server.queue.listeners import RunFacts
from automation_server.queue.results import RunResult
from automation_server.statuses import FailureOrigin, RunStatus

# The columns a transition reads from the locked run row.
STATE = (
    Run.id,
    Run.org_id,
    Run.automation_id,
    Run.automation_revision,
    Run.experiment_id,
    Run.variant,
    Run.assignment_method,
    Run.trigger,
    Run.status,
    Run.attempt,
    Run.attempts,
    Run.infra_failures,
    Run.cancel_requested,
    Run.lease_owner,
    Run.created_at,
    Run.started_at,
)


def attempt_entry(row: Any, result: RunResult, now: datetime) -> dict[str, Any]:
    """The attempt as ``attempts`` keeps it when the run goes back to the queue."""
    return {
        "attempt": row.attempt,
        "status": result.status.value,
        "exit_code": result.exit_code,
        "error": result.error,
        "origin": result.failure_origin.value if result.failure_origin else None,
        "started_at": to_rfc3339(row.started_at),
        "finished_at": to_rfc3339(now),
    }


# The hot path's statements, built once; values come as ``b_*`` parameters.


@cache
def insert_run() -> Any:
    return insert(Run)


@cache
def finish_select(postgres: bool) -> Select[Any]:
    return (
        select(
            *STATE,
            Automation.retry,
            Automation.auto_promote,
            Automation.allocation,
            DbClock.now_param(postgres).label("db_now"),
        )
        .join(Automation, Automation.id == Run.automation_id)
        .where(Run.id == bindparam("b_run"))
        .with_for_update(of=Run, key_share=True)
    )


def _settled_values() -> dict[str, Any]:
    return {
        "lease_owner": None,
        "lease_expires_at": None,
        "infra_failures": bindparam("b_infra"),
        "log_bytes": bindparam("b_log_bytes"),
        "log_truncated": bindparam("b_log_truncated"),
        "sandbox": bindparam("b_sandbox"),
        "limits": bindparam("b_limits"),
    }


@cache
def requeue_update(postgres: bool) -> Update:
    """The attempt kept in ``attempts``, the run back in the queue."""
    return (
        update(Run)
        .where(Run.id == bindparam("b_id"))
        .values(
            **_settled_values(),
            status=RunStatus.QUEUED,
            attempt=bindparam("b_attempt"),
            attempts=bindparam("b_attempts"),
            available_at=DbClock.after_param(postgres, "retry"),
            started_at=None,
            finished_at=None,
            exit_code=None,
            duration_ms=None,
            error=None,
            metrics={},
            outputs={},
        )
    )


@cache
def final_update() -> Update:
    return (
        update(Run)
        .where(Run.id == bindparam("b_id"))
        .values(
            **_settled_values(),
            status=bindparam("b_status"),
            failure_origin=bindparam("b_origin"),
            exit_code=bindparam("b_exit_code"),
            error=bindparam("b_error"),
            duration_ms=bindparam("b_duration_ms"),
            metrics=bindparam("b_metrics"),
            outputs=bindparam("b_outputs"),
            finished_at=bindparam("b_finished_at"),
        )
    )


@cache
def last_run_update() -> Update:
    """The automation's last run, and its streak of failures the program caused
    (``b_streak``: "reset" after a success, "count" after such a failure, else "keep";
    the platform's failures, cancellations and skips neither count nor reset it)."""
    streak = case(
        (bindparam("b_streak") == "reset", 0),
        (bindparam("b_streak") == "count", Automation.failure_streak + 1),
        else_=Automation.failure_streak,
    )
    return (
        update(Automation)
        .where(Automation.id == bindparam("b_aid"))
        .values(
            last_run_id=bindparam("b_run"),
            last_run_status=bindparam("b_status"),
            failure_streak=streak,
        )
    )


def streak_step(facts: RunFacts) -> str:
    if facts.status == RunStatus.SUCCEEDED:
        return "reset"
    if facts.failure_origin == FailureOrigin.RUN:
        return "count"
    return "keep"


def facts_of_state(row: Any, result: RunResult, status: RunStatus, origin: Any) -> RunFacts:
    return RunFacts(
        id=row.id,
        org_id=row.org_id,
        automation_id=row.automation_id,
        revision=row.automation_revision,
        experiment_id=row.experiment_id,
        variant=row.variant,
        method=row.assignment_method,
        trigger=row.trigger,
        status=status,
        created_at=row.created_at,
        failure_origin=origin,
        duration_ms=result.duration_ms,
        metrics=dict(result.metrics),
        error=result.error,
        attempt=row.attempt,
        state=result.state if status == RunStatus.SUCCEEDED else None,
    )


def facts_of_row(run: Run) -> RunFacts:
    return RunFacts(
        id=run.id,
        org_id=run.org_id,
        automation_id=run.automation_id,
        revision=run.automation_revision,
        experiment_id=run.experiment_id,
        variant=run.variant,
        method=run.assignment_method,
        trigger=run.trigger,
        status=RunStatus(run.status),
        created_at=run.created_at,
        error=run.error,
    )
