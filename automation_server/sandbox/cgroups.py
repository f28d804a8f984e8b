"""A control group per run: limits for the run as a whole and the list of its processes.

Three managers behind one interface: cgroup v2 (when its memory and pids
controllers are available to us), v1 (separate ``memory``, ``pids`` and
``cpu`` hierarchies) and a null one when neither may be used (an unprivileged
worker without delegation): then rlimits and the PID namespace do the work.

The worker moves bubblewrap's two processes into the cgroup while
bubblewrap holds the sandbox at ``--block-fd`` (mounts done, program not yet
forked), so the program and everything it forks are born inside; see
:mod:`automation_server.sandbox.bwrap` for why this is not done in the child.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
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

    def warm_up(self) -> None:
        """Start, in the background, the wait the run's first migration would pay."""
        ...

    def describe(self) -> str: ...


class NullCgroup:
    active = False
    limits_memory = False
    path = ""

    def contains(self, pid: int) -> bool:
        return False

    def attach(self, pids: Iterable[int]) -> None:
        return None

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

    def warm_up(self) -> None:
        return None

    def describe(self) -> str:
        return f"no cgroup ({self.reason})"


class _MigrationWarmup:
    """Moves a short-lived thread into the cgroup it is already in.

    Every cgroup migration takes a global lock whose first writer waits for an
    RCU grace period (~10 ms measured here; later writers within a grace
    period are quick). Doing a no-op migration as a run starts lets that wait
    run alongside the run's preparation and bubblewrap's start instead of
    after them. Best effort: any error just means no head start. The current
    cgroup is read from /proc/self/cgroup at that moment, so the write never
    moves anything anywhere; with v1 only the thread itself is named (its
    ``tasks`` file), with v2 (no per-thread files) the process.
    """

    def __init__(self, mount: _Mount, key: str) -> None:
        self.mount = mount
        self.key = key  # the v1 controller, or "" for v2

    def start(self) -> None:
        threading.Thread(target=self._migrate_in_place, name="cgroup-warmup", daemon=True).start()

    def _migrate_in_place(self) -> None:
        with contextlib.suppress(OSError, KeyError, ValueError):
            own = _own_paths(Path("/proc/self/cgroup").read_text())[self.key]
            current = _locate(self.mount, own)
            if current is None:
                return
            if self.key:
                _write(current / "tasks", str(threading.get_native_id()))
            else:
                _write(current / "cgroup.procs", str(os.getpid()))


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _read_pids(procs_file: Path) -> list[int]:
    try:
        return [int(line) for line in procs_file.read_text().split()]
    except FileNotFoundError:
        return []


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


# --- cgroup v1 --------------------------------------------------------------------


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

    def __init__(self, bases: dict[str, Path], warmup: _MigrationWarmup | None = None) -> None:
        self.bases = bases
        self._warmup = warmup

    def warm_up(self) -> None:
        if self._warmup is not None:
            self._warmup.start()

    def describe(self) -> str:
        where = ", ".join(f"{c}={p}" for c, p in self.bases.items())
        return f"cgroup v1 ({where})"

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


# --- cgroup v2 --------------------------------------------------------------------


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
        warmup: _MigrationWarmup | None = None,
    ) -> None:
        self.base = base
        self.controllers = controllers
        self.note = note
        self._warmup = warmup

    def warm_up(self) -> None:
        if self._warmup is not None:
            self._warmup.start()

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


# --- detection --------------------------------------------------------------------


@dataclass(frozen=True)
class _Mount:
    root: str
    point: Path
    fstype: str
    options: frozenset[str]


def _mounts(mountinfo: str) -> list[_Mount]:
    mounts = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        point = Path(fields[4].replace("\\040", " "))
        mounts.append(_Mount(fields[3], point, tail[0], frozenset(tail[2].split(","))))
    return mounts


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _locate(mount: _Mount, own: str) -> Path | None:
    if mount.root == "/":
        return mount.point / own.lstrip("/")
    if own == mount.root or own.startswith(mount.root + "/"):
        return mount.point / own[len(mount.root) :].lstrip("/")
    return None


