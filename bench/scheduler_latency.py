"""Issues 7 and 17: scheduling latency and mass firing on PostgreSQL.

1. Latency: interval automations (every second), three ``automation-server
   scheduler`` and two ``worker`` processes on PostgreSQL;
   ``started_at - scheduled_for`` and ``created_at - scheduled_for`` per run,
   p50/p99 (times from the database's clock).
2. Mass firing: N automations (10,000 in both modes) all due at the same
   instant; the time until every one of their runs is queued, with 1 and with
   3 ``automation-server scheduler`` processes, and a check that each tick
   fired exactly once.
No baseline is claimed: an earlier "60-second poller" figure was arithmetic,
not a measurement, and was dropped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from automation_server.automations.schemas import AutomationCreate, TriggerSpec
from automation_server.db.models import Run
from automation_server.ids import utcnow
from bench.common import TRIVIAL_SCRIPT, BenchStack, stack, summary_ms, targz, write_results

CLI = str(Path(sys.executable).with_name("automation-server"))

CLONE_SQL = """
INSERT INTO automations (id, org_id, name, trigger, trigger_type, schedule_anchor, experiment_id,
  champion, revision, enabled, timeout_s, network, limits, concurrency, retry, misfire,
  auto_promote, assignment_key_path, env, webhook_secret, next_run_at, missed_ticks,
  last_run_id, last_run_status, created_at, updated_at, deleted_at)
SELECT gen_random_uuid()::text, a.org_id, a.name || '-' || g, a.trigger, a.trigger_type,
  :due - interval '3600 seconds', NULL, NULL, 1, true, a.timeout_s, a.network, a.limits,
  a.concurrency, a.retry, a.misfire, NULL, NULL, a.env, NULL, :due, 0, NULL, NULL, now(),
  now(), NULL
FROM automations a, generate_series(1, :n) g WHERE a.id = :template;
INSERT INTO revisions (automation_id, number, experiment_id, champion, variants, actor, reason,
  created_at)
SELECT a.id, 1, NULL, NULL, r.variants, 'bench', 'bulk', now()
FROM automations a JOIN revisions r ON r.automation_id = :template AND r.number = 1
WHERE a.name LIKE 'mass-%' AND a.id <> :template;
"""


def _automation(s: BenchStack, name: str, seconds: int) -> str:
    ref = s.services.blobs.upload(s.caller.org_id, targz({"main.py": TRIVIAL_SCRIPT})).ref
    body = AutomationCreate(
        name=name,
        tarball=ref,
        trigger=TriggerSpec(type="interval", seconds=seconds),
        concurrency=msgspec_convert({"max_running": 100, "on_overlap": "queue"}),
    )
    return s.services.automations.create(s.caller, body).id


def msgspec_convert(value: dict[str, Any]) -> Any:
    import msgspec

    from automation_server.automations.schemas import ConcurrencySpec

    return msgspec.convert(value, ConcurrencySpec)


def _env(s: BenchStack, data_dir: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATION_")}
    env.update(
        AUTOMATION_DATABASE_URL=s.services.settings.database_url,
        AUTOMATION_DATA_DIR=data_dir,
        AUTOMATION_LOG_LEVEL="warning",
        AUTOMATION_POLL_S="1",
        **extra,
    )
    return env


@contextmanager
def _processes(roles: list[str], env: dict[str, str], logs_dir: Path) -> Iterator[None]:
    """``automation-server <role>`` processes, stopped (SIGTERM) when the block ends."""
    logs = [open(logs_dir / f"{i}-{role}.log", "wb") for i, role in enumerate(roles)]  # noqa: SIM115
    procs = [
        subprocess.Popen([CLI, role], env=env, stdout=log, stderr=subprocess.STDOUT)
        for role, log in zip(roles, logs, strict=True)
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
        for log in logs:
            log.close()


def _until_running(s: BenchStack, ids: list[str], timeout: float = 120) -> None:
    """Until the processes are up: some tick of every automation has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with s.services.db.read() as session:
            started = session.scalar(
                select(func.count(func.distinct(Run.automation_id))).where(
                    Run.automation_id.in_(ids), Run.started_at.is_not(None)
                )
            )
        if started == len(ids):
            return
        time.sleep(0.1)
    raise TimeoutError("the scheduler and worker processes did not start runs")


