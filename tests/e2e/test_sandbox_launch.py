"""How bubblewrap gets the run's host uid and rlimits: both ways give the same sandbox.

A root worker switches the starting thread alone to the run's uid and sets
the rlimits with prlimit(2) on bubblewrap's held processes (no exec); the
fallback execs ``setpriv`` and ``prlimit``. Either way the program must run as
the run's host uid with exactly the run's limits, and the worker must stay
root in every thread.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from automation_server.errors import SandboxError
from automation_server.sandbox import thread_ids
from automation_server.sandbox.bwrap import BwrapExecutor, BwrapSettings
from automation_server.sandbox.launch import MIB
from automation_server.sandbox.thread_ids import ThreadIds
from tests.e2e.sandbox_support import (
    GRACE_S,
    SMALL,
    Background,
    bwrap_executor,
    make_spec,
    processes_with_uid,
    require_root,
    run,
    run_uids,
)

LIMITS_PROBE = """
import json, resource
names = ["CORE", "CPU", "NOFILE", "FSIZE", "NPROC"]
print(json.dumps({n: list(resource.getrlimit(getattr(resource, "RLIMIT_" + n))) for n in names}))
"""


def _executor(mode: str) -> BwrapExecutor:
    executor = bwrap_executor()
    require_root(executor)
    if mode == "thread":
        if executor.launcher.thread_ids is None:
            pytest.fail("a root worker on this machine should switch thread ids")
        return executor
    exec_chain = BwrapExecutor(BwrapSettings(grace_s=GRACE_S))
    exec_chain.launcher = dataclasses.replace(exec_chain.launcher, thread_ids=None)
    assert exec_chain.launcher.setpriv and exec_chain.launcher.prlimit
    return exec_chain


@pytest.mark.parametrize("mode", ["thread", "exec"])
def test_the_program_has_exactly_the_run_limits(tmp_path: Path, mode: str) -> None:
    limits = replace(SMALL, cpu_seconds=7, nofile=200, workdir_mb=24, pids_max=40)
    outcome = run(_executor(mode), make_spec(tmp_path, {"main.py": LIMITS_PROBE}, limits=limits))
    assert outcome.status == "succeeded", outcome.log
    seen = json.loads(outcome.log)
    assert seen["CORE"] == [0, 0]
    assert seen["CPU"] == [7, 8]
    assert seen["NOFILE"] == [200, 200]
    assert seen["FSIZE"] == [24 * MIB, 24 * MIB]
    soft, hard = seen["NPROC"]
    assert soft == hard and limits.pids_max <= soft <= limits.pids_max + 4


@pytest.mark.parametrize("mode", ["thread", "exec"])
def test_the_program_runs_as_the_run_host_uid_without_groups(tmp_path: Path, mode: str) -> None:
    executor = _executor(mode)
    body = "import os, time\nprint('up', flush=True)\ntime.sleep(30)\n"
    background = Background(executor, make_spec(tmp_path, {"main.py": body}))
    background.wait_for_output("up")
    try:
        running = processes_with_uid(run_uids(executor))
        assert running, "the run's processes must belong to a run uid"
        for pid in running:
            status = dict(
                line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            )
            uids = {int(u) for u in status["Uid"].split()}
            gids = {int(g) for g in status["Gid"].split()}
            assert len(uids) == 1 and uids <= set(run_uids(executor)), status["Uid"]
            assert len(gids) == 1 and 0 not in gids, status["Gid"]
            assert status["Groups"].strip() == "", "no supplementary group of the worker"
            assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
    finally:
        background.cancel.set()
    assert background.result().status == "cancelled"


def test_every_worker_thread_stays_root(tmp_path: Path) -> None:
    executor = _executor("thread")
    before = (os.getresuid(), os.getresgid(), sorted(os.getgroups()))
    seen_elsewhere: set[int] = set()
    stop = threading.Event()

    def watch() -> None:  # another thread of the worker, looking all the while
        while not stop.is_set():
            seen_elsewhere.add(os.geteuid())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(5):
            (tmp_path / str(i)).mkdir()
            spec = make_spec(tmp_path / str(i), {"main.py": "print('ok')\n"})
            assert run(executor, spec).status == "succeeded"
    finally:
        stop.set()
        watcher.join()
    assert seen_elsewhere == {0}
    assert (os.getresuid(), os.getresgid(), sorted(os.getgroups())) == before


def test_a_spawn_that_fails_leaves_the_thread_root(tmp_path: Path) -> None:
    executor = _executor("thread")
    broken = BwrapExecutor(BwrapSettings(grace_s=GRACE_S, bwrap_path=str(tmp_path / "no-bwrap")))
    assert broken.launcher.thread_ids is not None
    with pytest.raises(SandboxError):
        run(broken, make_spec(tmp_path, {"main.py": "print('never')\n"}))
    assert os.getresuid() == (0, 0, 0)
    (tmp_path / "after").mkdir()
    assert run(executor, make_spec(tmp_path / "after", {"main.py": "print('ok')\n"})).log


def test_unknown_machines_keep_the_exec_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thread_ids.platform, "machine", lambda: "sparc64")
    assert ThreadIds.probe(200_000, 200_000) is None
    executor = BwrapExecutor(BwrapSettings(grace_s=GRACE_S))
    assert executor.launcher.thread_ids is None
    assert "setpriv" in executor.describe()
