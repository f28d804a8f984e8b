"""Fault injection: the object store (S3) goes away while runs start, then comes back.

The server runs on moto's S3 HTTP server (the real wire path). With the
worker's tarball cache emptied, runs must fetch from S3 while it is down:
they fail with an error naming the object store and are retried per their
policy; once S3 is back (same port, same content: moto keeps its state in the
process) they succeed. The API stays up throughout and ``/ready`` says the
object store is down while it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.e2e.conftest import Stack, make_stack, require_bwrap
from tests.support import free_port

stack_of = contextmanager(make_stack)
BUCKET = "fault-blobs"
RUNS = 3
OBJECT_STORE_WORDS = ("s3", "object store")


@dataclass
class MotoS3:
    """moto's S3 server on a fixed port, so it can be stopped and started again."""

    port: int = field(default_factory=free_port)
    server: ThreadedMotoServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server._server.server_close()  # type: ignore[union-attr]  # free the port
            self.server = None


@pytest.fixture
def moto_s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[MotoS3]:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    s3 = MotoS3()
    s3.start()
    boto3.client("s3", endpoint_url=s3.url).create_bucket(Bucket=BUCKET)
    try:
        yield s3
    finally:
        s3.stop()


def _until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _gap_s(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def _api_is_up(stack: Stack) -> bool:
    return (
        stack.http.get("/health").status_code == 200
        and stack.http.get("/v1/runs", params={"limit": 5}).status_code == 200
    )


def test_object_store_outage_fails_runs_clearly_and_they_succeed_when_it_is_back(
    moto_s3: MotoS3, data_dir: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    require_bwrap()
    env = {
        "AUTOMATION_BLOB_URL": f"s3://{BUCKET}/prod",
        "AUTOMATION_S3_ENDPOINT_URL": moto_s3.url,
        "AUTOMATION_RATE_LIMIT_PER_MINUTE": "1000000",
        "AUTOMATION_WORKER_CONCURRENCY": str(RUNS),
        # An outage is the platform's failure: ride it out without the user's attempts.
        "AUTOMATION_MAX_INFRA_ATTEMPTS": "12",
    }
    with stack_of(data_dir, sqlite_url, **env) as stack:
        auto = stack.create(
            name="needs-s3",
            tarball=stack.upload({"main.py": "print('fetched from s3')"}),
            retry={"max_attempts": 1},
            concurrency={"max_running": RUNS, "on_overlap": "queue"},
        )
        assert stack.http.get("/ready").status_code == 200

        moto_s3.stop()
        # The worker must fetch the tarball from S3, not from its local cache.
        for cached in (data_dir / "cache").iterdir():
            cached.unlink()
        down_at = time.monotonic()
        ready = stack.http.get("/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["object_store"] != "ok"
        assert any(w in ready.json()["checks"]["object_store"].lower() for w in OBJECT_STORE_WORDS)

        run_ids = [stack.dispatch(auto["id"])["id"] for _ in range(RUNS)]
        # Every run fails twice while S3 is down, queued again each time after its backoff.
        failed_twice = [
            stack.wait(run_id, timeout=60, until=lambda run: len(run["attempts"]) >= 2)
            for run_id in run_ids
        ]
        assert _api_is_up(stack)
        assert stack.http.get("/ready").status_code == 503

        moto_s3.start()
        back_at = time.monotonic()
        _until("/ready to be green again", lambda: stack.http.get("/ready").status_code == 200)
        finished = [stack.wait(run_id, timeout=90) for run_id in run_ids]
        outage_errors = [a["error"] or "" for run in failed_twice for a in run["attempts"]]
        survived = all(r["status"] == "succeeded" for r in finished)
        with capsys.disabled():
            print(
                f"\nFAULT object-store-outage: survived={survived} runs={RUNS} "
                f"final={[r['status'] for r in finished]} "
                f"attempts={[r['attempt'] for r in finished]} outage_s={back_at - down_at:.1f} "
                f"first_error={outage_errors[0]!r}"
            )

        assert all(r["status"] == "succeeded" for r in finished), finished
        assert all(r["failure_origin"] is None for r in finished)
        assert all(3 <= r["attempt"] <= 12 for r in finished), [r["attempt"] for r in finished]
        assert all(a["status"] == "failed" for r in finished for a in r["attempts"])
        # The outage was the platform's: it did not use the user's retry.max_attempts.
        assert all(a["origin"] == "infrastructure" for r in finished for a in r["attempts"])
        assert "fetched from s3" in stack.log(finished[0]["id"])
        for error in outage_errors:
            assert any(w in error.lower() for w in OBJECT_STORE_WORDS), error
        # The first platform retry is at once, later ones wait 1, 2, 4 ... s.
        for run in failed_twice:
            first, second = run["attempts"][:2]
            assert _gap_s(first["finished_at"], second["started_at"]) < 0.9, run
