"""Cleaning up after runs off the run's path.

Once a run's program is gone and its output collected, what is left (its
tmpfs to unmount, its cgroup to remove, its uid slot to free) takes ~0.7 ms
that the caller need not wait for: the run's result is recorded meanwhile.
The slot stays taken until its cleanup is done, so no later run can meet
what an earlier one left; runs take slots round-robin, so a later run rarely
waits for one. A worker that dies before the janitor got to a slot leaves
it to the next holder, which removes stale cgroups and mounts first.
"""

from __future__ import annotations

import atexit
import queue
import threading
from collections.abc import Callable

from automation_server.logging import get_logger

log = get_logger("sandbox")


class Janitor:
    def __init__(self, name: str = "sandbox-janitor") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # A worker that exits normally finishes its cleanups first.
        atexit.register(self.wait_idle, 10.0)

    def later(self, job: Callable[[], None]) -> None:
        """Run ``job`` soon, in the janitor's thread; its failure is logged."""
        with self._idle:
            self._pending += 1
        self._ensure_thread()
        self._jobs.put(job)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every job handed over so far is done; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:
                log.exception("sandbox.cleanup_failed")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()
