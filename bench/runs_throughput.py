"""Issue 17: the run path against a plain bubblewrap run of the same trivial script.

Measured in one process, baselines in the same run as the server figures:

- ``plain_bwrap``: bubblewrap with fresh namespaces, started directly
  (see ``bench.common.plain_bwrap_argv``), p50 one after another, and runs
  per second two at a time;
- per database, with ``serve``'s worker at concurrency 2 and four automations
  (``max_running`` 1 each, so two run at once):
  - ``sequential``: one run at a time, queued-to-finished p50 from the run
    record (``finished_at - created_at``, the database's clock) and as a caller
    sees it (dispatch call to the finished status), against the plain bwrap p50;
  - ``throughput``: 120 runs queued over the four automations first (dispatches
    per second reported apart: that is the API's work), then a worker started:
    runs per second from the first ``started_at`` to the last ``finished_at``,
    against two plain bwraps in parallel;
  - ``rollup_cost``: milliseconds per ``finish`` of a run with an experiment and
    two metrics (rollups written) minus one without an experiment, over
    ``queue.finish`` calls with no sandbox.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from sqlalchemy import func, select

from automation_server.automations.schemas import AutomationCreate, ConcurrencySpec
from automation_server.db.models import Run
from automation_server.queue.results import RunResult
from automation_server.runs.schemas import DispatchRequest
from automation_server.statuses import FINISHED
from automation_server.worker.build import build_worker
from bench.common import (
    TRIVIAL_SCRIPT,
    BenchStack,
    bare_subprocess_times,
    plain_bwrap_throughput,
    plain_bwrap_times,
    stack,
    summary_ms,
    targz,
    write_results,
)

AUTOMATIONS = 4
BURST = 120


def _automations(s: BenchStack, prefix: str, n: int, **extra: Any) -> list[str]:
    ref = s.services.blobs.upload(s.caller.org_id, targz({"main.py": TRIVIAL_SCRIPT})).ref
    return [
        s.services.automations.create(
            s.caller, AutomationCreate(name=f"{prefix}-{i}", tarball=ref, **extra)
        ).id
        for i in range(n)
    ]


def _finished_count(s: BenchStack, ids: list[str]) -> int:
    with s.services.db.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Run)
                .where(Run.automation_id.in_(ids), Run.status.in_(FINISHED))
            )
            or 0
        )


def _runs(s: BenchStack, ids: list[str]) -> list[Run]:
    with s.services.db.read() as session:
        return list(session.scalars(select(Run).where(Run.automation_id.in_(ids))))


def _sequential(s: BenchStack, ids: list[str], n: int) -> dict[str, Any]:
    seen = []
    for i in range(n):
        start = time.perf_counter()
        run = s.services.dispatcher.dispatch(s.caller, ids[i % len(ids)], DispatchRequest())
        while True:
            with s.services.db.read() as session:
                status = session.scalar(select(Run.status).where(Run.id == run.id))
            if status in FINISHED:
                break
            time.sleep(0.005)
        seen.append(time.perf_counter() - start)
    runs = [r for r in _runs(s, ids) if r.finished_at]
    recorded = [(r.finished_at - r.created_at).total_seconds() for r in runs]  # type: ignore[operator]
    return {
        "runs": n,
        "failed": sum(r.status != "succeeded" for r in runs),
        "queued_to_finished": summary_ms(recorded),
        "dispatch_call_to_finished_seen": summary_ms(seen),
        "p50_s": statistics.median(recorded),
    }


def _throughput(s: BenchStack, ids: list[str], worker: Any) -> dict[str, Any]:
    """120 runs queued first (the API's work, timed apart), then executed by the worker:
    runs per second from the first ``started_at`` to the last ``finished_at``."""
    start = time.perf_counter()
    for i in range(BURST):
        s.services.dispatcher.dispatch(s.caller, ids[i % len(ids)], DispatchRequest())
    dispatched = time.perf_counter() - start
    worker.start()
    deadline = time.monotonic() + 600
    while _finished_count(s, ids) < BURST and time.monotonic() < deadline:
        time.sleep(0.02)
    runs = _runs(s, ids)
    first = min(r.started_at for r in runs if r.started_at)
    last = max(r.finished_at for r in runs if r.finished_at)
    return {
        "runs": BURST,
        "automations": len(ids),
        "failed": sum(r.status != "succeeded" for r in runs),
        "dispatches_per_s": round(BURST / dispatched, 1),
        "runs_per_s": round(BURST / (last - first).total_seconds(), 2),
    }


def _rollup_cost(s: BenchStack, n: int) -> dict[str, Any]:
    """Finish cost with rollups (experiment, two metrics) minus without (no experiment)."""
    wide = ConcurrencySpec(max_running=1000)
    plain = _automations(s, "plain-finish", 1, concurrency=wide)
    measured = _automations(s, "exp-finish", 1, concurrency=wide, experiment_id="bench-rollups")
    per_run = {}
    for label, automation_id in (("without", plain[0]), ("with", measured[0])):
        for _ in range(n):
            s.services.dispatcher.dispatch(s.caller, automation_id, DispatchRequest())
        claimed = s.services.queue.claim("bench-finisher", n, 600)
        result = RunResult("succeeded", 0, None, 12, metrics={"score": 0.5, "latency_ms": 41.0})
        start = time.perf_counter()
        for run in claimed:
            s.services.queue.finish(run.run_id, "bench-finisher", result)
        per_run[label] = (time.perf_counter() - start) / len(claimed) * 1000
    return {
        "finish_ms_without_rollups": round(per_run["without"], 3),
        "finish_ms_with_rollups": round(per_run["with"], 3),
        "rollup_write_ms_per_run": round(per_run["with"] - per_run["without"], 3),
        "metrics_per_run": 2,
    }


def _with_kind(kind: str, quick: bool) -> dict[str, Any]:
    with stack(kind, AUTOMATION_WORKER_CONCURRENCY="2", AUTOMATION_POLL_S="1") as s:
        s.services.start_listener()
        worker = build_worker(s.services)
        worker.start()
        try:
            ids = _automations(s, "bench", AUTOMATIONS)
            _sequential(s, ids, 8)  # warm the tarball cache and the pools
            plain = plain_bwrap_times(TRIVIAL_SCRIPT, 30 if quick else 100)
            seq = _sequential(s, ids, 30 if quick else 100)
        finally:
            worker.stop(grace_s=5)
        plain_rps = plain_bwrap_throughput(TRIVIAL_SCRIPT, BURST, 2)
        burst_worker = build_worker(s.services)
        try:
            burst = _throughput(s, _automations(s, "burst", AUTOMATIONS), burst_worker)
        finally:
            burst_worker.stop(grace_s=5)
        rollups = _rollup_cost(s, 100 if quick else 500)
    plain_p50 = statistics.median(plain)
    seq["ratio_to_plain_bwrap"] = round(seq.pop("p50_s") / plain_p50, 2)
    burst["plain_bwrap_runs_per_s"] = round(plain_rps, 2)
    burst["share_of_plain_bwrap"] = round(burst["runs_per_s"] / plain_rps, 2)
    return {
        "plain_bwrap": summary_ms(plain),
        "sequential": seq,
        "throughput_concurrency_2": burst,
        "rollup_cost": rollups,
    }


def run(quick: bool) -> dict[str, Any]:
    bare = bare_subprocess_times(TRIVIAL_SCRIPT, 30 if quick else 100)
    results: dict[str, Any] = {"bare_subprocess": summary_ms(bare)}
    for kind in ("sqlite", "postgres"):
        results[kind] = _with_kind(kind, quick)
    path = write_results("runs_throughput", {"quick": quick, **results})
    return {"file": str(path), **results}
