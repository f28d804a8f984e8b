"""Where schedules fire: the scheduler loop (``automation-server scheduler`` and in ``serve``).

Schedules live in the database (``automations.next_run_at``); ``triggers``
(crontab on cronsim) only computes fire times. Each pass claims due automations with
``FOR UPDATE SKIP LOCKED`` (any number of schedulers share the work), inserts
one run per tick under the unique key (automation, scheduled_for) and advances
``next_run_at`` in the same transaction: a killed scheduler loses nothing
(the transaction rolls back and another scheduler takes the tick) and no tick
fires twice (the unique key refuses a second insert).

Between passes the loop sleeps until the earliest ``next_run_at`` (so ticks
fire on time), at most ``poll_s``; a NOTIFY on schedule changes wakes it early.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from automation_server.db.engine import Database
from automation_server.db.models import Automation
from automation_server.dispatch.service import Batch, Dispatcher
from automation_server.ids import utcnow
from automation_server.logging import get_logger
from automation_server.queue.notify import SCHEDULES, Notifier
from automation_server.scheduler.schedules import claim_due, earliest_due
from automation_server.triggers import Schedule, schedule_of

log = get_logger("scheduler")

BATCH = 500
# Enumerating ticks is bounded: a 1-second interval down for a week is 600k ticks.
MAX_TICKS = 10_000


@dataclass(frozen=True)
class FirePlan:
    fire: list[datetime]  # ticks to run, oldest first
    missed: int  # ticks that came later than grace_s


def plan_fires(ticks: list[datetime], now: datetime, misfire: dict[str, Any]) -> FirePlan:
    """Which due ticks to run under the misfire policy (pure: unit-tested with any clock).

    A tick later than ``grace_s`` is missed. ``run_once`` runs the latest missed
    tick unless an on-time tick runs anyway; ``run_all`` runs up to
    ``max_catchup`` of the latest missed ticks; ``skip`` runs none of them.
    """
    grace = timedelta(seconds=float(misfire.get("grace_s", 60)))
    on_time = [t for t in ticks if now - t <= grace]
    missed = [t for t in ticks if now - t > grace]
    policy = misfire.get("policy", "run_once")
    if policy == "run_all":
        catch_up = missed[-int(misfire.get("max_catchup", 10)) :]
    elif policy == "run_once" and missed and not on_time:
        catch_up = missed[-1:]
    else:
        catch_up = []
    return FirePlan(fire=catch_up + on_time, missed=len(missed))


def due_ticks(schedule: Schedule, first: datetime, now: datetime) -> tuple[list[datetime], int]:
    """Ticks from ``first`` (a tick itself) to ``now``: the latest MAX_TICKS, and the count."""
    ticks = [first, *schedule.ticks_between(first, now, MAX_TICKS - 1)]
    if len(ticks) < MAX_TICKS:
        return ticks, len(ticks)
    # Very long downtime: keep the most recent ticks (the ones policies care about).
    for window in (timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)):
        recent = schedule.ticks_between(now - window, now, MAX_TICKS)
        if len(recent) < MAX_TICKS:
            return recent, max(len(ticks), len(recent))
    return recent, MAX_TICKS


class Scheduler:
    def __init__(
        self,
        *,
        db: Database,
        dispatcher: Dispatcher,
        notifier: Notifier,
        poll_s: float = 1.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._db = db
        self._dispatcher = dispatcher
        self._poll_s = poll_s
        # Tests drive the tick with their own clock; otherwise the database's decides.
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        notifier.subscribe(SCHEDULES, lambda _payload: self._wake.set())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()
        log.info("scheduler.started", poll_s=self._poll_s)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while self.tick() == BATCH and not self._stop.is_set():
                    pass  # a full batch: more may be due right now
                delay = self._sleep_s()
            except IntegrityError:
                # A tick already fired (the unique key refused it): the whole batch
                # rolled back and the next pass sees the advanced schedules.
                log.warning("scheduler.tick_conflict")
                delay = 0.0
            except Exception:  # database down: keep going, it comes back
                log.exception("scheduler.pass_failed")
                delay = self._poll_s
            self._wake.wait(delay)
            self._wake.clear()

    def _sleep_s(self) -> float:
        """Until the earliest schedule is due (on this host's clock: only a wake-up time)."""
        earliest = earliest_due(self._db)
        if earliest is None:
            return self._poll_s
        now = self._clock() if self._clock else utcnow()
        return max(0.0, min(self._poll_s, (earliest - now).total_seconds()))

    def tick(self) -> int:
        """One pass: fire every due automation (up to BATCH); how many were processed."""
        queue = self._dispatcher.queue
        with self._db.write() as session:
            db_now = queue.now(session)
            now = self._clock() if self._clock else db_now
            due = claim_due(session, now, BATCH)
            batch = Batch.load(session, queue, due, db_now)
            for automation in due:
                self._fire(session, automation, now, batch)
        return len(due)

    def _fire(self, session: Session, automation: Automation, now: datetime, batch: Batch) -> None:
        schedule = schedule_of(automation.trigger, automation.schedule_anchor)
        if schedule is None or automation.next_run_at is None:
            automation.next_run_at = None
            return
        ticks, count = due_ticks(schedule, automation.next_run_at, now)
        plan = plan_fires(ticks, now, automation.misfire)
        for tick in plan.fire:
            self._dispatcher.enqueue(
                session,
                automation,
                trigger=automation.trigger_type,
                payload={},
                scheduled_for=tick,
                batch=batch,
            )
        missed_total = plan.missed + (count - len(ticks))
        if missed_total:
            automation.missed_ticks += missed_total
            log.warning(
                "schedule.missed",
                automation_id=automation.id,
                missed=missed_total,
                fired=len(plan.fire),
                policy=automation.misfire.get("policy"),
            )
        automation.next_run_at = schedule.next_after(max(now, ticks[-1]))
