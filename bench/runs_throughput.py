"""Issue 17: the run path against a plain bubblewrap run of the same trivial script.

Measured in one process, baselines in the same run as the server figures:

- ``plain_bwrap``: bubblewrap with fresh namespaces, started directly
  (see ``bench.common.plain_bwrap_argv``): one before each sequential run, and
  runs per second two at a time right before the throughput burst;
- per database, with ``serve``'s worker at concurrency 2 and four automations
  (``max_running`` 1 each, so two run at once):
  - ``sequential``: one run at a time, queued-to-finished p50 from the run
    record (``finished_at - created_at``, the database's clock) and as a caller
    sees it (dispatch call to the finished status), against the p50 of plain
    bwrap runs interleaved with them (one before each run);
  - ``throughput``: 120 runs queued over the four automations first (dispatches
    per second reported apart: that is the API's work), then a worker started:
    runs per second from the first ``started_at`` to the last ``finished_at``,
    against two plain bwraps in parallel;
  - ``rollup_cost``: milliseconds per ``finish`` of a run with an experiment and
    two metrics (rollups written) minus one without an experiment, over
    ``queue.finish`` calls with no sandbox;
  - ``claim_cost_behind_a_backlog``: milliseconds per claim (no sandbox) while
    one automation at its ``max_running`` has 100, 1,000 and 10,000 queued
    runs: the claim seeks each candidate automation's oldest runs, so the
    figure should not grow with the backlog.

The worker runs in this process, so the benchmark hears of finished runs from
a queue listener rather than polling the database every few milliseconds,
which would take the interpreter lock from the worker it measures.
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from automation_server.automations.schemas import AutomationCreate, ConcurrencySpec
from automation_server.db.models import Run
from automation_server.ids import new_id
from automation_server.queue.listeners import RunFacts
from automation_server.queue.results import RunResult
from automation_server.runs.schemas import DispatchRequest
from automation_server.statuses import FINISHED
from automation_server.worker.build import build_worker
from bench.common import (
    TRIVIAL_SCRIPT,
    BenchStack,
    bare_subprocess_times,
    plain_bwrap_argv,
    plain_bwrap_dir,
    plain_bwrap_throughput,
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


class FinishedRuns:
    """A queue listener that wakes the benchmark when runs reach their final status.

    Polling the database from this process every few milliseconds would take
    the interpreter lock from the worker it measures; the queue calls this in
    the finishing transaction instead, and the benchmark then confirms with
    one read that the finish committed.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._finished: set[str] = set()

    def run_created(self, session: Session, run: RunFacts) -> None:
        return None

    def run_finished(self, session: Session, run: RunFacts) -> None:
        with self._cond:
            self._finished.add(run.id)
            self._cond.notify_all()

    def wait_for(self, run_ids: set[str], timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not run_ids <= self._finished:
                if not self._cond.wait(deadline - time.monotonic()):
                    raise TimeoutError(f"{len(run_ids - self._finished)} runs did not finish")


def _committed(s: BenchStack, run_ids: set[str]) -> None:
    """Wait (briefly: the finish is committing) until the database shows them finished."""
    while True:
        with s.services.db.read() as session:
            done = session.scalar(
                select(func.count())
                .select_from(Run)
                .where(Run.id.in_(run_ids), Run.status.in_(FINISHED))
            )
        if done == len(run_ids):
            return
        time.sleep(0.001)


def _runs(s: BenchStack, ids: list[str]) -> list[Run]:
    with s.services.db.read() as session:
        return list(session.scalars(select(Run).where(Run.automation_id.in_(ids))))


def _sequential(s: BenchStack, finished: FinishedRuns, ids: list[str], n: int) -> dict[str, Any]:
    """One run at a time, each after one plain bubblewrap run of the same script, so
    the machine's noise falls on both alike."""
    seen, plain = [], []
    with plain_bwrap_dir(TRIVIAL_SCRIPT) as workdir:
        argv = plain_bwrap_argv(workdir)
        for i in range(n):
            start = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env={})
            plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            run = s.services.dispatcher.dispatch(s.caller, ids[i % len(ids)], DispatchRequest())
            finished.wait_for({run.id})
            _committed(s, {run.id})
            seen.append(time.perf_counter() - start)
    runs = [r for r in _runs(s, ids) if r.finished_at][-n:]
    recorded = [(r.finished_at - r.created_at).total_seconds() for r in runs]  # type: ignore[operator]
    return {
        "runs": n,
        "failed": sum(r.status != "succeeded" for r in runs),
        "plain_bwrap": summary_ms(plain),
        "queued_to_finished": summary_ms(recorded),
        "dispatch_call_to_finished_seen": summary_ms(seen),
        "ratio_to_plain_bwrap": round(statistics.median(recorded) / statistics.median(plain), 2),
    }


