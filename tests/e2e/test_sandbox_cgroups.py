"""The per-run cgroup: found from /proc, limits written, members listed and killed."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

from automation_server.sandbox.base import Limits
from automation_server.sandbox.cgroups import (
    NullManager,
    V1Manager,
    V2Manager,
    _locate,
    _Mount,
    _mounts,
    _own_paths,
    detect_cgroups,
)
from tests.support import skip_or_fail

MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 /docker/abc /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
PROC_CGROUP = "8:pids:/docker/abc/x\n4:memory:/m\n1:cpu,cpuacct:/\n0::/user.slice\n"


def test_reads_mounts_and_own_cgroups() -> None:
    mounts = {m.point.name: m for m in _mounts(MOUNTINFO)}
    assert mounts["cpu,cpuacct"].options >= {"cpu", "cpuacct"}
    assert mounts["unified"].fstype == "cgroup2"
    own = _own_paths(PROC_CGROUP)
    assert own == {
        "pids": "/docker/abc/x",
        "memory": "/m",
        "cpu": "/",
        "cpuacct": "/",
        "": "/user.slice",
    }
    assert _locate(mounts["memory"], own["memory"]) == Path("/sys/fs/cgroup/memory/m")
    # A bind-mounted subtree: the mount's root is stripped from our path.
    assert _locate(mounts["pids"], own["pids"]) == Path("/sys/fs/cgroup/pids/x")
    elsewhere = _Mount("/other", Path("/sys/fs/cgroup/pids"), "cgroup", frozenset({"pids"}))
    assert _locate(elsewhere, "/docker/abc") is None


def test_disabled_cgroups_give_the_null_manager() -> None:
    manager = detect_cgroups("none")
    assert isinstance(manager, NullManager) and "disabled" in manager.describe()
    assert manager.create("x", Limits()).active is False


def test_run_cgroup_limits_lists_and_kills_its_processes() -> None:
    manager = detect_cgroups("auto", parent="automation-sandbox-test")
    if isinstance(manager, NullManager):
        skip_or_fail(f"no usable cgroups here: {manager.describe()}")
    limits = Limits(memory_mb=100, pids_max=10, cpus=0.5)
    cgroup = manager.create("slot-test", limits)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        cgroup.attach([sleeper.pid])
        assert cgroup.pids() == [sleeper.pid]
        assert cgroup.contains(sleeper.pid)
        if isinstance(manager, V1Manager):
            dirs = {c: base / "slot-test" for c, base in manager.bases.items()}
            if "memory" in dirs:
                limit = (dirs["memory"] / "memory.limit_in_bytes").read_text()
                assert int(limit) == 100 << 20
            if "pids" in dirs:
                assert (dirs["pids"] / "pids.max").read_text().strip() == "12"
            if "cpu" in dirs:
                assert (dirs["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
        elif isinstance(manager, V2Manager):
            path = manager.base / "slot-test"
            assert int((path / "memory.max").read_text()) == 100 << 20
            assert (path / "pids.max").read_text().strip() == "12"
        assert not cgroup.oom_killed()
    finally:
        cgroup.remove()
    assert sleeper.wait(timeout=5) == -9  # remove() kills what is left
    paths = [Path(p.strip()) for p in cgroup.path.split(",")]
    deadline = time.monotonic() + 2
    while any(p.exists() for p in paths) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(p.exists() for p in paths)
    bases = manager.bases.values() if isinstance(manager, V1Manager) else [manager.base]
    for base in bases:  # the test's own parent directory
        with contextlib.suppress(OSError):
            base.rmdir()


def test_the_migration_note_says_whether_favordynmods_is_on() -> None:
    from automation_server.sandbox.cgroups import migration_note

    off = migration_note(_mounts(MOUNTINFO))
    assert "favordynmods off" in off and "/sys/fs/cgroup/unified" in off
    on = migration_note(_mounts(MOUNTINFO.replace("cgroup2 rw", "cgroup2 rw,favordynmods")))
    assert on.startswith("favordynmods on")
