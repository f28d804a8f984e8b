"""Per-run host identities: a dedicated uid/gid for every concurrent run.

When the worker is root, each run gets its own unprivileged host uid from a
configured range, so ``RLIMIT_NPROC`` (counted per uid) is per run and runs
cannot signal or read each other. A slot is held with ``flock`` on a file in
the state directory: the lock is shared by every worker process on the host
and disappears with a crashed holder, so the next holder cleans up after it.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from automation_server.errors import SandboxError


@dataclass(frozen=True)
class Identity:
    """Who the run is on the host."""

    slot: int
    uid: int
    gid: int
    dedicated: bool  # False: the worker's own (unprivileged) identity

    @property
    def name(self) -> str:
        return f"slot-{self.slot}"


class SlotPool:
    """Hands out slots 0..count-1; ``uid_base`` None means "run as myself"."""

    def __init__(self, lock_dir: Path, count: int, uid_base: int | None) -> None:
        if count < 1:
            raise SandboxError("the sandbox needs at least one uid slot")
        self.lock_dir = lock_dir
        self.count = count
        self.uid_base = uid_base
        self._next = 0
        self._mutex = threading.Lock()
        lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def describe(self) -> str:
        if self.uid_base is None:
            return f"runs as uid {os.getuid()} (the worker's own)"
        last = self.uid_base + self.count - 1
        return f"one uid per run from {self.uid_base}-{last}"

    @contextmanager
    def acquire(self) -> Iterator[Identity]:
        slot, fd = self._lock_free_slot()
        try:
            if self.uid_base is None:
                yield Identity(slot, os.getuid(), os.getgid(), dedicated=False)
            else:
                uid = self.uid_base + slot
                yield Identity(slot, uid, uid, dedicated=True)
        finally:
            os.close(fd)  # releases the flock

    def _lock_free_slot(self) -> tuple[int, int]:
        with self._mutex:
            start = self._next
            self._next = (self._next + 1) % self.count
        for i in range(self.count):
            slot = (start + i) % self.count
            fd = os.open(
                self.lock_dir / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return slot, fd
        raise SandboxError(f"all {self.count} sandbox slots are busy")
