"""A deployment over separate processes that share only PostgreSQL and S3 (moto's
threaded server, the real wire path): the topology of ``deploy/compose.yaml``,
started by ``deploy/cluster.py`` as ``make cluster`` does."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from deploy.cluster import LocalCluster, Process
from tests.e2e.conftest import FINISHED, require_bwrap
from tests.support import PG_ADMIN_URL, package_env, reachable_by_sandbox, targz

SECRET = "tok-value-123"
SCRIPT = (
    "import os\n"
    "token = os.environ['TOKEN']\n"
    "print('secret-ok', token == " + repr(SECRET) + ", os.environ['AUTOMATION_TRIGGER'])\n"
)
FAST = {
    "AUTOMATION_HEARTBEAT_S": "0.5",
    "AUTOMATION_POLL_S": "0.2",
    "AUTOMATION_KILL_GRACE_S": "0.5",
    "AUTOMATION_SHUTDOWN_GRACE_S": "5",
    "AUTOMATION_LOG_LEVEL": "info",
}
MISMATCH = "not this deployment's key"


def _postgres_reachable() -> None:
    import sqlalchemy as sa

    from tests.support import skip_or_fail

    engine = sa.create_engine(PG_ADMIN_URL)
    try:
        with engine.connect():
            pass
    except Exception as exc:
        skip_or_fail(f"PostgreSQL not reachable at {PG_ADMIN_URL} ({type(exc).__name__})")
    finally:
        engine.dispose()


@pytest.fixture
def start_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., LocalCluster]]:
    require_bwrap()
    _postgres_reachable()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    reachable_by_sandbox(tmp_path)
    clusters: list[LocalCluster] = []

    def start(**options: Any) -> LocalCluster:
        cluster = LocalCluster(
            root=tmp_path / "cluster",
            admin_url=PG_ADMIN_URL,
            env={**FAST, **package_env()},
            **options,
        )
        clusters.append(cluster)
        cluster.start()
        return cluster

    yield start
    for cluster in clusters:
        cluster.stop()


def client(cluster: LocalCluster) -> httpx.Client:
    return httpx.Client(
        base_url=cluster.api_url,
        headers={"Authorization": f"Bearer {cluster.create_key()}"},
        timeout=30,
    )


def create(http: httpx.Client, name: str, **body: Any) -> dict[str, Any]:
    ref = http.post("/v1/uploads", content=targz({"main.py": SCRIPT})).json()["ref"]
    created = http.post(
        "/v1/automations",
        json={
            "name": name,
            "tarball": ref,
            "secrets": {"TOKEN": SECRET},
            "concurrency": {"max_running": 8},
            **body,
        },
    )
    assert created.status_code == 201, created.text
    return dict(created.json())


def wait_finished(http: httpx.Client, run_ids: list[str], timeout: float = 120) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        runs = [http.get(f"/v1/runs/{run_id}").json() for run_id in run_ids]
        if all(run["status"] in FINISHED for run in runs):
            return runs
        assert time.monotonic() < deadline, [r["status"] for r in runs]
        time.sleep(0.3)


def started_by(process: Process) -> list[str]:
    return [e["run_id"] for e in process.events() if e.get("event") == "run.started"]


def wait_exit(process: Process, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while process.popen.poll() is None:
        assert time.monotonic() < deadline, f"{process.name} still running:\n{process.log()}"
        time.sleep(0.2)
    return int(process.popen.returncode)


def wait_logged(process: Process, event: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in process.events() if e.get("event") == event]
        if found:
            return found[-1]
        assert process.popen.poll() is None, f"{process.name} exited:\n{process.log()[-2000:]}"
        assert time.monotonic() < deadline, f"{process.name} never logged {event}"
        time.sleep(0.2)


def test_api_workers_and_scheduler_share_only_postgres_and_s3(
    start_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = start_cluster()
    http = client(cluster)
    manual = create(http, "manual")
    ticker = create(http, "ticker", trigger={"type": "interval", "seconds": 1})
    run_ids = [
        http.post(f"/v1/automations/{manual['id']}/dispatch").json()["id"] for _ in range(16)
    ]
    runs = wait_finished(http, run_ids)
    assert [r["status"] for r in runs] == ["succeeded"] * len(run_ids)
    for run_id in run_ids:
        assert "secret-ok True manual" in http.get(f"/v1/runs/{run_id}/logs").text

    deadline = time.monotonic() + 60
    while True:
        ticks = http.get("/v1/runs", params={"automation_id": ticker["id"], "status": "succeeded"})
        items = ticks.json()["items"]
        if len(items) >= 3:
            break
        assert time.monotonic() < deadline, ticks.json()
        time.sleep(0.5)
    assert {item["trigger"] for item in items} == {"interval"}
    assert "secret-ok True interval" in http.get(f"/v1/runs/{items[0]['id']}/logs").text

    workers = [p for p in cluster.processes if p.name.startswith("worker")]
    by_worker = {w.name: set(started_by(w)) for w in workers}
    assert all(by_worker.values()), f"both workers should have run some: {by_worker}"
    assert set(run_ids) <= set.union(*by_worker.values())
    for process in cluster.processes:
        # Nothing another process needs lives in a data directory: no blobs, no key file.
        assert not (process.data_dir / "blobs").exists(), process.name
        assert not (process.data_dir / "secret.key").exists(), process.name
    http.close()
    codes = cluster.stop()
    # uvicorn re-raises SIGTERM once it has shut down gracefully: the api ends by it.
    assert codes.pop("api") in (0, -15) and set(codes.values()) == {0}, codes


def test_a_worker_with_another_key_or_none_refuses_to_start_and_claims_nothing(
    start_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = start_cluster(workers=0)
    http = client(cluster)
    automation = create(http, "waiting")
    run_id = http.post(f"/v1/automations/{automation['id']}/dispatch").json()["id"]

    other = cluster.start_process(
        "worker", "other-key", AUTOMATION_SECRET_KEY=Fernet.generate_key().decode()
    )
    no_key = cluster.start_process("worker", "no-key", AUTOMATION_SECRET_KEY="")
    for rogue in (other, no_key):
        assert wait_exit(rogue) != 0
        assert MISMATCH in rogue.log() and "Set the same AUTOMATION_SECRET_KEY" in rogue.log()
        assert started_by(rogue) == []
    assert "secret.key, because AUTOMATION_SECRET_KEY is not set" in no_key.log()
    assert cluster.secret_key not in other.log() + no_key.log()
    assert http.get(f"/v1/runs/{run_id}").json()["status"] == "queued"

    good = cluster.start_process("worker", "good")
    assert wait_finished(http, [run_id])[0]["status"] == "succeeded"
    assert started_by(good) == [run_id]
    http.close()


def test_a_rotation_keeps_two_key_processes_working_and_stops_old_key_ones(
    start_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = start_cluster(workers=1)
    old, new = cluster.secret_key, Fernet.generate_key().decode()
    http = client(cluster)
    automation = create(http, "rotating")
    before = http.post(f"/v1/automations/{automation['id']}/dispatch").json()["id"]
    assert wait_finished(http, [before])[0]["status"] == "succeeded"

    # The window: every process but worker1 gets NEW,OLD; then the rotation.
    both = f"{new},{old}"
    cluster.restart("api", AUTOMATION_SECRET_KEY=both)
    cluster.wait_ready()
    cluster.restart("scheduler", AUTOMATION_SECRET_KEY=both)
    old_scheduler = cluster.start_process("scheduler", "old-scheduler")
    two_keys = cluster.start_process("worker", "two-keys", AUTOMATION_SECRET_KEY=both)
    wait_logged(old_scheduler, "secret_key.checked")
    assert wait_logged(two_keys, "secret_key.checked")["outcome"] == "matched"
    out = cluster.run_cli(
        ["rotate-secret-key", "--new-key", new], "admin", AUTOMATION_SECRET_KEY=both
    )
    assert "re-encrypted 1 secrets" in out

    after = [http.post(f"/v1/automations/{automation['id']}/dispatch").json()["id"]]
    after += [http.post(f"/v1/automations/{automation['id']}/dispatch").json()["id"]]
    runs = wait_finished(http, after)
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert all(r["attempt"] == 1 for r in runs), "a refused claim uses no attempt"
    for run_id in after:
        assert "secret-ok True manual" in http.get(f"/v1/runs/{run_id}/logs").text
    assert set(after) <= set(started_by(two_keys))

    # worker1 holds only OLD: it stops by itself (at its next key check, every 30 s, or
    # at the first run it cannot decrypt, which it hands back) and exits non-zero.
    worker1 = next(p for p in cluster.processes if p.name == "worker1")
    assert wait_exit(worker1, timeout=60) != 0
    assert MISMATCH in worker1.log()
    # So does a scheduler that holds only OLD, at its next check (every 30 s).
    assert wait_exit(old_scheduler, timeout=60) != 0
    assert MISMATCH in old_scheduler.log()
    old_only = cluster.start_process("worker", "old-only", AUTOMATION_SECRET_KEY=old)
    assert wait_exit(old_only) != 0 and MISMATCH in old_only.log()
    new_only = cluster.start_process("worker", "new-only", AUTOMATION_SECRET_KEY=new)
    assert wait_logged(new_only, "worker.started")
    counts = collections.Counter(e.get("event") for e in new_only.events())
    assert counts["secret_key.mismatch"] == 0
    http.close()
