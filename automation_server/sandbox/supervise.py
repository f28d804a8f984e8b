"""Waiting for a run: exit, timeout, cancellation, and stopping every process of it.

The waiting thread sleeps on a pidfd (woken the moment the process exits) and
wakes every 100 ms to look at the cancel event, so a trivial run costs no
polling latency and a cancel takes effect within a tenth of a second. Output
is read by another thread, so nothing here can block on a full pipe.

Stopping a run: SIGTERM to every process of it, a grace period, then SIGKILL
to every process. Signals go through pidfds after checking the process still
belongs to the run, so a recycled PID is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from automation_server.errors import SandboxError
from automation_server.sandbox.fdwait import wait_readable

CANCEL_POLL_S = 0.1
KILL_WAIT_S = 10.0

EndReason = Literal["exited", "timed_out", "cancelled", "limit"]


@dataclass(frozen=True)
class Ending:
    reason: EndReason
    returncode: int  # as Popen reports it (negative: killed by that signal)
    detail: str | None = None  # why a limit stopped the run
    killed_after_grace: bool = False


class Terminator(Protocol):
    def terminate(self) -> None:
        """SIGTERM every process of the run."""
        ...

    def kill(self) -> None:
        """SIGKILL every process of the run."""
        ...

    def main_exited(self) -> None:
        """Called once the main process has exited but before it is reaped."""
        ...


def supervise(
    proc: subprocess.Popen[bytes],
    *,
    started: float,
    timeout_s: float,
    grace_s: float,
    cancel: threading.Event,
    terminator: Terminator,
    check: Callable[[], str | None] | None = None,
    check_interval_s: float = 0.5,
) -> Ending:
    """Wait for ``proc``; on timeout, cancel or a failed ``check`` stop the whole run."""
    waiter = _ExitWaiter(proc, terminator)
    deadline = started + timeout_s
    next_check = time.monotonic() + check_interval_s
    try:
        while True:
            now = time.monotonic()
            pause = min(deadline - now, CANCEL_POLL_S)
            if check is not None:
                pause = min(pause, next_check - now)
            if waiter.wait(max(pause, 0.0)):
                return Ending("exited", waiter.returncode)
            if cancel.is_set():
                return _stop(waiter, terminator, "cancelled", grace_s)
            now = time.monotonic()
            if now >= deadline:
                return _stop(waiter, terminator, "timed_out", grace_s)
            if check is not None and now >= next_check:
                detail = check()
                if detail is not None:
                    terminator.kill()
                    waiter.wait_or_fail(KILL_WAIT_S)
                    return Ending("limit", waiter.returncode, detail)
                next_check = now + check_interval_s
    finally:
        waiter.close()


def _stop(waiter: _ExitWaiter, terminator: Terminator, reason: EndReason, grace_s: float) -> Ending:
    terminator.terminate()
    if waiter.wait(grace_s):
        return Ending(reason, waiter.returncode)
    terminator.kill()
    waiter.wait_or_fail(KILL_WAIT_S)
    return Ending(reason, waiter.returncode, killed_after_grace=True)


class _ExitWaiter:
    """Waits for a child via its pidfd (falls back to polling on old kernels)."""

    def __init__(self, proc: subprocess.Popen[bytes], terminator: Terminator) -> None:
        self._proc = proc
        self._terminator = terminator
        try:
            self._pidfd: int | None = os.pidfd_open(proc.pid)
        except OSError:
            self._pidfd = None

    @property
    def returncode(self) -> int:
        code = self._proc.returncode
        assert code is not None
        return code

    def wait(self, timeout: float) -> bool:
        if self._proc.returncode is not None:
            return True
        if self._pidfd is not None:
            if not wait_readable(self._pidfd, timeout):
                return False
            # Exited but not reaped: its PID (and process group) cannot be reused yet.
            self._terminator.main_exited()
            self._proc.wait()
            return True
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        self._terminator.main_exited()
        return True

    def wait_or_fail(self, timeout: float) -> None:
        if not self.wait(timeout):
            raise SandboxError(f"process {self._proc.pid} survived SIGKILL for {timeout} s")

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


def signal_verified(pid: int, sig: int, still_ours: Callable[[int], bool]) -> None:
    """Signal ``pid`` through a pidfd, only if it is (still) a process of the run."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return  # already gone
    try:
        if still_ours(pid):
            signal.pidfd_send_signal(pidfd, sig)
    except OSError:
        pass
    finally:
        os.close(pidfd)


def parent_map() -> dict[int, int]:
    """pid -> ppid for every process visible in /proc."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        ppid = read_ppid(int(name))
        if ppid is not None:
            parents[int(name)] = ppid
    return parents


def read_ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def descendants(root: int, parents: dict[int, int] | None = None) -> list[int]:
    """Every process below ``root`` (orphans in a PID namespace stay below its init)."""
    parents = parent_map() if parents is None else parents
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    return found


def signal_all(pids: Iterable[int], sig: int, still_ours: Callable[[int], bool]) -> None:
    for pid in pids:
        signal_verified(pid, sig, still_ours)
