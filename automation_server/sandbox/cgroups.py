"""A control group per run: limits for the run as a whole and the list of its processes.

Three managers behind one interface: cgroup v2 (when its memory and pids
controllers are available to us), v1 (separate ``memory``, ``pids`` and
``cpu`` hierarchies) and a null one when neither may be used (an unprivileged
worker without delegation): then rlimits and the PID namespace do the work.

bubblewrap is born inside the run's cgroup where the manager can arrange it
(:meth:`RunCgroup.spawning`; v1 moves the starting thread alone, which needs
no RCU grace period); otherwise the worker moves bubblewrap's two processes
into the cgroup while bubblewrap holds the sandbox at ``--block-fd`` (mounts
done, program not yet forked). Either way the program and everything it
forks are born inside; see :mod:`automation_server.sandbox.bwrap`.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from automation_server.errors import SandboxError
from automation_server.sandbox.cgroup_base import (
    BWRAP_PROCESSES,
    V1_CONTROLLERS,
    V2_REQUIRED,
    CgroupManager,
    CgroupMode,
    NullCgroup,
    NullManager,
    RunCgroup,
    _write,
    in_cgroup,
    locate_in_mount,
    parse_proc_cgroup,
    signal_if_member,
)
from automation_server.sandbox.cgroup_v1 import V1Cgroup, V1Manager
from automation_server.sandbox.cgroup_v2 import V2Cgroup, V2Manager

__all__ = [
    "BWRAP_PROCESSES",
    "CgroupManager",
    "CgroupMode",
    "NullCgroup",
    "NullManager",
    "RunCgroup",
    "V1Cgroup",
    "V1Manager",
    "V2Cgroup",
    "V2Manager",
    "detect_cgroups",
    "in_cgroup",
    "migration_note",
    "signal_if_member",
]


# --- detection --------------------------------------------------------------------


def migration_note(mounts: list[_Mount]) -> str:
    """Every move of a process into a cgroup waits for an RCU grace period (~10 ms
    here) unless a cgroup2 hierarchy is mounted with ``favordynmods`` (a global
    kernel setting, Linux 6.0+): then a move takes ~0.1 ms. Say which applies."""
    v2 = [m for m in mounts if m.fstype == "cgroup2"]
    if any("favordynmods" in m.options for m in v2):
        return "favordynmods on: fast migrations"
    target = v2[0].point if v2 else None
    how = f"mount -o remount,favordynmods {target}" if target else "a cgroup2 mount"
    return f"favordynmods off: each run pays ~10 ms moving into its cgroup ({how} as root)"


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
    return parse_proc_cgroup(proc_cgroup)


def _locate(mount: _Mount, own: str) -> Path | None:
    return locate_in_mount(mount.root, mount.point, own)


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
    hierarchies: dict[str, tuple[str, Path]] = {}
    problems = []
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
        hierarchies[controller] = (mount.root, mount.point)
    if "memory" not in bases and "pids" not in bases:
        return "cgroup v1: " + (", ".join(problems) or "no controllers")
    return V1Manager(bases, migration_note(mounts), hierarchies)


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
    extra = migration_note(mounts)
    return V2Manager(base, wanted, "; ".join(n for n in (note, extra) if n))