def detect_cgroups(mode: CgroupMode = "auto", parent: str = "automation-sandbox") -> CgroupManager:
    """Pick the manager to use; ``mode`` other than auto insists on one kind."""
    if mode == "none":
        return NullManager("disabled by configuration")
    try:
        mounts = _mounts(Path("/proc/self/mountinfo").read_text())
        own = _own_paths(Path("/proc/self/cgroup").read_text())
    except OSError as exc:
        return _fallback(mode, f"cannot read cgroup information: {exc}")
    reasons = []
    if mode in ("auto", "v2"):
        v2 = _try_v2(mounts, own, parent)
        if isinstance(v2, V2Manager):
            return v2
        reasons.append(v2)
    if mode in ("auto", "v1"):
        v1 = _try_v1(mounts, own, parent)
        if isinstance(v1, V1Manager):
            return v1
        reasons.append(v1)
    return _fallback(mode, "; ".join(reasons))


def _fallback(mode: CgroupMode, reason: str) -> CgroupManager:
    if mode != "auto":
        raise SandboxError(f"cgroup {mode} requested but unusable: {reason}")
    return NullManager(reason)


def _try_v1(mounts: list[_Mount], own: dict[str, str], parent: str) -> V1Manager | str:
    bases: dict[str, Path] = {}
    problems = []
    warmup: _MigrationWarmup | None = None
    for controller in V1_CONTROLLERS:
        mount = next((m for m in mounts if m.fstype == "cgroup" and controller in m.options), None)
        if mount is None or controller not in own:
            problems.append(f"{controller}: not mounted")
            continue
        located = _locate(mount, own[controller])
        if located is None:
            problems.append(f"{controller}: own cgroup not visible")
            continue
        base = located / parent
        try:
            base.mkdir(exist_ok=True)
            _probe_child(base)
        except OSError as exc:
            problems.append(f"{controller}: {exc.strerror}")
            continue
        bases[controller] = base
        warmup = warmup or _MigrationWarmup(mount, controller)
    if "memory" not in bases and "pids" not in bases:
        return "cgroup v1: " + (", ".join(problems) or "no controllers")
    return V1Manager(bases, warmup)


def _probe_child(base: Path) -> None:
    probe = base / f"probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    probe.rmdir()


def _try_v2(mounts: list[_Mount], own: dict[str, str], parent: str) -> V2Manager | str:
    mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if mount is None or "" not in own:
        return "cgroup v2: not mounted"
    own_dir = _locate(mount, own[""])
    if own_dir is None:
        return "cgroup v2: own cgroup not visible"
    try:
        available = set((own_dir / "cgroup.controllers").read_text().split())
    except OSError as exc:
        return f"cgroup v2: {exc.strerror}"
    missing = [c for c in V2_REQUIRED if c not in available]
    if missing:
        return f"cgroup v2: controllers {', '.join(missing)} not available"
    wanted = tuple(c for c in (*V2_REQUIRED, "cpu") if c in available)
    enable = " ".join(f"+{c}" for c in wanted)
    note = ""
    try:
        try:
            _write(own_dir / "cgroup.subtree_control", enable)
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            # "No internal processes": a cgroup with members cannot hand
            # controllers to children. Move this process into a leaf first,
            # as systemd's delegation rules ask delegated services to do.
            leaf = own_dir / "automation-worker"
            leaf.mkdir(exist_ok=True)
            _write(leaf / "cgroup.procs", str(os.getpid()))
            _write(own_dir / "cgroup.subtree_control", enable)
            note = f"moved this process to {leaf}"
        base = own_dir / parent
        base.mkdir(exist_ok=True)
        _write(base / "cgroup.subtree_control", enable)
        _probe_child(base)
    except OSError as exc:
        return f"cgroup v2: {exc.strerror or exc}"
    return V2Manager(base, wanted, note, _MigrationWarmup(mount, ""))