def _throughput(
    s: BenchStack, finished: FinishedRuns, ids: list[str], worker: Any
) -> dict[str, Any]:
    """120 runs queued first (the API's work, timed apart), then executed by the worker:
    runs per second from the first ``started_at`` to the last ``finished_at``."""
    start = time.perf_counter()
    queued = {
        s.services.dispatcher.dispatch(s.caller, ids[i % len(ids)], DispatchRequest()).id
        for i in range(BURST)
    }
    dispatched = time.perf_counter() - start
    worker.start()
    finished.wait_for(queued)
    _committed(s, queued)
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


def _add_backlog(s: BenchStack, automation_id: str, n: int) -> None:
    """``n`` more queued runs of the automation: copies of one dispatched run, inserted
    in one batch (dispatching ten thousand runs one by one would take a minute)."""
    if n <= 0:
        return
    template = s.services.dispatcher.dispatch(s.caller, automation_id, DispatchRequest())
    with s.services.db.write() as session:
        row = session.get(Run, template.id)
        assert row is not None
        columns = {c.key: getattr(row, c.key) for c in Run.__table__.columns}
        session.execute(insert(Run), [{**columns, "id": new_id()} for _ in range(n - 1)])


def _claim_cost(s: BenchStack, sizes: tuple[int, ...], claims: int) -> dict[str, Any]:
    """Milliseconds per claim (two slots) while one automation at its limit has a backlog
    of each size and another has runs to take: the claim must not rank the backlog."""
    backlog, other = _automations(s, "backlog", 2)
    _add_backlog(s, other, 2 * claims)
    queue, per_claim, queued = s.services.queue, {}, 0
    result = RunResult("succeeded", 0, None, 1)
    for size in sizes:
        _add_backlog(s, backlog, size - queued)
        queued = size
        elapsed = 0.0
        for _ in range(claims):
            start = time.perf_counter()
            claimed = queue.claim("bench-claimer", 2, 600)
            elapsed += time.perf_counter() - start
            for run in claimed:
                queue.finish(run.run_id, "bench-claimer", result)
                if run.automation_id == backlog:
                    queued -= 1
        per_claim[str(size)] = round(elapsed / claims * 1000, 3)
    return {"queued_in_backlog": list(sizes), "claim_ms": per_claim, "claims_per_size": claims}


def _with_kind(kind: str, quick: bool) -> dict[str, Any]:
    with stack(kind, AUTOMATION_WORKER_CONCURRENCY="2", AUTOMATION_POLL_S="1") as s:
        s.services.start_listener()
        finished = FinishedRuns()
        s.services.queue.add_listener(finished)
        worker = build_worker(s.services)
        worker.start()
        try:
            ids = _automations(s, "bench", AUTOMATIONS)
            _sequential(s, finished, ids, 8)  # warm the tarball cache and the pools
            seq = _sequential(s, finished, ids, 40 if quick else 150)
        finally:
            worker.stop(grace_s=5)
        plain_rps = plain_bwrap_throughput(TRIVIAL_SCRIPT, BURST, 2)
        burst_worker = build_worker(s.services)
        try:
            burst_ids = _automations(s, "burst", AUTOMATIONS)
            burst = _throughput(s, finished, burst_ids, burst_worker)
        finally:
            burst_worker.stop(grace_s=5)
        rollups = _rollup_cost(s, 100 if quick else 500)
        claims = _claim_cost(s, (100, 1000, 10000), 30 if quick else 100)
    burst["plain_bwrap_runs_per_s"] = round(plain_rps, 2)
    burst["share_of_plain_bwrap"] = round(burst["runs_per_s"] / plain_rps, 2)
    return {
        "sequential": seq,
        "throughput_concurrency_2": burst,
        "rollup_cost": rollups,
        "claim_cost_behind_a_backlog": claims,
    }


def run(quick: bool) -> dict[str, Any]:
    bare = bare_subprocess_times(TRIVIAL_SCRIPT, 30 if quick else 100)
    results: dict[str, Any] = {"bare_subprocess": summary_ms(bare)}
    for kind in ("sqlite", "postgres"):
        results[kind] = _with_kind(kind, quick)
    path = write_results("runs_throughput", {"quick": quick, **results})
    return {"file": str(path), **results}
