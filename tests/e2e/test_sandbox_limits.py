"""Resource limits, timeouts and cancellation hold, and nothing of a run outlives it."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

from automation_server.sandbox.base import Outcome
from tests.e2e.sandbox_support import (
    GRACE_S,
    SMALL,
    Background,
    bwrap_executor,
    make_spec,
    processes_matching,
    processes_with_uid,
    run,
    run_uids,
)


def test_fork_bomb_is_contained_and_cleaned_up(tmp_path: Path) -> None:
    executor = bwrap_executor()
    limits = replace(SMALL, pids_max=32)
    spec = make_spec(
        tmp_path,
        {
            "main.py": """
            import os
            print("bombing", flush=True)
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
            """
        },
        limits=limits,
        timeout_s=2,
    )
    background = Background(executor, spec)
    background.wait_for_output("bombing")
    time.sleep(0.7)
    per_uid: dict[int, int] = {}
    if executor.privileged:  # one uid per run: its processes can be counted
        for uid in processes_with_uid(run_uids(executor)).values():
            per_uid[uid] = per_uid.get(uid, 0) + 1
        # Several runs could be going at once: the busiest uid is the bomb.
        assert 0 < max(per_uid.values(), default=0) <= limits.pids_max + 2, per_uid
    subprocess.run(["true"], check=True)  # the host can still start processes
    outcome = background.result()
    assert outcome.status == "timed_out"
    assert outcome.duration_ms < (2 + GRACE_S + 3) * 1000
    if per_uid:
        assert not processes_with_uid(range(min(per_uid), max(per_uid) + 1))


def test_memory_hog_fails_with_the_memory_limit(tmp_path: Path) -> None:
    executor = bwrap_executor()
    limits = replace(SMALL, memory_mb=64)
    spec = make_spec(
        tmp_path,
        {
            "main.py": "print('allocating', flush=True)\n"
            "hog = b'x' * (512 << 20)\n"
            "print('survived')\n"
        },
        limits=limits,
    )
    outcome = run(executor, spec)
    assert outcome.status == "failed"
    assert b"survived" not in outcome.log
    if executor.cgroups.kind != "none":
        assert outcome.error is not None
        assert outcome.error.startswith("memory limit of 64 MB exceeded"), outcome.error


def test_loop_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    spec = make_spec(
        tmp_path,
        {
            "main.py": """
            import signal
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("spinning", flush=True)
            while True:
                pass
            """
        },
        timeout_s=1,
    )
    start = time.monotonic()
    outcome = run(bwrap_executor(), spec)
    elapsed = time.monotonic() - start
    assert outcome.status == "timed_out"
    assert outcome.error == f"timed out after 1 s; killed {GRACE_S:g} s after SIGTERM"
    assert outcome.exit_code == 137
    assert 1 + GRACE_S <= elapsed < 1 + GRACE_S + 2
    assert outcome.log == b"spinning\n"


def test_program_that_obeys_sigterm_ends_timed_out_at_once(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, {"main.py": "import time\ntime.sleep(60)\n"}, timeout_s=0.5)
    outcome = run(bwrap_executor(), spec)
    assert (outcome.status, outcome.exit_code) == ("timed_out", 128 + 15)
    assert outcome.error == "timed out after 0.5 s"
    assert outcome.duration_ms < 0.5 * 1000 + GRACE_S * 1000


def test_daemonised_child_does_not_outlive_the_run(tmp_path: Path) -> None:
    executor = bwrap_executor()
    marker = f"daemon-{uuid.uuid4().hex}"
    spec = make_spec(
        tmp_path,
        {
            "main.py": f"""
            import os, time
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.closerange(0, 3)
                    os.execv("/usr/bin/python3",
                             ["python3", "-c", "import time; time.sleep(120)", {marker!r}])
                os._exit(0)
            os.wait()
            print("spawned", flush=True)
            time.sleep(0.5)
            """
        },
    )
    background = Background(executor, spec)
    background.wait_for_output("spawned")
    # The grandchild may still be between fork and exec when "spawned" is printed.
    deadline = time.monotonic() + 10
    daemons = processes_matching(lambda cmd: marker.encode() in cmd)
    while not daemons and time.monotonic() < deadline:
        time.sleep(0.05)
        daemons = processes_matching(lambda cmd: marker.encode() in cmd)
    assert len(daemons) == 1, "the daemon should be running while the run is"
    status = Path(f"/proc/{daemons[0]}/status").read_text()
    uid = int(next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1])
    outcome = background.result()
    assert outcome.status == "succeeded", outcome.log
    assert processes_matching(lambda cmd: marker.encode() in cmd) == []
    if executor.privileged:  # the uid is the run's alone: nothing of it may be left
        assert processes_with_uid(range(uid, uid + 1)) == {}
    if executor.cgroups.kind == "v1":
        # The cgroup goes while the caller records the result (the sandbox's janitor).
        assert executor.wait_cleaned(10)
        slot = f"slot-{uid - executor.settings.uid_base}"
        for base in executor.cgroups.bases.values():  # type: ignore[attr-defined]
            assert not (base / slot).exists(), f"cgroup {base / slot} was left behind"


def test_disk_caps_hold_for_workdir_output_and_tmp(tmp_path: Path) -> None:
    limits = replace(SMALL, workdir_mb=16, tmp_mb=8)
    spec = make_spec(
        tmp_path,
        {
            "main.py": """
            import errno, json, os
            def fill(path):
                written = 0
                try:
                    with open(path, "wb") as fh:
                        for _ in range(64):
                            fh.write(b"x" * (1 << 20))
                            fh.flush()
                            written += 1 << 20
                    return {"error": None, "mb": written >> 20}
                except OSError as exc:
                    return {"error": errno.errorcode[exc.errno], "mb": written >> 20}
            results = {
                "work": fill("/work/big"),
                "output": fill(os.environ["AUTOMATION_OUTPUT_DIR"] + "/big"),
                "tmp": fill("/tmp/big"),
                "shm": fill("/dev/shm/big"),
            }
            print(json.dumps(results))
            """
        },
        limits=limits,
    )
    outcome = run(bwrap_executor(), spec)
    assert outcome.status == "succeeded", outcome.log
    results = json.loads(outcome.log)
    for name in ("work", "output"):
        assert results[name]["error"] in ("ENOSPC", "EFBIG"), results
    # workdir and output share the 16 MB (the first fill took most of it).
    assert results["work"]["mb"] + results["output"]["mb"] <= 16
    for name in ("tmp", "shm"):
        assert results[name]["error"] == "ENOSPC" and results[name]["mb"] <= 8, results
    assert not (spec.workdir / "big").exists()  # the host copy was never written to


def test_cpu_time_limit_stops_a_busy_program(tmp_path: Path) -> None:
    spec = make_spec(
        tmp_path, {"main.py": "while True:\n    pass\n"}, limits=replace(SMALL, cpu_seconds=1)
    )
    outcome = run(bwrap_executor(), spec)
    assert (outcome.status, outcome.exit_code) == ("failed", 152)
    assert outcome.error == "CPU time limit of 1 s exceeded (exit code 152)"


def test_cancel_stops_the_run_promptly(tmp_path: Path) -> None:
    spec = make_spec(
        tmp_path, {"main.py": "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"}
    )
    background = Background(bwrap_executor(), spec)
    background.wait_for_output("ready")
    cancelled_at = time.monotonic()
    background.cancel.set()
    outcome = background.result()
    assert time.monotonic() - cancelled_at < 1.5
    assert (outcome.status, outcome.error) == ("cancelled", "cancelled")
    assert outcome.log == b"ready\n"


def test_cancel_before_start_runs_nothing(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, {"main.py": "open('/work/ran', 'w')\n"})
    cancel = threading.Event()
    cancel.set()
    outcome = bwrap_executor().run(spec, cancel=cancel)
    assert (outcome.status, outcome.exit_code, outcome.duration_ms) == ("cancelled", None, 0)


def test_concurrent_runs_are_independent(tmp_path: Path) -> None:
    executor = bwrap_executor()
    specs = [
        make_spec(
            tmp_path / str(i),
            {"main.py": f"import time\ntime.sleep(0.5)\nprint({i})\nraise SystemExit({i})\n"},
        )
        for i in range(4)
        if (tmp_path / str(i)).mkdir() is None
    ]
    outcomes: list[Outcome | None] = [None] * len(specs)

    def go(i: int) -> None:
        outcomes[i] = run(executor, specs[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(specs))]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert time.monotonic() - start < 4 * 0.5 + 1.0  # they ran side by side
    for i, outcome in enumerate(outcomes):
        assert outcome is not None and outcome.exit_code == i and outcome.log == f"{i}\n".encode()
