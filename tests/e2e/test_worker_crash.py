"""Worker processes killed or stopped mid-run on PostgreSQL: runs are never lost."""

from __future__ import annotations

import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from automation_server.services import build_services
from tests.e2e.conftest import require_bwrap
from tests.e2e.processes import Proc, process_env, start
from tests.support import LiveServer, live_server, settings_for, targz

LONG = """
import os, time
print("attempt", os.environ["AUTOMATION_ATTEMPT"], "start", flush=True)
time.sleep(float(os.environ.get("SLEEP", "3")))
print("attempt", os.environ["AUTOMATION_ATTEMPT"], "done", flush=True)
"""


def _wait(http: httpx.Client, run_id: str, until: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = http.get(f"/v1/runs/{run_id}").json()
        if until(run):
            return dict(run)
        assert time.monotonic() < deadline, run
        time.sleep(0.05)


def _worker_holding(procs: list[Proc], run_id: str) -> Proc:
    for _ in range(200):
        for proc in procs:
            if any(
                e.get("event") == "run.started" and e.get("run_id") == run_id for e in proc.events()
            ):
                return proc
        time.sleep(0.05)
    raise AssertionError("no worker started the run")


def _setup(server: LiveServer, **extra: Any) -> tuple[httpx.Client, str]:
    http = server.client(server.new_key())
    ref = http.post("/v1/uploads", content=targz({"main.py": LONG})).json()["ref"]
    auto = http.post("/v1/automations", json={"name": "long", "tarball": ref, **extra}).json()
    return http, auto["id"]


def test_sigkilled_worker_run_is_recovered_by_another(tmp_path: Path, pg_url: str) -> None:
    require_bwrap()
    data_dir = tmp_path / "var"
    env = process_env(
        data_dir,
        pg_url,
        AUTOMATION_LEASE_S="3",
        AUTOMATION_HEARTBEAT_S="0.5",
        AUTOMATION_WORKER_CONCURRENCY="1",
    )
    services = build_services(settings_for(data_dir, pg_url))
    procs = [start(["worker"], env, tmp_path, f"w{i}") for i in range(2)]
    try:
        with live_server(services) as server:
            # One attempt only: a lost worker is the platform's failure, not the user's.
            http, automation_id = _setup(server, retry={"max_attempts": 1})
            run_id = http.post(f"/v1/automations/{automation_id}/dispatch").json()["id"]
            _wait(http, run_id, lambda r: r["status"] == "running")
            victim = _worker_holding(procs, run_id)
            time.sleep(0.5)
            victim.signal(signal.SIGKILL)
            died = time.time()
            rerun = _wait(http, run_id, lambda r: r["attempt"] == 2 and r["status"] == "running")
            restarted = datetime.fromisoformat(rerun["started_at"].replace("Z", "+00:00"))
            recovery_s = restarted.timestamp() - died
            run = _wait(http, run_id, lambda r: r["status"] == "succeeded")
            assert run["attempts"][0]["error"].startswith("worker lost")
            assert run["attempts"][0]["status"] == "failed"
            assert run["attempts"][0]["origin"] == "infrastructure"
            assert run["failure_origin"] is None
            log = http.get(f"/v1/runs/{run_id}/logs").text
            assert "attempt 2 done" in log
            print(f"recovery after SIGKILL: {recovery_s:.2f} s (lease 3 s)")
            assert recovery_s < 3 + 2 + 1  # lease + heartbeat/reaper cadence + slack
    finally:
        for proc in procs:
            proc.stop()
        services.close()


def test_a_lost_run_past_the_platform_retry_limit_fails_as_infrastructure(
    tmp_path: Path, pg_url: str
) -> None:
    require_bwrap()
    data_dir = tmp_path / "var"
    env = process_env(
        data_dir,
        pg_url,
        AUTOMATION_MAX_INFRA_ATTEMPTS="1",
        AUTOMATION_LEASE_S="2",
        AUTOMATION_HEARTBEAT_S="0.5",
        AUTOMATION_WORKER_CONCURRENCY="1",
    )
    services = build_services(settings_for(data_dir, pg_url))
    procs = [start(["worker"], env, tmp_path, "w0")]
    try:
        with live_server(services) as server:
            http, automation_id = _setup(server)
            run_id = http.post(f"/v1/automations/{automation_id}/dispatch").json()["id"]
            _wait(http, run_id, lambda r: r["status"] == "running")
            procs[0].signal(signal.SIGKILL)
            procs.append(start(["worker"], env, tmp_path, "w1"))  # its reaper finds the run
            run = _wait(http, run_id, lambda r: r["status"] == "failed", timeout=30)
            assert run["error"].startswith("worker lost") and run["attempt"] == 1
            assert run["failure_origin"] == "infrastructure"
    finally:
        for proc in procs:
            proc.stop()
        services.close()


def test_sigterm_hands_the_run_back_to_another_worker(tmp_path: Path, pg_url: str) -> None:
    require_bwrap()
    data_dir = tmp_path / "var"
    env = process_env(
        data_dir,
        pg_url,
        AUTOMATION_SHUTDOWN_GRACE_S="1",
        AUTOMATION_WORKER_CONCURRENCY="1",
        AUTOMATION_KILL_GRACE_S="0.5",
    )
    services = build_services(settings_for(data_dir, pg_url))
    first = start(["worker"], env, tmp_path, "first")
    procs = [first]
    try:
        with live_server(services) as server:
            http, automation_id = _setup(server, env={"SLEEP": "4"})
            run_id = http.post(f"/v1/automations/{automation_id}/dispatch").json()["id"]
            _wait(http, run_id, lambda r: r["status"] == "running")
            time.sleep(0.5)
            procs.append(start(["worker"], env, tmp_path, "second"))
            assert first.stop(timeout=30) == 0
            assert any(e.get("event") == "run.handed_back" for e in first.events())
            run = _wait(http, run_id, lambda r: r["status"] == "succeeded")
            assert run["attempt"] == 1 and run["attempts"] == []  # not counted as an attempt
            assert "attempt 1 done" in http.get(f"/v1/runs/{run_id}/logs").text
    finally:
        for proc in procs:
            proc.stop()
        services.close()
