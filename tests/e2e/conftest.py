"""Fixtures for end-to-end tests: API + worker + real bubblewrap in one process."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from automation_server.sandbox.probe import probe_bwrap
from automation_server.services import Services, build_services
from automation_server.worker.build import build_worker
from automation_server.worker.worker import Worker
from tests.support import LiveServer, live_server, reachable_by_sandbox, settings_for, skip_or_fail

FINISHED = {"succeeded", "failed", "timed_out", "cancelled", "skipped"}


def require_bwrap() -> None:
    result = probe_bwrap(None, 200_000 if os.geteuid() == 0 else None)
    if not result.works:
        skip_or_fail(f"bubblewrap sandbox unavailable: {result.error}")


@dataclass
class Stack:
    server: LiveServer
    services: Services
    worker: Worker
    http: httpx.Client

    def upload(self, files: dict[str, str | bytes]) -> str:
        from tests.support import targz

        r = self.http.post("/v1/uploads", content=targz(files))
        assert r.status_code == 201, r.text
        return str(r.json()["ref"])

    def create(self, **body: Any) -> dict[str, Any]:
        r = self.http.post("/v1/automations", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def dispatch(self, automation_id: str, **body: Any) -> dict[str, Any]:
        r = self.http.post(f"/v1/automations/{automation_id}/dispatch", json=body)
        assert r.status_code == 202, r.text
        return dict(r.json())

    def wait(
        self,
        run_id: str,
        timeout: float = 60,
        until: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        done = until or (lambda run: run["status"] in FINISHED)
        deadline = time.monotonic() + timeout
        while True:
            run = self.http.get(f"/v1/runs/{run_id}").json()
            if done(run):
                return dict(run)
            assert time.monotonic() < deadline, f"run still {run['status']}: {run}"
            time.sleep(0.05)

    def log(self, run_id: str) -> str:
        return self.http.get(f"/v1/runs/{run_id}/logs").text


def make_stack(data_dir: Path, database_url: str, **env: str) -> Iterator[Stack]:
    reachable_by_sandbox(data_dir)  # environments are bind-mounted from <data dir>/envs
    settings = settings_for(
        data_dir,
        database_url,
        env={
            "AUTOMATION_KILL_GRACE_S": "0.5",
            "AUTOMATION_HEARTBEAT_S": "0.5",
            "AUTOMATION_POLL_S": "0.2",
            "AUTOMATION_WORKER_CONCURRENCY": "2",
            **env,
        },
    )
    services = build_services(settings)
    worker = build_worker(services)
    services.start_listener()
    worker.start()
    try:
        with live_server(services) as server:
            yield Stack(server, services, worker, server.client(server.new_key("acme")))
    finally:
        worker.stop(grace_s=5)
        services.close()


@pytest.fixture
def stack(data_dir: Path, database_url: str) -> Iterator[Stack]:
    """Server and worker with the bubblewrap sandbox, on SQLite and on PostgreSQL."""
    require_bwrap()
    yield from make_stack(data_dir, database_url)
