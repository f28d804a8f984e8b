"""After a run: its tmpfs, cgroup and uid slot are released, soon after it returns."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from automation_server.sandbox.bwrap import BwrapExecutor, BwrapSettings
from tests.e2e.sandbox_support import GRACE_S, bwrap_executor, make_spec, require_root, run


def _mounted_under(directory: Path) -> list[str]:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p.startswith(str(directory))]


def _slot_locked(executor: BwrapExecutor, slot: int) -> bool:
    fd = os.open(executor.slots.lock_dir / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_mount_cgroup_and_slot_are_released_after_the_run(tmp_path: Path) -> None:
    require_root(bwrap_executor())
    executor = BwrapExecutor(BwrapSettings(grace_s=GRACE_S, cgroup_parent="automation-cleanup"))
    assert executor.workdir_mode == "tmpfs"
    spec = make_spec(tmp_path, {"main.py": "import os\nprint(os.getuid())\n"})
    outcome = run(executor, spec)
    assert outcome.status == "succeeded", outcome.log
    assert executor.wait_cleaned(10)
    assert _mounted_under(executor.mounts_dir) == []
    bases = getattr(executor.cgroups, "bases", {})
    assert not [d for base in bases.values() for d in base.iterdir() if d.is_dir()]
    assert not any(_slot_locked(executor, slot) for slot in range(4))


def test_many_runs_leave_nothing_behind(tmp_path: Path) -> None:
    require_root(bwrap_executor())
    executor = BwrapExecutor(BwrapSettings(grace_s=GRACE_S, cgroup_parent="automation-cleanup"))
    for i in range(12):
        (tmp_path / str(i)).mkdir()
        outcome = run(executor, make_spec(tmp_path / str(i), {"main.py": "print('ok')\n"}))
        assert outcome.status == "succeeded", outcome.log
    assert executor.wait_cleaned(10)
    assert _mounted_under(executor.mounts_dir) == []
    bases = getattr(executor.cgroups, "bases", {})
    assert not [d for base in bases.values() for d in base.iterdir() if d.is_dir()]