def _latency(duration_s: float) -> dict[str, Any]:
    """Interval automations every second, three ``scheduler`` and two ``worker`` processes
    sharing PostgreSQL (and one data directory for the tarball blobs)."""
    with stack("postgres") as s, tempfile.TemporaryDirectory() as tmp:
        ids = [_automation(s, f"tick-{i}", 1) for i in range(3)]
        env = _env(s, str(s.data_dir), AUTOMATION_WORKER_CONCURRENCY="2")
        with _processes(["scheduler"] * 3 + ["worker"] * 2, env, Path(tmp)):
            _until_running(s, ids)  # start-up: imports, migrations check, sandbox probe
            time.sleep(2)
            since = utcnow()
            time.sleep(duration_s)
        with s.services.db.read() as session:
            runs = list(
                session.scalars(
                    select(Run).where(
                        Run.automation_id.in_(ids),
                        Run.started_at.is_not(None),
                        Run.scheduled_for >= since,
                    )
                )
            )
            total, distinct = session.execute(
                text("SELECT count(*), count(DISTINCT (automation_id, scheduled_for)) FROM runs")
            ).one()
    queued = [(r.created_at - r.scheduled_for).total_seconds() for r in runs if r.scheduled_for]
    started = [
        (r.started_at - r.scheduled_for).total_seconds()
        for r in runs
        if r.scheduled_for and r.started_at
    ]
    return {
        "schedulers": 3,
        "workers": 2,
        "runs": len(runs),
        "every_tick_once": total == distinct,
        "tick_to_queued": summary_ms(queued),
        "tick_to_started": summary_ms(started),
    }


def _mass(n: int, schedulers: int) -> dict[str, Any]:
    with stack("postgres") as s:
        template = _automation(s, "mass-0", 3600)
        due = utcnow() + timedelta(seconds=8)  # time to start the scheduler processes
        with s.services.db.write() as session:
            for statement in CLONE_SQL.strip().split(";\n"):
                session.execute(text(statement), {"due": due, "n": n - 1, "template": template})
            session.execute(
                text(
                    "UPDATE automations SET next_run_at = :due, schedule_anchor = "
                    ":anchor WHERE id = :t"
                ),
                {"due": due, "anchor": due - timedelta(seconds=3600), "t": template},
            )
        with tempfile.TemporaryDirectory() as tmp:
            env = _env(s, str(s.data_dir))
            with _processes(["scheduler"] * schedulers, env, Path(tmp)):
                done_at = _wait_for(s, n, due)
        with s.services.db.read() as session:
            total, distinct = session.execute(
                text("SELECT count(*), count(DISTINCT (automation_id, scheduled_for)) FROM runs")
            ).one()
    return {
        "automations": n,
        "schedulers": schedulers,
        "seconds_until_all_queued": round((done_at - due).total_seconds(), 2),
        "runs": total,
        "distinct_ticks": distinct,
    }


def _wait_for(s: BenchStack, n: int, due: Any, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with s.services.db.read() as session:
            count = session.scalar(select(func.count()).select_from(Run))
        if count and count >= n:
            with s.services.db.read() as session:
                return session.scalar(select(func.max(Run.created_at)))
        time.sleep(0.05)
    raise TimeoutError(f"only {count} of {n} runs were queued")


def run(quick: bool) -> dict[str, Any]:
    latency = _latency(15 if quick else 60)
    mass = [_mass(10_000, k) for k in (1, 3)]
    results = {"latency": latency, "mass_firing": mass}
    path = write_results("scheduler_latency", {"quick": quick, **results})
    return {"file": str(path), **results}
