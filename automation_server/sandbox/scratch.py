"""The worker's per-run host files in memory: payload, state and collected output.

With a tmpfs workdir per run (a root worker), a run's program never touches the
host disk, but the worker still wrote each run's payload, state and collected
output under its data directory and removed them after the run: five inodes
created and deleted per run. On an ext4 without a journal (this project's
machine) allocating an inode after such churn scans the recently deleted ones:
``perf`` showed about a tenth of a worker's CPU in ``ext4_new_inode`` during a
burst, and the removal took up to ~1 ms on the run's path. These files now live
on one tmpfs under the sandbox's state directory, mounted by the first worker
of the host that needs it and shared by all of them (each in a directory of its
own, see :mod:`.owned_dirs`). It is never unmounted, since another worker may
be using it; between runs it holds nothing.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from automation_server.logging import get_logger
from automation_server.sandbox.owned_dirs import process_dir
from automation_server.sandbox.runfs import mount_tmpfs

log = get_logger("sandbox")


def memory_scratch(state: Path) -> Path | None:
    """This process's directory on the host's scratch tmpfs, mounting it if no worker
    has yet; None (the caller keeps its files on disk) when it cannot be mounted."""
    point = state / "scratch"
    try:
        point.mkdir(mode=0o711, exist_ok=True)
        _mount_once(point, state / "scratch.lock")
        return process_dir(point)
    except OSError as exc:
        log.warning("sandbox.scratch_unavailable", path=str(point), error=str(exc))
        return None


def _mount_once(point: Path, lock: Path) -> None:
    # Two workers starting together must not both mount: the second mount would
    # hide the files the first one already wrote there.
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not os.path.ismount(point):
            # As large as tmpfs makes it by default (half the memory): the files
            # come from runs whose own tmpfs already caps what they can write.
            half_memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
            mount_tmpfs(point, half_memory, os.getuid(), os.getgid())
    finally:
        os.close(fd)
