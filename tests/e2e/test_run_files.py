"""Where a run's host files live: in memory with per-run tmpfs workdirs, gone after it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from automation_server.sandbox.bwrap import BwrapExecutor, BwrapSettings
from tests.e2e.conftest import Stack
from tests.e2e.sandbox_support import bwrap_executor, require_root

PROGRAM = """
import json, os, time
from automation_sdk import report
report.output("payload", json.load(open(os.environ["AUTOMATION_PAYLOAD"])))
time.sleep(1.5)
"""


def _mounts() -> dict[str, str]:
    """Mount point -> file system type, as this process sees them."""
    found = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        tail = fields[fields.index("-") + 1 :]
        found[fields[4]] = tail[0]
    return found


def _eventually(check: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_a_runs_host_files_are_in_memory_and_removed_after_it(stack: Stack, data_dir: Path) -> None:
    executor = stack.worker._execution._executor
    assert isinstance(executor, BwrapExecutor)
    require_root(executor)
    scratch = executor.scratch_dir
    assert scratch is not None, "a root worker with tmpfs workdirs keeps run files in memory"
    assert _mounts().get(str(scratch.parent)) == "tmpfs"

    auto = stack.create(name="files", tarball=stack.upload({"main.py": PROGRAM}))
    run = stack.dispatch(auto["id"], payload={"n": 7})
    stack.wait(run["id"], until=lambda r: r["status"] == "running")
    # While it runs, its payload is in memory and nothing of it is under the data dir.
    assert _eventually(lambda: (scratch / run["id"] / "payload.json").is_file())
    on_disk = [p for p in (data_dir / "work").rglob("*") if run["id"] in str(p)]
    assert on_disk == []

    done = stack.wait(run["id"])
    assert done["status"] == "succeeded", stack.log(run["id"])
    assert done["outputs"] == {"payload": {"n": 7}}
    assert _eventually(lambda: not (scratch / run["id"]).exists()), os.listdir(scratch)


def test_workers_of_a_host_share_one_scratch_mount() -> None:
    require_root(bwrap_executor())
    first = BwrapExecutor(BwrapSettings(cgroup="none"))
    second = BwrapExecutor(BwrapSettings(cgroup="none"))
    assert first.scratch_dir is not None and second.scratch_dir is not None
    point = first.scratch_dir.parent
    assert second.scratch_dir.parent == point
    # Mounted once: a second mount over the first would hide its files.
    stacked = [
        line for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4] == str(point)
    ]  # fmt: skip
    assert len(stacked) == 1, stacked
    (first.scratch_dir / "kept").write_text("x")
    assert (first.scratch_dir / "kept").read_text() == "x"


def test_without_tmpfs_workdirs_run_files_stay_on_disk() -> None:
    executor = BwrapExecutor(BwrapSettings(workdir="monitor", cgroup="none"))
    assert executor.scratch_dir is None
