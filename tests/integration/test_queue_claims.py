"""The fair claim on both databases: max_running inside the query, oldest runnable first."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from automation_server.db.models import Run
from tests.integration.queue_support import QueueKit


def test_a_backlog_at_its_limit_never_holds_back_another_automation(services: Any) -> None:
    kit = QueueKit.make(services)
    busy = kit.automation("busy", max_running=1)
    other = kit.automation("other")
    backlog = kit.dispatch(busy, 40)
    late = kit.dispatch(other)
    claimed = [c.run_id for c in services.queue.claim("w1", 2, 30)]
    assert claimed == [backlog[0], late[0]]
    # busy is at its limit: a further claim finds nothing, though 39 of its runs wait.
    assert services.queue.claim("w2", 5, 30) == []


def test_claim_returns_what_the_run_needs(services: Any) -> None:
    kit = QueueKit.make(services)
    automation_id = kit.automation("ctx", env={"LEVEL": "3"}, secrets={"TOKEN": "s3cr3t-value"})
    [run_id] = kit.dispatch(automation_id)
    [claimed] = services.queue.claim("w1", 1, 30)
    assert claimed.run_id == run_id and claimed.automation_name == "ctx"
    assert claimed.env == {"LEVEL": "3"} and claimed.entrypoint == ["python3", "main.py"]
    assert services.box.decrypt(claimed.encrypted_secrets["TOKEN"]) == "s3cr3t-value"
    row = kit.run(run_id)
    assert row.status == "running" and row.lease_owner == "w1" and row.started_at is not None


def _expected(
    limits: dict[str, int], running: Counter[str], due: list[tuple[Any, str, str]], limit: int
) -> set[str]:
    """Independent computation: per automation its first `free` due runs, then the oldest."""
    taken: Counter[str] = Counter()
    eligible = []
    for _available_at, run_id, automation in sorted(due):
        if taken[automation] < limits[automation] - running[automation]:
            taken[automation] += 1
            eligible.append(run_id)
    return set(eligible[:limit])


def test_random_backlogs_never_leave_a_free_slot_idle(services: Any) -> None:
    """Property: a claim takes exactly the oldest runs that fit their automations' free
    slots, as many as the worker has slots, whatever the backlogs look like."""
    kit = QueueKit.make(services)
    rng = random.Random(20261202)
    automations = {kit.automation(f"a{i}", max_running=rng.randint(1, 3)): 0 for i in range(6)}
    with services.db.read() as session:
        limits = dict(
            session.execute(
                sa.text("SELECT id, max_running FROM automations WHERE id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"ids": list(automations)},
            ).all()
        )
    for _scenario in range(25):
        kit.clear()
        running: Counter[str] = Counter()
        for automation_id, limit in limits.items():
            runs = kit.dispatch(automation_id, rng.randint(0, 6))
            busy = runs[: rng.randint(0, min(limit, len(runs)))]
            kit.mark_running(busy)
            running[automation_id] = len(busy)
            later = [r for r in runs[len(busy) :] if rng.random() < 0.2]
            kit.delay(later, 3600)
        with services.db.read() as session:
            queued = session.execute(
                sa.select(Run.available_at, Run.id, Run.automation_id, Run.created_at).where(
                    Run.status == "queued"
                )
            ).all()
        # Delayed runs are an hour out; the others are due now.
        now_due = [(r[0], r[1], r[2]) for r in queued if r[0] <= r[3] + timedelta(minutes=1)]
        slots = rng.randint(1, 8)
        expected = _expected(limits, running, now_due, slots)
        claimed = {c.run_id for c in services.queue.claim("prop", slots, 30)}
        assert claimed == expected, f"scenario {_scenario}: slots={slots}"
