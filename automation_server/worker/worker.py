"""Where runs are claimed and supervised: the worker process (or the loop in ``serve``).

Threads: one loop claims runs when slots are free (woken by LISTEN/NOTIFY or a
local commit, polling as the fallback); one thread per running run executes
it; one heartbeat thread renews leases, learns of cancellations and lost
leases, reaps runs of dead workers and records this worker's liveness.

Shutdown: :meth:`Worker.stop` stops claiming, waits up to the grace period for
running runs, then cancels what is left and hands it back to the queue without
counting an attempt, so another worker runs it.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import update

from automation_server.db.engine import Database
from automation_server.db.models import Worker as WorkerRow
from automation_server.ids import new_id, utcnow
from automation_server.logging import bind_run, get_logger
from automation_server.queue.manager import RunQueue, RunResult
from automation_server.queue.notify import CANCEL, RUNS
from automation_server.security.crypto import SecretBox
from automation_server.worker.execution import RunExecution, load_task

log = get_logger("worker")


@dataclass
class InFlight:
    run_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    handing_back: bool = False
    thread: threading.Thread | None = None


class Worker:
    def __init__(
        self,
        *,
        db: Database,
        queue: RunQueue,
        box: SecretBox,
        execution: RunExecution,
        concurrency: int,
        lease_s: float,
        heartbeat_s: float,
        poll_s: float,
        shutdown_grace_s: float,
        on_finished: Callable[[str], object] | None = None,
    ) -> None:
        self.id = new_id()
        self._db = db
        self._queue = queue
        self._box = box
        self._execution = execution
        self._concurrency = concurrency
        self._lease_s = lease_s
        self._heartbeat_s = heartbeat_s
        self._poll_s = poll_s
        self._grace_s = shutdown_grace_s
        self._on_finished = on_finished
        self._inflight: dict[str, InFlight] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        queue.notifier.subscribe(RUNS, lambda _payload: self._wake.set())
        queue.notifier.subscribe(CANCEL, self._on_cancel)

    # ---- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._register()
        for target, name in ((self._claim_loop, "claim"), (self._heartbeat_loop, "heartbeat")):
            thread = threading.Thread(target=target, name=f"worker-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("worker.started", worker_id=self.id, concurrency=self._concurrency)

    def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming; let runs finish for ``grace_s``; hand back the rest."""
        grace = self._grace_s if grace_s is None else grace_s
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
        while not self._stopping.is_set():
            self._wake.clear()
            free = self._concurrency - len(self._snapshot())
            claimed: list[str] = []
            if free > 0:
                try:
                    claimed = self._queue.claim(self.id, free, self._lease_s)
                except Exception:  # database down: log, back off, try again
                    log.exception("worker.claim_failed", worker_id=self.id)
                    self._stopping.wait(self._poll_s)
            for run_id in claimed:
                self._start_run(run_id)
            if len(claimed) < max(free, 0) or free <= 0:
                self._wake.wait(self._poll_s)

    def _start_run(self, run_id: str) -> None:
        flight = InFlight(run_id)
        flight.thread = threading.Thread(
            target=self._run_one, args=(flight,), name=f"run-{run_id[:8]}", daemon=True
        )
        with self._lock:
            self._inflight[run_id] = flight
        flight.thread.start()

    def _run_one(self, flight: InFlight) -> None:
        try:
            task = load_task(self._db, self._box, flight.run_id)
            with bind_run(task.run_id, task.automation_id, task.variant):
                log.info("run.started", attempt=task.attempt, worker_id=self.id)
                result = self._execute(task, flight)
                if self._record(flight, result):
                    self._after_finish(task.automation_id)
        except Exception:
            log.exception("run.crashed", run_id=flight.run_id)
            self._record(
                flight,
                RunResult(
                    status="failed",
                    exit_code=None,
                    duration_ms=0,
                    error="internal error while running (see server log)",
                ),
            )
        finally:
            with self._lock:
                self._inflight.pop(flight.run_id, None)
            self._wake.set()

    def _execute(self, task: object, flight: InFlight) -> RunResult:
        if self._queue.cancel_requested(flight.run_id):
            return RunResult(
                status="cancelled",
                exit_code=None,
                duration_ms=0,
                error="cancelled before it started",
            )
        return self._execution.execute(task, flight.cancel)  # type: ignore[arg-type]

    def _record(self, flight: InFlight, result: RunResult) -> bool:
        """Store the attempt's result; True when the run reached its final state."""
        if flight.handing_back and result.status == "cancelled":
            handed = self._queue.hand_back(flight.run_id, self.id)
            log.info("run.handed_back", run_id=flight.run_id, handed=handed)
            return False
        if result.status == "cancelled":
            result = RunResult(
                **{**result.__dict__, "error": result.error or "cancelled by request"}
            )
        report = self._queue.finish(flight.run_id, self.id, result)
        log.info(
            "run.finished",
            run_id=flight.run_id,
            status=report.status,
            exit_code=result.exit_code,
            duration_ms=result.duration_ms,
            recorded=report.recorded,
        )
        return report.recorded and report.final

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
            except Exception:
                log.exception("worker.heartbeat_failed", worker_id=self.id)

    def _beat(self) -> None:
        run_ids = [f.run_id for f in self._snapshot()]
        cancel, lost = self._queue.heartbeat(self.id, run_ids, self._lease_s)
        for run_id in cancel | lost:
            self._on_cancel(run_id)
        with self._db.write() as session:
            session.execute(
                update(WorkerRow)
                .where(WorkerRow.id == self.id)
                .values(heartbeat_at=utcnow(), running=len(run_ids))
            )
        self._queue.reap()

    def _register(self) -> None:
        now = utcnow()
        with self._db.write() as session:
            session.add(
                WorkerRow(
                    id=self.id,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    concurrency=self._concurrency,
                    running=0,
                    started_at=now,
                    heartbeat_at=now,
                    stopped_at=None,
                )
            )

    def _mark_stopped(self) -> None:
        try:
            with self._db.write() as session:
                session.execute(
                    update(WorkerRow)
                    .where(WorkerRow.id == self.id)
                    .values(stopped_at=utcnow(), running=0)
                )
        except Exception:
            log.exception("worker.stop_record_failed", worker_id=self.id)

    def _snapshot(self) -> list[InFlight]:
        with self._lock:
            return list(self._inflight.values())
