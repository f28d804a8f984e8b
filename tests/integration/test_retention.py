"""Retention and garbage collection never delete what a revision still references."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from automation_server.config import RetentionSettings
from automation_server.db.models import Blob, Run
from automation_server.ids import utcnow
from automation_server.queue.manager import RunResult
from automation_server.retention import GarbageCollector
from automation_server.storage.blobs import blob_key, log_key
from tests.support import LiveServer, targz


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


def age_blobs(server: LiveServer, days: int) -> None:
    with server.services.db.write() as session:
        session.execute(sa.update(Blob).values(created_at=utcnow() - timedelta(days=days)))


def collector(server: LiveServer, **settings: int) -> GarbageCollector:
    return GarbageCollector(
        server.services.db,
        server.services.queue,
        server.services.store,
        replace(RetentionSettings(), **settings),
    )


def test_unreferenced_blobs_go_referenced_ones_stay(server: LiveServer, http: httpx.Client) -> None:
    used = http.post("/v1/uploads", content=targz({"main.py": "used"})).json()
    old = http.post("/v1/uploads", content=targz({"main.py": "old"})).json()
    orphan = http.post("/v1/uploads", content=targz({"main.py": "orphan"})).json()
    a = http.post("/v1/automations", json={"name": "r", "tarball": old["ref"]}).json()
    # The variant moves to another tarball: the old one is still named by revision 1.
    http.patch(
        f"/v1/automations/{a['id']}",
        json={"variants": [{"name": "default", "tarball": used["ref"]}]},
    )
    store = server.services.store
    age_blobs(server, 30)
    assert collector(server).collect(dry_run=True).blobs_deleted == 1
    assert store.exists(blob_key(orphan["digest"]))
    report = collector(server).collect()
    assert report.blobs_deleted == 1
    assert not store.exists(blob_key(orphan["digest"]))
    for kept in (used, old):
        assert store.exists(blob_key(kept["digest"]))
    r = http.post("/v1/automations", json={"name": "late", "tarball": orphan["ref"]})
    assert r.json()["code"] == "unknown_blob"  # its rows went with it


def test_fresh_uploads_are_kept_during_the_grace_period(
    server: LiveServer, http: httpx.Client
) -> None:
    fresh = http.post("/v1/uploads", content=targz({"main.py": "fresh"})).json()
    assert collector(server, blob_grace_days=7).collect().blobs_deleted == 0
    assert server.services.store.exists(blob_key(fresh["digest"]))


def test_old_runs_and_logs_expire_but_experiment_stats_stay(
    server: LiveServer, http: httpx.Client
) -> None:
    ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
    a = http.post(
        "/v1/automations",
        json={
            "name": "hist",
            "experiment_id": "hist-exp",
            "concurrency": {"max_running": 10},
            "variants": [{"name": "x", "tarball": ref}],
        },
    ).json()
    ids = [http.post(f"/v1/automations/{a['id']}/dispatch").json()["id"] for _ in range(4)]
    queue, store = server.services.queue, server.services.store
    for run_id in [c.run_id for c in queue.claim("gc-test", 10, 60)]:
        store.put(log_key(run_id), b"log of " + run_id.encode())
        queue.finish(
            run_id,
            "gc-test",
            RunResult(status="succeeded", exit_code=0, error=None, duration_ms=5, log_bytes=10),
        )
    with server.services.db.write() as session:
        session.execute(
            sa.update(Run)
            .where(Run.id.in_(ids[:2]))
            .values(finished_at=utcnow() - timedelta(days=40))
        )
        session.execute(
            sa.update(Run).where(Run.id == ids[2]).values(finished_at=utcnow() - timedelta(days=10))
        )
    before = http.get("/v1/experiments/hist-exp").json()["variants"]
    report = collector(server, runs_days=30, logs_days=7).collect()
    assert (report.runs_deleted, report.logs_deleted) == (2, 1)
    assert [http.get(f"/v1/runs/{i}").status_code for i in ids] == [404, 404, 200, 200]
    assert not store.exists(log_key(ids[0])) and not store.exists(log_key(ids[2]))
    assert store.exists(log_key(ids[3]))
    assert http.get(f"/v1/runs/{ids[2]}").json()["log_bytes"] == 0
    assert http.get("/v1/experiments/hist-exp").json()["variants"] == before
