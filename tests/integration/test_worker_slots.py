"""A worker's slots: a run whose sandbox is done frees its slot while its result is
recorded, runs waiting to be recorded never pile up past the worker's concurrency,
and a result waiting for its log holds no database lock.

The execution is replaced by one the test controls (each attempt "runs" until the
test lets it end, and its log is "stored" when the test says so); the queue,
the database and the worker's threads are real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from automation_server.queue.results import RunResult
from automation_server.statuses import RunStatus
from automation_server.worker.execution import Executed, RunTask
from automation_server.worker.worker import Worker
from tests.integration.queue_support import QueueKit

WAIT_S = 10.0


class HeldExecution:
    """Attempts that end when the test releases them, with logs stored on demand."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.log_store_open = threading.Event()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def execute(self, task: RunTask, cancel: threading.Event) -> Executed:
        with self._changed:
            self.started.append(task.run_id)
            self._changed.notify_all()
        result = RunResult(RunStatus.SUCCEEDED, 0, None, 1)
        return Executed(result, lambda: self.log_store_open.wait(WAIT_S))

    def wait_started(self, n: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.started) >= n, WAIT_S)


def _worker(services: Any, execution: HeldExecution, concurrency: int) -> Worker:
    w = services.settings.worker
    return Worker(
        queue=services.queue,
        registry=services.workers,
        box=services.box,
        execution=execution,  # type: ignore[arg-type]
        concurrency=concurrency,
        lease_s=w.lease_s,
        heartbeat_s=w.heartbeat_s,
        poll_s=0.2,
        shutdown_grace_s=5,
    )


def _statuses(services: Any, run_ids: list[str], kit: QueueKit) -> list[str]:
    return [services.runs.get(kit.caller, run_id).status for run_id in run_ids]


def _eventually(check: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_the_next_run_starts_while_the_last_result_is_recorded_but_never_piles_up(
    services: Any,
) -> None:
    kit = QueueKit.make(services)
    automations = [kit.automation(f"slots-{i}") for i in range(4)]
    run_ids = [kit.dispatch(a)[0] for a in automations]
    execution = HeldExecution()
    worker = _worker(services, execution, concurrency=1)
    worker.start()
    try:
        # Run 1's sandbox is done; its result waits for its log. The slot is free:
        # run 2 starts meanwhile, without waiting for run 1's finish to commit.
        assert execution.wait_started(2), execution.started
        # Two results now wait to be recorded (one per slot, plus the slot's
        # new run): no third run starts until one of them is recorded.
        time.sleep(0.6)  # three claim polls
        assert len(execution.started) == 2, execution.started
        assert sorted(worker.running()) == sorted(execution.started)
        # Results waiting on the object store hold no database lock: a dispatch
        # (another writer; SQLite has one at a time) goes through meanwhile.
        began = time.monotonic()
        run_ids += kit.dispatch(automations[0])
        assert time.monotonic() - began < 2.0
        execution.log_store_open.set()
        assert execution.wait_started(5), execution.started
        assert _eventually(
            lambda: _statuses(services, run_ids, kit) == [RunStatus.SUCCEEDED] * 5
        ), _statuses(services, run_ids, kit)
    finally:
        execution.log_store_open.set()
        worker.stop(grace_s=5)
