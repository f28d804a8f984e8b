"""cgroup v1: separate ``memory``, ``pids`` and ``cpu`` hierarchies, a directory in each."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
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


class V1Cgroup:
    active = True

    def __init__(self, dirs: dict[str, Path]) -> None:
        self.dirs = dirs
        self.path = ", ".join(str(d) for d in dirs.values())
        self.limits_memory = "memory" in dirs

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


class V1Manager:
    kind = "v1"

    def __init__(self, bases: dict[str, Path], note: str = "") -> None:
        self.bases = bases
        self.note = note

    def describe(self) -> str:
        where = ", ".join(f"{c}={p}" for c, p in self.bases.items())
        note = f"; {self.note}" if self.note else ""
        return f"cgroup v1 ({where}){note}"

    def create(self, name: str, limits: Limits) -> RunCgroup:
        dirs = {c: base / name for c, base in self.bases.items()}
        stale = {c: d for c, d in dirs.items() if d.exists()}
        if stale:  # left by a crashed worker that held the same slot
            V1Cgroup(stale).remove()
        cgroup = V1Cgroup(dirs)
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
