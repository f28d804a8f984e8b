"""Retry decisions after an attempt: the user's attempts and the platform's failures apart."""

from __future__ import annotations

import pytest

from automation_server.queue.outcomes import AttemptState, RetryPolicy, next_step
from automation_server.queue.results import RunResult
from automation_server.statuses import FailureOrigin, RunStatus

LOST = RunResult.infrastructure("worker lost")
FAILED = RunResult(RunStatus.FAILED, 1, "exit 1", 10)
OK = RunResult(RunStatus.SUCCEEDED, 0, None, 10)


def state(attempt: int = 1, infra: int = 0, cancel: bool = False) -> AttemptState:
    return AttemptState(attempt=attempt, infra_failures=infra, cancel_requested=cancel)


def test_infrastructure_failure_is_retried_at_once_without_using_an_attempt() -> None:
    step = next_step(LOST, state(), RetryPolicy(max_attempts=1, max_infra_attempts=3))
    assert step.status is RunStatus.QUEUED and step.retry_in_s == 0.0
    assert step.infra_failures == 1


def test_later_infrastructure_retries_back_off_briefly() -> None:
    policy = RetryPolicy(max_attempts=1, max_infra_attempts=10)
    delays = [
        next_step(LOST, state(attempt=k, infra=k - 1), policy).retry_in_s for k in range(1, 9)
    ]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_the_last_allowed_infrastructure_failure_ends_the_run_failed_infrastructure() -> None:
    policy = RetryPolicy(max_attempts=5, max_infra_attempts=3)
    assert next_step(LOST, state(attempt=2, infra=1), policy).final is False
    last = next_step(LOST, state(attempt=3, infra=2), policy)
    assert last.final and last.status is RunStatus.FAILED
    assert last.failure_origin is FailureOrigin.INFRASTRUCTURE and last.infra_failures == 3


def test_user_attempts_do_not_count_infrastructure_failures() -> None:
    policy = RetryPolicy(max_attempts=2, backoff_s=10, max_infra_attempts=3)
    # attempt 3 after two platform failures is the user's first: one retry left.
    step = next_step(FAILED, state(attempt=3, infra=2), policy)
    assert step.status is RunStatus.QUEUED and step.retry_in_s is not None
    assert 5.0 <= step.retry_in_s <= 10.0
    # the user's second attempt fails: final, the program's fault.
    final = next_step(FAILED, state(attempt=4, infra=2), policy)
    assert final.final and final.failure_origin is FailureOrigin.RUN


def test_single_attempt_program_failure_is_final_with_origin_run() -> None:
    step = next_step(FAILED, state(), RetryPolicy())
    assert step.final and step.status is RunStatus.FAILED
    assert step.failure_origin is FailureOrigin.RUN


@pytest.mark.parametrize("result", [LOST, FAILED])
def test_cancellation_wins_over_any_retry(result: RunResult) -> None:
    step = next_step(result, state(cancel=True), RetryPolicy(max_attempts=5))
    assert step.final and step.status is RunStatus.CANCELLED and step.failure_origin is None


def test_success_has_no_origin() -> None:
    step = next_step(OK, state(attempt=2, infra=1), RetryPolicy())
    assert step.final and step.status is RunStatus.SUCCEEDED and step.failure_origin is None
