"""cgroup v2: one directory per run under a delegated subtree."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from contextlib import AbstractContextManager
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
)


class V2Cgroup:
    active = True
    limits_memory = True

    def __init__(self, path: Path) -> None:
        self.dir = path
        self.path = str(path)

    def contains(self, pid: int) -> bool:
        return in_cgroup(pid, self.dir)

    def attach(self, pids: Iterable[int]) -> None:
        _attach([self.dir], pids)

    def spawning(self) -> AbstractContextManager[bool]:
        # A thread alone cannot enter a domain cgroup in v2 (only threaded
        # subtrees); processes are moved after they start (see attach).
        return contextlib.nullcontext(False)

    def pids(self) -> list[int]:
        return _read_pids(self.dir / "cgroup.procs")

    def oom_killed(self) -> bool:
        with contextlib.suppress(OSError):
            for line in (self.dir / "memory.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value) > 0
        return False

    def remove(self) -> None:
        if not self.dir.exists():
            return
        kill_file = self.dir / "cgroup.kill"
        if kill_file.exists():  # Linux 5.14+: kills the whole subtree atomically
            with contextlib.suppress(OSError):
                _write(kill_file, "1")
        _kill_members([self.dir])
        _rmdir(self.dir)


class V2Manager:
    kind = "v2"

    def __init__(
        self,
        base: Path,
        controllers: tuple[str, ...],
        note: str = "",
    ) -> None:
        self.base = base
        self.controllers = controllers
        self.note = note

    def describe(self) -> str:
        note = f"; {self.note}" if self.note else ""
        return f"cgroup v2 ({', '.join(self.controllers)}) under {self.base}{note}"

    def create(self, name: str, limits: Limits) -> RunCgroup:
        path = self.base / name
        if path.exists():
            V2Cgroup(path).remove()
        cgroup = V2Cgroup(path)
        try:
            path.mkdir()
            _write(path / "memory.max", str(limits.memory_mb * MIB))
            swap = path / "memory.swap.max"
            if swap.exists():
                _write(swap, "0")
            _write(path / "pids.max", str(limits.pids_max + BWRAP_PROCESSES))
            if "cpu" in self.controllers and limits.cpus > 0:
                quota = int(limits.cpus * CPU_PERIOD_US)
                _write(path / "cpu.max", f"{quota} {CPU_PERIOD_US}")
        except OSError as exc:
            cgroup.remove()
            raise SandboxError(f"cannot set up cgroup {name}: {exc}") from exc
        return cgroup
