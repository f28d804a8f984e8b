"""Retries, concurrency policy and cancellation, with a real worker and bubblewrap."""

from __future__ import annotations

import itertools
import os
import time

from tests.e2e.conftest import Stack

FLAKY = """
import os, sys
attempt = int(os.environ["AUTOMATION_ATTEMPT"])
print("attempt", attempt)
sys.exit(0 if attempt >= 3 else 1)
"""


def test_retries_with_backoff_until_the_third_attempt_succeeds(stack: Stack) -> None:
    auto = stack.create(
        name="flaky",
        tarball=stack.upload({"main.py": FLAKY}),
        retry={"max_attempts": 5, "backoff_s": 0.3},
    )
    run = stack.wait(stack.dispatch(auto["id"])["id"], timeout=60)
    assert run["status"] == "succeeded" and run["attempt"] == 3
    assert [(a["attempt"], a["status"], a["exit_code"]) for a in run["attempts"]] == [
        (1, "failed", 1),
        (2, "failed", 1),
    ]
    assert all(a["started_at"] and a["finished_at"] for a in run["attempts"])
    # Backoff: the second attempt started at least ~0.15 s (jittered 0.3 s) after the first ended.
    assert run["attempts"][1]["started_at"] > run["attempts"][0]["finished_at"]
    assert "attempt 3" in stack.log(run["id"])


def test_retries_stop_at_max_attempts(stack: Stack) -> None:
    auto = stack.create(
        name="broken",
        tarball=stack.upload({"main.py": "raise SystemExit(2)"}),
        retry={"max_attempts": 2, "backoff_s": 0},
    )
    run = stack.wait(stack.dispatch(auto["id"])["id"], timeout=60)
    assert (run["status"], run["attempt"], len(run["attempts"])) == ("failed", 2, 1)


def test_timed_out_runs_are_retried_too(stack: Stack) -> None:
    script = "import os, time\nif os.environ['AUTOMATION_ATTEMPT'] == '1': time.sleep(30)\n"
    auto = stack.create(
        name="slow-once",
        tarball=stack.upload({"main.py": script}),
        timeout_s=1,
        retry={"max_attempts": 2, "backoff_s": 0},
    )
    run = stack.wait(stack.dispatch(auto["id"])["id"], timeout=60)
    assert run["status"] == "succeeded" and run["attempts"][0]["status"] == "timed_out"


def test_queue_policy_runs_one_at_a_time_in_order(stack: Stack) -> None:
    script = "import time; time.sleep(0.3)"
    auto = stack.create(
        name="serial",
        tarball=stack.upload({"main.py": script}),
        concurrency={"max_running": 1, "on_overlap": "queue"},
    )
    ids = [stack.dispatch(auto["id"])["id"] for _ in range(4)]
    runs = [stack.wait(i, timeout=60) for i in ids]
    assert all(r["status"] == "succeeded" for r in runs)
    for earlier, later in itertools.pairwise(runs):
        assert later["started_at"] >= earlier["finished_at"], "two runs overlapped"


def test_cancel_a_running_run_kills_it_quickly(stack: Stack) -> None:
    script = "import time\nprint('started', flush=True)\ntime.sleep(120)"
    auto = stack.create(name="long", tarball=stack.upload({"main.py": script}))
    run_id = stack.dispatch(auto["id"])["id"]
    stack.wait(run_id, until=lambda r: r["status"] == "running" and r["log_bytes"] >= 0)
    time.sleep(0.5)  # let the sandbox start the script
    asked = time.monotonic()
    r = stack.http.post(f"/v1/runs/{run_id}/cancel")
    assert r.status_code == 202
    run = stack.wait(run_id, timeout=30)
    took = time.monotonic() - asked
    assert run["status"] == "cancelled", run
    assert took < 3.0, f"cancel took {took:.1f} s"
    assert stack.http.post(f"/v1/runs/{run_id}/cancel").status_code == 409
    assert not _sandbox_processes_left()


def _sandbox_processes_left() -> list[int]:
    """Live (non-zombie) processes running as a sandbox uid (200000 and up) on this host."""
    if os.geteuid() != 0:
        return []
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            uid = int(fields["Uid"].split()[0])
            if fields["State"].strip().startswith("Z"):
                continue
        except (OSError, KeyError, ValueError):
            continue
        if 200_000 <= uid < 300_000:
            left.append(int(pid))
    return left


def test_workers_endpoint_shows_this_worker(stack: Stack) -> None:
    items = stack.http.get("/v1/workers").json()["items"]
    mine = next(w for w in items if w["id"] == stack.worker.id)
    assert mine["alive"] and mine["pid"] == os.getpid() and mine["concurrency"] == 2
    reader = stack.server.client(stack.server.new_key("acme", scope="write"))
    assert reader.get("/v1/workers").status_code == 403
