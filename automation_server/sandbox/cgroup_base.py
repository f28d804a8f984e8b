"""The cgroup interface, the null implementation, and the file helpers both kinds use."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Literal, Protocol

from automation_server.errors import SandboxError
from automation_server.sandbox.base import Limits

MIB = 1 << 20
CPU_PERIOD_US = 100_000
# bubblewrap's monitor and its PID 1 live in the run's cgroup too.
BWRAP_PROCESSES = 2
V1_CONTROLLERS = ("memory", "pids", "cpu")
V2_REQUIRED = ("memory", "pids")

CgroupMode = Literal["auto", "v2", "v1", "none"]


class RunCgroup(Protocol):
    active: bool
    limits_memory: bool
    path: str

    def attach(self, pids: Iterable[int]) -> None:
        """Move processes into the cgroup (their later children are born in it)."""
        ...

    def spawning(self) -> AbstractContextManager[bool]:
        """While held, processes the calling thread starts are born in the cgroup
        (True); False when that cannot be arranged and :meth:`attach` is needed."""
        ...

    def pids(self) -> list[int]:
        """Processes currently in the cgroup (host PIDs)."""
        ...

    def contains(self, pid: int) -> bool:
        """Whether ``pid`` is (still) in this cgroup."""
        ...

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the run for exceeding memory."""
        ...

    def remove(self) -> None:
        """Kill whatever is left and delete the cgroup."""
        ...


class CgroupManager(Protocol):
    kind: str

    def create(self, name: str, limits: Limits) -> RunCgroup: ...

    def describe(self) -> str: ...


class NullCgroup:
    active = False
    limits_memory = False
    path = ""

    def contains(self, pid: int) -> bool:
        return False

    def attach(self, pids: Iterable[int]) -> None:
        return None

    def spawning(self) -> AbstractContextManager[bool]:
        return contextlib.nullcontext(False)

    def pids(self) -> list[int]:
        return []

    def oom_killed(self) -> bool:
        return False

    def remove(self) -> None:
        return None


class NullManager:
    kind = "none"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def create(self, name: str, limits: Limits) -> RunCgroup:
        return NullCgroup()

    def describe(self) -> str:
        return f"no cgroup ({self.reason})"


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _read_pids(procs_file: Path) -> list[int]:
    try:
        pids = [int(line) for line in procs_file.read_text().split()]
    except FileNotFoundError:
        return []
    # Never this process: a thread of it may sit in a run's cgroup for a moment
    # (see V1Cgroup.spawning), and a run's process list must never include it.
    own = os.getpid()
    return [pid for pid in pids if pid != own]


def locate_in_mount(mount_root: str, mount_point: Path, own: str) -> Path | None:
    """Where the cgroup ``own`` (a path as /proc/*/cgroup shows it) is under a mount."""
    if mount_root == "/":
        return mount_point / own.lstrip("/")
    if own == mount_root or own.startswith(mount_root + "/"):
        return mount_point / own[len(mount_root) :].lstrip("/")
    return None


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Controller (or "" for v2) -> cgroup path, from /proc/<pid>/cgroup."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _kill_members(dirs: Iterable[Path], deadline_s: float = 5.0) -> None:
    """SIGKILL every process in the cgroups until they are empty."""
    deadline = time.monotonic() + deadline_s
    dirs = list(dirs)
    while time.monotonic() < deadline:
        pids = {pid for d in dirs for pid in _read_pids(d / "cgroup.procs")}
        if not pids:
            return
        for pid in pids:
            signal_if_member(pid, signal.SIGKILL, dirs[0])
        time.sleep(0.01)


def signal_if_member(pid: int, sig: int, cgroup_dir: Path) -> None:
    """Signal ``pid`` only if it is still in ``cgroup_dir`` (a pidfd pins its identity)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if in_cgroup(pid, cgroup_dir):
            signal.pidfd_send_signal(pidfd, sig)
    except OSError:
        pass
    finally:
        os.close(pidfd)


def in_cgroup(pid: int, cgroup_dir: Path) -> bool:
    """Whether /proc/<pid>/cgroup names ``cgroup_dir`` (matched by its last two parts)."""
    marker = f"/{cgroup_dir.parent.name}/{cgroup_dir.name}"
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    return any(line.endswith(marker) for line in text.splitlines())


def _rmdir(path: Path, deadline_s: float = 2.0) -> None:
    """Remove a cgroup; EBUSY lasts until the kernel has released the last task."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise SandboxError(f"cannot remove cgroup {path}: {exc}") from exc
            time.sleep(0.005)


def _attach(dirs: Iterable[Path], pids: Iterable[int]) -> None:
    pids = list(pids)
    for d in dirs:
        for pid in pids:
            try:
                _write(d / "cgroup.procs", str(pid))
            except ProcessLookupError:
                continue  # already gone: nothing left to account
            except OSError as exc:
                raise SandboxError(f"cannot move process {pid} into {d}: {exc}") from exc
