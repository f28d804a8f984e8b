"""Issue 4: trivial runs dispatched and finished, on SQLite and on PostgreSQL.

Reports runs per second, dispatch-to-start latency (started_at - created_at)
p50/p99, and per-run time (worker start to finish, and dispatch to finish at
concurrency 1) as ratios to a bare subprocess of the same script measured in
the same run.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from sqlalchemy import func, select

from automation_server.automations.schemas import AutomationCreate
from automation_server.db.models import Run
from automation_server.runs.schemas import DispatchRequest
from automation_server.worker.build import build_worker
from bench.common import (
    TRIVIAL_SCRIPT,
    BenchStack,
    bare_subprocess_times,
    stack,
    summary_ms,
    targz,
    write_results,
)


def _automation(s: BenchStack, name: str) -> str:
    ref = s.services.blobs.upload(s.caller.org_id, targz({"main.py": TRIVIAL_SCRIPT})).ref
    body = AutomationCreate(name=name, tarball=ref)
    return s.services.automations.create(s.caller, body).id


def _wait_all(s: BenchStack, automation_id: str, n: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with s.services.db.read() as session:
            done = session.scalar(
                select(func.count())
                .select_from(Run)
                .where(
                    Run.automation_id == automation_id,
                    Run.status.in_(("succeeded", "failed", "timed_out", "cancelled")),
                )
            )
        if done == n:
            return
        time.sleep(0.05)
    raise TimeoutError(f"only {done} of {n} runs finished")


def _runs(s: BenchStack, automation_id: str) -> list[Run]:
    with s.services.db.read() as session:
        return list(session.scalars(select(Run).where(Run.automation_id == automation_id)))


def _burst(s: BenchStack, n: int) -> dict[str, Any]:
    automation_id = _automation(s, "burst")
    start = time.perf_counter()
    for _ in range(n):
        s.services.dispatcher.dispatch(s.caller, automation_id, DispatchRequest())
    dispatched = time.perf_counter() - start
    _wait_all(s, automation_id, n)
    runs = _runs(s, automation_id)
    first = min(r.created_at for r in runs)
    last = max(r.finished_at for r in runs if r.finished_at)
    latency = [(r.started_at - r.created_at).total_seconds() for r in runs if r.started_at]
    worker_time = [
        (r.finished_at - r.started_at).total_seconds()
        for r in runs
        if r.started_at and r.finished_at
    ]
    failed = sum(r.status != "succeeded" for r in runs)
    return {
        "runs": n,
        "failed": failed,
        "dispatch_per_s": round(n / dispatched, 1),
        "runs_per_s": round(n / (last - first).total_seconds(), 2),
        "dispatch_to_start": summary_ms(latency),
        "worker_time": summary_ms(worker_time),
    }


def _sequential(s: BenchStack, n: int, name: str = "sequential") -> dict[str, Any]:
    """One run at a time: dispatch to finished, as seen by a caller."""
    automation_id = _automation(s, name)
    end_to_end = []
    for _ in range(n):
        start = time.perf_counter()
        run = s.services.dispatcher.dispatch(s.caller, automation_id, DispatchRequest())
        while True:
            with s.services.db.read() as session:
                status = session.scalar(select(Run.status).where(Run.id == run.id))
            if status not in ("queued", "running"):
                break
            time.sleep(0.002)
        end_to_end.append(time.perf_counter() - start)
    runs = _runs(s, automation_id)
    latency = [(r.started_at - r.created_at).total_seconds() for r in runs if r.started_at]
    return {
        "runs": n,
        "dispatch_to_start_idle": summary_ms(latency),
        "dispatch_to_finished": summary_ms(end_to_end),
        "median_s": statistics.median(end_to_end),
    }


def run(quick: bool) -> dict[str, Any]:
    n = 200 if quick else 1000
    bare = bare_subprocess_times(TRIVIAL_SCRIPT, 30 if quick else 100)
    bare_median = statistics.median(bare)
    results: dict[str, Any] = {"bare_subprocess": summary_ms(bare)}
    for kind in ("sqlite", "postgres"):
        with stack(kind, AUTOMATION_WORKER_CONCURRENCY="2", AUTOMATION_POLL_S="0.5") as s:
            worker = build_worker(s.services)
            s.services.start_listener()
            worker.start()
            try:
                _sequential(s, 5, "warmup")  # warm the tarball cache and the pools
                burst = _burst(s, n)
                seq = _sequential(s, 30 if quick else 100)
            finally:
                worker.stop(grace_s=5)
            burst["worker_time_ratio_to_bare"] = round(
                burst["worker_time"]["p50_ms"] / 1000 / bare_median, 2
            )
            seq["ratio_to_bare"] = round(seq.pop("median_s") / bare_median, 2)
            results[kind] = {"burst_concurrency_2": burst, "sequential": seq}
    path = write_results("runs_throughput", {"quick": quick, **results})
    return {"file": str(path), **results}
