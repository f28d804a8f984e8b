"""cgroup v1: separate ``memory``, ``pids`` and ``cpu`` hierarchies, a directory in each.

Processes are born inside the run's cgroups rather than moved there: the
thread that starts bubblewrap moves itself, alone, into them (writing ``0``
to each ``tasks`` file), starts it, and moves itself back. A child is born
in its parent *thread*'s cgroups, so bubblewrap and everything it forks are
inside from their first instruction. Moving the current thread alone is
the one migration the kernel does without the global threadgroup lock, so
it costs ~0.1 ms instead of the RCU grace period (~10-15 ms on an idle
machine without ``favordynmods``) that moving a process waits for. When the
thread cannot move (no permission), the processes are moved afterwards as
before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from automation_server.errors import SandboxError
from automation_server.sandbox.base import Limits
from automation_server.sandbox.cgroup_base import (
    BWRAP_PROCESSES,
    CPU_PERIOD_US,
    MIB,
    RunCgroup,
    _attach,
    _kill_members,
    _read_pids,
    _rmdir,
    _write,
    in_cgroup,
    locate_in_mount,
    parse_proc_cgroup,
)

# controller -> (root, mount point) of its hierarchy, as in /proc/self/mountinfo
Hierarchies = dict[str, tuple[str, Path]]


class V1Cgroup:
    active = True

    def __init__(self, dirs: dict[str, Path], hierarchies: Hierarchies | None = None) -> None:
        self.dirs = dirs
        self.path = ", ".join(str(d) for d in dirs.values())
        self.limits_memory = "memory" in dirs
        self._hierarchies = hierarchies or {}

    @contextlib.contextmanager
    def spawning(self) -> Iterator[bool]:
        """Hold the calling thread in the run's cgroups while it starts processes."""
        homes = self._thread_homes()
        moved: list[str] = []
        try:
            if homes is not None:
                with contextlib.suppress(OSError):
                    for controller, directory in self.dirs.items():
                        _write(directory / "tasks", "0")
                        moved.append(controller)
            inside = len(moved) == len(self.dirs) and bool(moved)
            if not inside:
                _go_home(moved, homes)
                moved = []
            yield inside
        finally:
            _go_home(moved, homes)

    def _thread_homes(self) -> dict[str, Path] | None:
        """The calling thread's own cgroup directory in each of the run's hierarchies."""
        if set(self.dirs) - set(self._hierarchies):
            return None
        try:
            own = parse_proc_cgroup(Path("/proc/thread-self/cgroup").read_text())
        except (OSError, ValueError):
            return None
        homes: dict[str, Path] = {}
        for controller in self.dirs:
            root, point = self._hierarchies[controller]
            located = locate_in_mount(root, point, own.get(controller, ""))
            if controller not in own or located is None or not located.is_dir():
                return None
            homes[controller] = located
        return homes

    def contains(self, pid: int) -> bool:
        return in_cgroup(pid, self._listing_dir())

    def attach(self, pids: Iterable[int]) -> None:
        _attach(self.dirs.values(), pids)

    def _listing_dir(self) -> Path:
        return self.dirs.get("pids") or next(iter(self.dirs.values()))

    def pids(self) -> list[int]:
        return _read_pids(self._listing_dir() / "cgroup.procs")

    def oom_killed(self) -> bool:
        memory = self.dirs.get("memory")
        if memory is None:
            return False
        with contextlib.suppress(OSError):
            for line in (memory / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value) > 0
            # Kernels before 4.13 have no oom_kill counter: hitting the limit is the sign.
            return int((memory / "memory.failcnt").read_text()) > 0
        return False

    def remove(self) -> None:
        _kill_members(self.dirs.values())
        for d in self.dirs.values():
            _rmdir(d)


def _go_home(moved: list[str], homes: dict[str, Path] | None) -> None:
    """Move the calling thread back to its own cgroups; never leave it in a run's."""
    if not moved or homes is None:
        return
    failed = []
    for controller in moved:
        try:
            _write(homes[controller] / "tasks", "0")
        except OSError as exc:
            failed.append(f"{controller}: {exc}")
    moved.clear()
    if failed:
        raise SandboxError(f"cannot move the worker thread back to its cgroup: {failed}")


class V1Manager:
    kind = "v1"

    def __init__(
        self, bases: dict[str, Path], note: str = "", hierarchies: Hierarchies | None = None
    ) -> None:
        self.bases = bases
        self.note = note
        self.hierarchies = hierarchies or {}

    def describe(self) -> str:
        where = ", ".join(f"{c}={p}" for c, p in self.bases.items())
        if self.hierarchies and not set(self.bases) - set(self.hierarchies):
            note = "; processes born in their cgroup (the starting thread enters it)"
        else:
            note = f"; {self.note}" if self.note else ""
        return f"cgroup v1 ({where}){note}"

    def create(self, name: str, limits: Limits) -> RunCgroup:
        dirs = {c: base / name for c, base in self.bases.items()}
        stale = {c: d for c, d in dirs.items() if d.exists()}
        if stale:  # left by a crashed worker that held the same slot
            V1Cgroup(stale).remove()
        cgroup = V1Cgroup(dirs, self.hierarchies)
        try:
            for d in dirs.values():
                d.mkdir()
            self._apply(dirs, limits)
        except OSError as exc:
            cgroup.remove()
            raise SandboxError(f"cannot set up cgroup {name}: {exc}") from exc
        return cgroup

    @staticmethod
    def _apply(dirs: dict[str, Path], limits: Limits) -> None:
        if "memory" in dirs:
            memory = dirs["memory"]
            _write(memory / "memory.limit_in_bytes", str(limits.memory_mb * MIB))
            # No swap either (memsw counts memory + swap); absent without swap accounting.
            memsw = memory / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                _write(memsw, str(limits.memory_mb * MIB))
        if "pids" in dirs:
            _write(dirs["pids"] / "pids.max", str(limits.pids_max + BWRAP_PROCESSES))
        if "cpu" in dirs and limits.cpus > 0:
            _write(dirs["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(dirs["cpu"] / "cpu.cfs_quota_us", str(int(limits.cpus * CPU_PERIOD_US)))
