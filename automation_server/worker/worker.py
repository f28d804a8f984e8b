"""Where runs are claimed and supervised: the worker process (or the loop in ``serve``).

Threads: one loop claims runs when slots are free (woken by LISTEN/NOTIFY or a
local commit, polling as the fallback); one thread per running run executes
it (a run whose sandbox is done frees its slot while its result is recorded);
one heartbeat thread renews leases, learns of cancellations and lost leases,
reaps runs of dead workers and records this worker's liveness.

Shutdown: :meth:`Worker.stop` stops claiming, waits up to the grace period for
running runs, then cancels what is left and hands it back to the queue without
counting an attempt, so another worker runs it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from automation_server.errors import Unavailable
from automation_server.ids import new_id
from automation_server.logging import bind_run, get_logger
from automation_server.observability import Metrics
from automation_server.queue.claim import ClaimedRun
from automation_server.queue.manager import RunQueue
from automation_server.queue.notify import CANCEL, RUNS
from automation_server.queue.results import RunResult
from automation_server.queue.workers import WorkerRegistry
from automation_server.security.crypto import SecretBox, SecretKeyError
from automation_server.security.keywatch import FatalStop, KeyWatch
from automation_server.statuses import RunStatus
from automation_server.worker.execution import Executed, RunExecution, RunTask, task_of

log = get_logger("worker")

T = TypeVar("T")
# How long a worker keeps trying to record a result while the database is down.
DATABASE_WAIT_S = 600.0
CRASHED = "internal error of the worker while running (see the server log)"


def _log_failure(event: str, exc: Exception, worker_id: str) -> None:
    """An outage is a one-line warning; anything else is a bug and gets its traceback."""
    if _transient(exc):
        log.warning(event, worker_id=worker_id, error=type(exc).__name__)
    else:
        log.exception(event, worker_id=worker_id)


def _transient(exc: Exception) -> bool:
    """A lost or refused database connection (worth retrying), not a bug."""
    if isinstance(exc, Unavailable):
        return True
    return isinstance(exc, OperationalError | InterfaceError) or bool(
        getattr(exc, "connection_invalidated", False)
    )


@dataclass
class InFlight:
    run_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    handing_back: bool = False
    thread: threading.Thread | None = None
    # False once the sandbox is done and only the result is left to record.
    executing: bool = True


class Worker:
    def __init__(
        self,
        *,
        queue: RunQueue,
        registry: WorkerRegistry,
        box: SecretBox,
        execution: RunExecution,
        concurrency: int,
        lease_s: float,
        heartbeat_s: float,
        poll_s: float,
        shutdown_grace_s: float,
        on_finished: Callable[[str], object] | None = None,
        metrics: Metrics | None = None,
        verify_key: Callable[[], object] | None = None,
    ) -> None:
        self.id = new_id()
        self._queue = queue
        self._registry = registry
        self._box = box
        self._execution = execution
        self._concurrency = concurrency
        self._lease_s = lease_s
        self._heartbeat_s = heartbeat_s
        self._poll_s = poll_s
        self._grace_s = shutdown_grace_s
        self._on_finished = on_finished
        self._metrics = metrics or Metrics()
        self._key_watch = (
            KeyWatch(verify_key, self._stop_fatally) if verify_key is not None else None
        )
        self.fatal = FatalStop()
        self._inflight: dict[str, InFlight] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        # Whether the last claim may have left runnable runs behind (it filled every
        # free slot, or runs were queued since): only then is a slot that frees
        # early worth a claim before the run's finish commits.
        self._runs_left = True
        queue.notifier.subscribe(RUNS, self._on_runs_queued)
        queue.notifier.subscribe(CANCEL, self._on_cancel)

    # ---- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._register()
        if self._key_watch is not None:
            self._key_watch.start()
        for target, name in ((self._claim_loop, "claim"), (self._heartbeat_loop, "heartbeat")):
            thread = threading.Thread(target=target, name=f"worker-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("worker.started", worker_id=self.id, concurrency=self._concurrency)

    def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming; let runs finish for ``grace_s``; hand back the rest."""
        grace = self._grace_s if grace_s is None else grace_s
        if self._key_watch is not None:
            self._key_watch.stop()
        self._stopping.set()
        self._wake.set()
        for flight in self._snapshot():
            if flight.thread:
                flight.thread.join(timeout=grace)
        for flight in self._snapshot():
            flight.handing_back = True
            flight.cancel.set()
        for flight in self._snapshot():
            if flight.thread:
                flight.thread.join(timeout=30)
        for thread in self._threads:
            thread.join(timeout=10)
        self._mark_stopped()
        log.info("worker.stopped", worker_id=self.id)

    def running(self) -> list[str]:
        return [f.run_id for f in self._snapshot()]

    # ---- claiming --------------------------------------------------------------

    def _claim_loop(self) -> None:
        """Claim whenever a slot is free: a finished run wakes the loop at once."""
        while not self._stopping.is_set():
            self._wake.clear()
            free = self._free_slots()
            claimed: list[ClaimedRun] = []
            if free > 0:
                self._runs_left = False
                try:
                    claimed = self._queue.claim(self.id, free, self._lease_s)
                except Exception as exc:  # database down: log, back off, try again
                    self._runs_left = True
                    _log_failure("worker.claim_failed", exc, self.id)
                    self._stopping.wait(self._poll_s)
                if len(claimed) >= free:
                    self._runs_left = True
            for run in claimed:
                self._start_run(run)
            if len(claimed) < max(free, 0) or free <= 0:
                self._wake.wait(self._poll_s)

    def _on_runs_queued(self, _payload: str) -> None:
        self._runs_left = True
        self._wake.set()

    def _free_slots(self) -> int:
        """Runs this worker may start now. A run whose sandbox is done frees its slot
        while its result is recorded, so the next claim and sandbox start overlap that
        write; at most ``concurrency`` runs may be recording at once, so a stalled
        database or object store cannot pile them up."""
        flights = self._snapshot()
        executing = sum(f.executing for f in flights)
        return min(self._concurrency - executing, 2 * self._concurrency - len(flights))

    def _start_run(self, claimed: ClaimedRun) -> None:
        flight = InFlight(claimed.run_id)
        flight.thread = threading.Thread(
            target=self._run_one,
            args=(flight, claimed),
            name=f"run-{claimed.run_id[:8]}",
            daemon=True,
        )
        with self._lock:
            self._inflight[claimed.run_id] = flight
        flight.thread.start()

    def _run_one(self, flight: InFlight, claimed: ClaimedRun) -> None:
        try:
            try:
                task = task_of(claimed, self._box)
            except SecretKeyError as exc:
                self._refuse_run(flight, exc)
                return
            with bind_run(task.run_id, task.automation_id, task.variant):
                log.info("run.started", attempt=task.attempt, worker_id=self.id)
                self._metrics.dispatch_latency.observe(task.waited_s)
                executed = self._execute(task, flight)
                flight.executing = False
                if self._runs_left:
                    self._wake.set()
                result = executed.result
                duration = (result.duration_ms or 0) / 1000
                self._metrics.run_duration.labels(result.status.value).observe(duration)
                if self._record(flight, result, executed.log_stored):
                    self._after_finish(task.automation_id)
        except Exception:
            # A bug of ours (or an outage that outlasted the retries) is the platform's
            # failure, never the program's: the run is retried without using an attempt.
            log.exception("run.crashed", run_id=flight.run_id)
            try:
                self._record(flight, RunResult.infrastructure(CRASHED))
            except Exception:  # the reaper settles the run when its lease expires
                log.exception("run.record_failed", run_id=flight.run_id)
        finally:
            with self._lock:
                self._inflight.pop(flight.run_id, None)
            self._wake.set()

    def _refuse_run(self, flight: InFlight, exc: SecretKeyError) -> None:
        """This worker's key cannot decrypt the run's secrets: give the run back untouched
        (another worker with the deployment's key runs it) and stop claiming."""
        handed = self._durably("hand_back", lambda: self._queue.hand_back(flight.run_id, self.id))
        log.error("worker.secret_key_mismatch", run_id=flight.run_id, handed_back=handed)
        self._stop_fatally(
            f"the secret key of this worker is not this deployment's key ({exc.detail}: "
            f"run {flight.run_id}); the run went back to the queue and this worker stopped. "
            "Set the same AUTOMATION_SECRET_KEY on every api, worker and scheduler process "
            "and start this one again."
        )

    def _stop_fatally(self, reason: str) -> None:
        self._stopping.set()
        self._wake.set()
        self.fatal.stop_with(reason)

    def _execute(self, task: RunTask, flight: InFlight) -> Executed:
        return self._execution.execute(task, flight.cancel)

    def _record(
        self, flight: InFlight, result: RunResult, log_stored: Callable[[], None] = lambda: None
    ) -> bool:
        """Store the attempt's result (committed once its log is stored); True when the
        run reached its final state and its automation's auto-promotion policy should be
        evaluated."""
        if flight.handing_back and result.status == RunStatus.CANCELLED:
            log_stored()
            handed = self._durably(
                "hand_back", lambda: self._queue.hand_back(flight.run_id, self.id)
            )
            log.info("run.handed_back", run_id=flight.run_id, handed=handed)
            return False
        if result.status == RunStatus.CANCELLED:
            result = replace(result, error=result.error or "cancelled by request")
        final = result
        report = self._durably(
            "finish", lambda: self._queue.finish(flight.run_id, self.id, final, log_stored)
        )
        log.info(
            "run.finished",
            run_id=flight.run_id,
            status=report.status,
            exit_code=result.exit_code,
            duration_ms=result.duration_ms,
            recorded=report.recorded,
        )
        # Only an automation with a champion/challenger policy needs evaluating.
        return report.recorded and report.final and report.evaluate

    def _durably(self, action: str, fn: Callable[[], T]) -> T:
        """Retry a queue write through a database outage, so a finished run's result is
        never dropped; the run stays in flight meanwhile and its lease is renewed once
        the database is back."""
        delay = 0.2
        deadline = time.monotonic() + DATABASE_WAIT_S
        while True:
            try:
                return fn()
            except (DBAPIError, Unavailable) as exc:
                if not _transient(exc) or time.monotonic() > deadline:
                    raise
                log.warning("worker.database_unavailable", action=action, retry_in_s=delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _after_finish(self, automation_id: str) -> None:
        """Post-run hooks (champion/challenger evaluation); their failure never fails a run."""
        if self._on_finished is None:
            return
        try:
            self._on_finished(automation_id)
        except Exception:
            log.exception("run.after_finish_failed", automation_id=automation_id)

    # ---- heartbeats, cancellation, reaping -------------------------------------

    def _on_cancel(self, run_id: str) -> None:
        with self._lock:
            flight = self._inflight.get(run_id)
        if flight is not None:
            flight.cancel.set()

    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(self._heartbeat_s):
            try:
                self._beat()
            except Exception as exc:
                _log_failure("worker.heartbeat_failed", exc, self.id)

    def _beat(self) -> None:
        run_ids = [f.run_id for f in self._snapshot()]
        cancel, lost = self._queue.heartbeat(self.id, run_ids, self._lease_s)
        for run_id in cancel | lost:
            self._on_cancel(run_id)
        self._registry.beat(self.id, len(run_ids))
        self._queue.reap()

    def _register(self) -> None:
        self._durably("register", lambda: self._registry.register(self.id, self._concurrency))

    def _mark_stopped(self) -> None:
        try:
            self._registry.stopped(self.id)
        except Exception:
            log.exception("worker.stop_record_failed", worker_id=self.id)

    def _snapshot(self) -> list[InFlight]:
        with self._lock:
            return list(self._inflight.values())
