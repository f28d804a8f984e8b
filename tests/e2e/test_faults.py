"""Fault injection with the real stack: the database restarts, the disk fills up.

Each test drives the whole server (API + worker + bubblewrap in one process)
through a failure of something it depends on and checks what a user sees:
no 500, no run lost or doubled, a clear error, and recovery without
restarting the server. Each prints one ``FAULT`` summary line.
The object-store outage lives in ``test_faults_s3.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from automation_server.db.migrate import upgrade
from tests.e2e.conftest import Stack, make_stack, require_bwrap
from tests.e2e.pg_cluster import PgCluster, missing_reason, private_cluster
from tests.support import skip_or_fail

stack_of = contextmanager(make_stack)
# Rate limiting and slow lease expiry are not what these tests are about.
FAST = {"AUTOMATION_RATE_LIMIT_PER_MINUTE": "1000000", "AUTOMATION_LEASE_S": "5"}

DISPATCHES = 300
CLIENTS = 6
RESTART_AFTER = 100  # accepted dispatches before PostgreSQL is restarted
RETRY_DEADLINE_S = 60.0
# Longer than a run takes, so every run in flight at the restart ends while the
# database is down (pg_ctl restart alone is ~0.3 s: whether a run ends inside
# that window is luck).
DOWNTIME_S = 1.5


def summary(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\nFAULT {line}")


# ---- PostgreSQL restarted during a burst of dispatches ---------------------------


@dataclass
class Burst:
    """Client threads dispatching with idempotency keys, retrying 503s with the same key."""

    clients: list[httpx.Client]  # one per thread
    automation_id: str
    accepted: dict[str, str] = field(default_factory=dict)  # key -> run id
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    unexpected: list[str] = field(default_factory=list)
    successes: list[tuple[float, float]] = field(default_factory=list)  # (sent, answered)
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough: threading.Event = field(default_factory=threading.Event)

    def run(self, index: int, keys: list[str]) -> None:
        for key in keys:
            self._dispatch(self.clients[index], key)

    def _dispatch(self, http: httpx.Client, key: str) -> None:
        deadline = time.monotonic() + RETRY_DEADLINE_S
        while time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                r = http.post(
                    f"/v1/automations/{self.automation_id}/dispatch",
                    json={"payload": {"key": key}},
                    headers={"Idempotency-Key": key},
                )
            except httpx.TransportError:
                with self.lock:
                    self.transport_errors += 1
                time.sleep(0.05)
                continue
            with self.lock:
                self.statuses[r.status_code] += 1
                if r.status_code == 202:
                    self.accepted[key] = r.json()["id"]
                    self.successes.append((sent, time.monotonic()))
                    if len(self.accepted) >= RESTART_AFTER:
                        self.enough.set()
                    return
                if r.status_code != 503:
                    self.unexpected.append(f"{key}: {r.status_code} {r.text[:300]}")
                    return
            time.sleep(0.05)
        with self.lock:
            self.unexpected.append(f"{key}: still not accepted after {RETRY_DEADLINE_S} s")


def _wait_all_finished(engine: sa.Engine, automation_id: str, timeout: float) -> dict[str, int]:
    query = sa.text("SELECT status, count(*) FROM runs WHERE automation_id = :a GROUP BY status")
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            counts = {s: int(n) for s, n in conn.execute(query, {"a": automation_id})}
        if not {"queued", "running"} & set(counts) or time.monotonic() > deadline:
            return counts
        time.sleep(0.25)


@contextmanager
def crashed_threads() -> Iterator[list[str]]:
    """Record exceptions that kill the worker's run threads instead of re-raising them.

    A crashed run thread is a finding of the scenario (asserted below), not
    an error of whichever test phase happened to be running; other threads'
    exceptions still go to pytest's hook.
    """
    crashes: list[str] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread else ""
        if name.startswith("run-"):
            crashes.append(f"{name}: {args.exc_type.__name__}: {str(args.exc_value)[:200]}")
        else:
            previous(args)

    threading.excepthook = hook
    try:
        yield crashes
    finally:
        threading.excepthook = previous


@dataclass
class RestartOutcome:
    keys: list[str]
    burst: Burst
    per_key: dict[str, tuple[int, str]]  # idempotency key -> (runs, a run id)
    final: dict[str, int]  # run status -> count
    errors: list[str]  # errors of runs that did not succeed
    thread_crashes: list[str]
    restart_s: float
    recovery_s: float
    ready_after: int


@pytest.fixture(scope="module")
def restart_outcome(tmp_path_factory: pytest.TempPathFactory) -> RestartOutcome:
    """One burst of dispatches with PostgreSQL restarted in the middle, shared by the
    tests below (it is the expensive part)."""
    require_bwrap()
    reason = missing_reason()
    if reason is not None:
        skip_or_fail(reason)
    data_dir = tmp_path_factory.mktemp("restart") / "var"
    data_dir.mkdir()
    env = {**FAST, "AUTOMATION_WORKER_CONCURRENCY": "4"}
    with private_cluster() as cluster:
        upgrade(cluster.url)
        with crashed_threads() as crashes, stack_of(data_dir, cluster.url, **env) as stack:
            return _burst_through_restart(cluster, stack, crashes)


def _burst_through_restart(cluster: PgCluster, stack: Stack, crashes: list[str]) -> RestartOutcome:
    auto = stack.create(
        name="burst",
        tarball=stack.upload({"main.py": "print('ok')"}),
        concurrency={"max_running": 4, "on_overlap": "queue"},
    )
    key = stack.http.headers["Authorization"].removeprefix("Bearer ")
    burst = Burst([stack.server.client(key) for _ in range(CLIENTS)], auto["id"])
    keys = [f"burst-{i:04d}" for i in range(DISPATCHES)]
    threads = [
        threading.Thread(target=burst.run, args=(i, keys[i::CLIENTS]), daemon=True)
        for i in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    assert burst.enough.wait(60), f"burst never reached {RESTART_AFTER} dispatches"
    restart_at = time.monotonic()
    cluster.restart(mode="fast", downtime_s=DOWNTIME_S)
    restarted_at = time.monotonic()
    for t in threads:
        t.join(timeout=RETRY_DEADLINE_S + 30)
    # The first dispatch sent once PostgreSQL was back that answered 202.
    after = [done for sent, done in burst.successes if sent >= restarted_at]
    engine = sa.create_engine(cluster.url)
    try:
        final = _wait_all_finished(engine, auto["id"], timeout=120)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT idempotency_key, count(*), min(id) FROM runs "
                    "WHERE automation_id = :a GROUP BY idempotency_key"
                ),
                {"a": auto["id"]},
            ).all()
            errors = list(
                conn.execute(
                    sa.text(
                        "SELECT status || ': ' || coalesce(error, '') FROM runs "
                        "WHERE automation_id = :a AND status <> 'succeeded'"
                    ),
                    {"a": auto["id"]},
                ).scalars()
            )
    finally:
        engine.dispose()
    return RestartOutcome(
        keys=keys,
        burst=burst,
        per_key={k: (int(n), rid) for k, n, rid in rows},
        final=final,
        errors=errors,
        thread_crashes=list(crashes),
        restart_s=restarted_at - restart_at,
        recovery_s=(min(after) - restart_at) if after else float("nan"),
        ready_after=stack.http.get("/ready").status_code,
    )


def test_postgres_restart_during_a_dispatch_burst_loses_and_duplicates_no_run(
    restart_outcome: RestartOutcome, capsys: pytest.CaptureFixture[str]
) -> None:
    out, burst = restart_outcome, restart_outcome.burst
    lost = [k for k in out.keys if k not in out.per_key]
    duplicated = [k for k, (n, _) in out.per_key.items() if n > 1]
    survived = not (burst.unexpected or lost or duplicated) and out.ready_after == 200
    summary(
        capsys,
        f"postgres-restart: survived={survived} dispatches={DISPATCHES} "
        f"runs_lost={len(lost)} runs_duplicated={len(duplicated)} "
        f"responses={dict(burst.statuses)} transport_errors={burst.transport_errors} "
        f"restart_took_s={out.restart_s:.2f} (down {DOWNTIME_S} s) "
        f"recovery_s={out.recovery_s:.2f} (after db back: {out.recovery_s - out.restart_s:.2f}) "
        f"final={out.final} worker_thread_crashes={len(out.thread_crashes)} "
        f"failed_run_errors={sorted(set(out.errors))}",
    )
    # The API answered only 202 or 503 (never 500), and every dispatch got its 202.
    assert not burst.unexpected, burst.unexpected[:10]
    assert burst.statuses[503] > 0, "the restart was not noticed: did it happen mid-burst?"
    assert sorted(burst.accepted) == sorted(out.keys)
    # Exactly one run per idempotency key, the one its 202 named.
    assert not lost and not duplicated, (lost[:10], duplicated[:10])
    assert all(out.per_key[k][1] == run_id for k, run_id in burst.accepted.items())
    # Recovered by itself, in the same process.
    assert out.recovery_s == out.recovery_s, "no dispatch succeeded after the restart"
    assert out.ready_after == 200


def test_postgres_restart_during_a_dispatch_burst_still_runs_every_run_to_success(
    restart_outcome: RestartOutcome,
) -> None:
    assert restart_outcome.thread_crashes == []
    assert restart_outcome.final == {"succeeded": DISPATCHES}, restart_outcome.errors[:10]


# ---- disk full while extracting ---------------------------------------------------


@contextmanager
def tiny_tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        skip_or_fail("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0711", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _used_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _leftovers(work: Path) -> list[str]:
    """What is under the worker's work dir besides the (empty) directories of its
    extracted-tarball cache: a failed extraction must leave no partial tree."""
    trees = work / ".trees"
    return sorted(
        str(p.relative_to(work))
        for p in work.rglob("*")
        if not (p.is_dir() and (p == trees or p.parent == trees))
    )


def test_disk_full_while_extracting_fails_the_run_cleanly_and_the_worker_goes_on(
    data_dir: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    require_bwrap()
    with tiny_tmpfs(data_dir / "work") as work, stack_of(data_dir, sqlite_url, **FAST) as stack:
        # Random bytes do not compress: 4 MiB to extract into a 1 MiB file system.
        big = stack.upload({"main.py": "print('never')", "blob.bin": os.urandom(4 << 20)})
        small = stack.upload({"main.py": "print('small and fine')"})
        full = stack.wait(stack.dispatch(stack.create(name="big", tarball=big)["id"])["id"])
        leftovers = _leftovers(work)
        used_after_failure = _used_bytes(work)
        ok = stack.wait(stack.dispatch(stack.create(name="small", tarball=small)["id"])["id"])
        survived = full["status"] == "failed" and ok["status"] == "succeeded" and not leftovers
        summary(
            capsys,
            f"disk-full: survived={survived} failed_run_error={full['error']!r} "
            f"next_run={ok['status']} leftovers={leftovers} tmpfs_used_bytes={used_after_failure}",
        )

        assert full["status"] == "failed", full
        assert "no space" in (full["error"] or "").lower(), full["error"]
        assert "no space" in stack.log(full["id"]).lower()
        assert leftovers == [], f"work dir not cleaned after the failed run: {leftovers}"
        assert ok["status"] == "succeeded", ok
        assert "small and fine" in stack.log(ok["id"])
        # The run's own directory is gone; the cache keeps the small tarball's tree.
        assert [p for p in os.listdir(work) if p != ".trees"] == []
        assert stack.http.get("/health").status_code == 200
