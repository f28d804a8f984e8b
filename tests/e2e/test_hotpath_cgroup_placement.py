"""Born in the run's cgroup: every process of a run is in all of its cgroups, the
starting thread goes back to its own, and a thread that cannot move falls back to
moving the processes (cgroup v1's thread placement, see cgroup_v1.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

from automation_server.sandbox.base import Limits
from automation_server.sandbox.bwrap import BwrapExecutor, BwrapSettings
from automation_server.sandbox.cgroups import V1Cgroup, V1Manager, detect_cgroups
from tests.e2e.sandbox_support import Background, bwrap_executor, make_spec, unavailable

PARENT = "automation-sandbox-hotpath"


def _thread_cgroups() -> str:
    return Path("/proc/thread-self/cgroup").read_text()


def _all_threads_outside(marker: str) -> bool:
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            if marker in (task / "cgroup").read_text():
                return False
    return True


def _v1_manager() -> V1Manager:
    manager = detect_cgroups("auto", parent=PARENT)
    if not isinstance(manager, V1Manager):
        unavailable(f"needs cgroup v1 for thread placement: {manager.describe()}")
    assert isinstance(manager, V1Manager)
    return manager


def _cleanup(manager: V1Manager) -> None:
    for base in manager.bases.values():
        with contextlib.suppress(OSError):
            base.rmdir()


def test_a_process_started_while_spawning_is_born_in_every_run_cgroup() -> None:
    manager = _v1_manager()
    cgroup = manager.create("slot-placement", Limits(pids_max=8))
    assert isinstance(cgroup, V1Cgroup)
    before = _thread_cgroups()
    sleeper: subprocess.Popen[bytes] | None = None
    try:
        with cgroup.spawning() as born_inside:
            assert born_inside
            sleeper = subprocess.Popen(["sleep", "30"])
        assert _thread_cgroups() == before  # the thread went home
        assert _all_threads_outside("/slot-placement")
        for directory in cgroup.dirs.values():
            procs = (directory / "cgroup.procs").read_text().split()
            assert procs == [str(sleeper.pid)], (directory, procs)
        assert str(os.getpid()) not in (cgroup.dirs["pids"] / "cgroup.procs").read_text()
    finally:
        cgroup.remove()
        if sleeper is not None:
            sleeper.wait(timeout=5)
        _cleanup(manager)


def test_a_thread_that_cannot_move_falls_back_and_stays_home() -> None:
    manager = _v1_manager()
    cgroup = manager.create("slot-fallback", Limits(pids_max=8))
    assert isinstance(cgroup, V1Cgroup)
    before = _thread_cgroups()
    try:
        no_hierarchies = V1Cgroup(cgroup.dirs, {})
        with no_hierarchies.spawning() as born_inside:
            assert not born_inside
            assert _thread_cgroups() == before
        # A hierarchy whose move fails half-way: the moved ones are undone.
        broken = dict(cgroup.dirs)
        broken["cpu"] = cgroup.dirs["pids"] / "missing"
        partial = V1Cgroup(broken, manager.hierarchies)
        with partial.spawning() as born_inside:
            assert not born_inside
            assert _thread_cgroups() == before
        assert _thread_cgroups() == before
    finally:
        cgroup.remove()
        _cleanup(manager)


def test_every_process_of_a_sandboxed_run_is_in_all_its_cgroups(tmp_path: Path) -> None:
    bwrap_executor()  # skips (or fails under CI) without a working sandbox
    # Its own cgroup parent, so only this run's cgroup is under it; slots are
    # shared with other executors through their locks as usual.
    executor = BwrapExecutor(BwrapSettings(grace_s=0.5, cgroup_parent=PARENT))
    if not isinstance(executor.cgroups, V1Manager):
        unavailable(f"needs cgroup v1: {executor.cgroups.describe()}")
    assert isinstance(executor.cgroups, V1Manager)
    spec = make_spec(
        tmp_path,
        {"main.py": "import subprocess, time\nprint('up', flush=True)\ntime.sleep(2)\n"},
    )
    background = Background(executor, spec)
    try:
        background.wait_for_output("up")
        slots = [d for d in executor.cgroups.bases["pids"].iterdir() if d.is_dir()]
        assert len(slots) == 1, slots
        slot = slots[0].name
        pids = [int(p) for p in (slots[0] / "cgroup.procs").read_text().split()]
        # bubblewrap's monitor, the sandbox's PID 1 and the program at least
        assert len(pids) >= 3, pids
        for pid in pids:
            text = Path(f"/proc/{pid}/cgroup").read_text()
            for controller in executor.cgroups.bases:
                line = next(
                    ln for ln in text.splitlines() if controller in ln.split(":")[1].split(",")
                )
                assert line.endswith(f"/{PARENT}/{slot}"), (pid, controller, text)
        assert _all_threads_outside(f"/{PARENT}/")
        outcome = background.result()
        assert outcome.status == "succeeded", outcome
    finally:
        background.cancel.set()
        with contextlib.suppress(Exception):
            background.result()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(
            d.is_dir() for b in executor.cgroups.bases.values() for d in b.iterdir()
        ):
            time.sleep(0.01)
        _cleanup(executor.cgroups)
