"""Several worker processes on one PostgreSQL queue: every run executes exactly once."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from automation_server.db.models import Run
from automation_server.services import build_services
from tests.e2e.conftest import require_bwrap
from tests.e2e.processes import process_env, start
from tests.support import live_server, settings_for, targz

SCRIPT = "import os\nprint('executing', os.environ['AUTOMATION_RUN_ID'], flush=True)\n"


@pytest.mark.parametrize("worker_count", [2, 4])
def test_worker_processes_run_each_run_exactly_once(
    tmp_path: Path, pg_url: str, worker_count: int
) -> None:
    require_bwrap()
    data_dir = tmp_path / "var"
    env = process_env(
        data_dir, pg_url, AUTOMATION_WORKER_CONCURRENCY="2", AUTOMATION_HEARTBEAT_S="1"
    )
    services = build_services(settings_for(data_dir, pg_url))
    workers = [start(["worker"], env, tmp_path, f"worker{i}") for i in range(worker_count)]
    try:
        with live_server(services) as server:
            http = server.client(server.new_key())
            ref = http.post("/v1/uploads", content=targz({"main.py": SCRIPT})).json()["ref"]
            auto = http.post(
                "/v1/automations",
                json={"name": "many", "tarball": ref, "concurrency": {"max_running": 100}},
            ).json()
            ids = [
                http.post(f"/v1/automations/{auto['id']}/dispatch").json()["id"] for _ in range(120)
            ]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with services.db.read() as session:
                    statuses = collections.Counter(
                        session.scalars(select(Run.status).where(Run.automation_id == auto["id"]))
                    )
                if statuses.get("succeeded", 0) == len(ids):
                    break
                time.sleep(0.2)
            assert statuses == {"succeeded": len(ids)}, statuses
            for run_id in ids:
                run = http.get(f"/v1/runs/{run_id}").json()
                assert run["attempt"] == 1 and run["attempts"] == []
                log = http.get(f"/v1/runs/{run_id}/logs").text
                assert log.count(f"executing {run_id}") == 1
    finally:
        codes = [w.stop() for w in workers]
        services.close()
    started = collections.Counter(
        e["run_id"] for w in workers for e in w.events() if e.get("event") == "run.started"
    )
    assert set(started) == set(ids)
    assert all(count == 1 for count in started.values()), started.most_common(3)
    assert all(
        sum(1 for e in w.events() if e.get("event") == "run.started") > 0 for w in workers
    ), "every worker should have taken part"
    assert codes == [0] * worker_count
