"""The scheduler loop on both databases, driven by a controllable clock."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from automation_server.db.models import Automation, Run
from automation_server.scheduler.loop import Scheduler
from tests.support import LiveServer, targz


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC))


def scheduler(server: LiveServer, clock: Clock) -> Scheduler:
    s = server.services
    return Scheduler(db=s.db, dispatcher=s.dispatcher, notifier=s.notifier, clock=clock)


def create(http: httpx.Client, name: str, trigger: dict[str, Any], **extra: Any) -> dict[str, Any]:
    ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
    r = http.post(
        "/v1/automations",
        json={
            "name": name,
            "tarball": ref,
            "trigger": trigger,
            "concurrency": {"max_running": 1, "on_overlap": "queue"},
            **extra,
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def ticks_of(server: LiveServer, automation_id: str) -> list[datetime]:
    with server.services.db.read() as session:
        return list(
            session.scalars(
                select(Run.scheduled_for)
                .where(Run.automation_id == automation_id)
                .order_by(Run.scheduled_for)
            )
        )


def automation_row(server: LiveServer, automation_id: str) -> Automation:
    with server.services.db.read() as session:
        row = session.get(Automation, automation_id)
        assert row is not None
        return row


def test_interval_fires_each_tick_once(
    server: LiveServer, http: httpx.Client, clock: Clock
) -> None:
    a = create(http, "every2", {"type": "interval", "seconds": 2})
    first = automation_row(server, a["id"]).next_run_at
    assert first is not None
    sched = scheduler(server, clock)
    clock.now = first - timedelta(milliseconds=1)
    assert sched.tick() == 0  # not due yet
    for k in range(5):
        clock.now = first + timedelta(seconds=2 * k, milliseconds=5)
        sched.tick()
        sched.tick()  # a second pass at the same instant fires nothing more
    assert ticks_of(server, a["id"]) == [first + timedelta(seconds=2 * k) for k in range(5)]
    runs = http.get("/v1/runs", params={"automation_id": a["id"]}).json()["items"]
    assert {r["trigger"] for r in runs} == {"interval"}
    assert automation_row(server, a["id"]).next_run_at == first + timedelta(seconds=10)


def test_cron_fires_at_the_computed_instant(
    server: LiveServer, http: httpx.Client, clock: Clock
) -> None:
    a = create(http, "minutely", {"type": "cron", "schedule": "* * * * *"})
    nxt = automation_row(server, a["id"]).next_run_at
    assert nxt is not None and nxt.second == 0
    clock.now = nxt + timedelta(milliseconds=10)
    scheduler(server, clock).tick()
    run = http.get("/v1/runs", params={"automation_id": a["id"]}).json()["items"][0]
    assert run["trigger"] == "cron"
    assert run["scheduled_for"] == nxt.isoformat().replace("+00:00", "Z")
    assert run["assignment"]["method"] == "random" and run["variant"] == "default"


def test_concurrent_schedulers_never_fire_a_tick_twice(
    server: LiveServer, http: httpx.Client, clock: Clock
) -> None:
    autos = [create(http, f"a{i}", {"type": "interval", "seconds": 1}) for i in range(10)]
    schedulers = [scheduler(server, clock) for _ in range(3)]
    clock.now = max(automation_row(server, a["id"]).next_run_at for a in autos)  # type: ignore[type-var]
    clock.advance(0.5)
    for _ in range(4):
        threads = [threading.Thread(target=s.tick) for s in schedulers for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        clock.advance(1)
    for a in autos:
        fired = ticks_of(server, a["id"])
        assert len(fired) == len(set(fired))
        steps = {(b - a_).total_seconds() for a_, b in itertools.pairwise(fired)}
        assert steps <= {1.0}, steps  # consecutive ticks: no gap, no duplicate


def test_disabled_automation_never_fires_and_reenabling_starts_fresh(
    server: LiveServer, http: httpx.Client, clock: Clock
) -> None:
    a = create(http, "toggle", {"type": "interval", "seconds": 5})
    http.patch(f"/v1/automations/{a['id']}", json={"enabled": False})
    sched = scheduler(server, clock)
    clock.advance(60)
    sched.tick()
    assert ticks_of(server, a["id"]) == []
    enabled = http.patch(f"/v1/automations/{a['id']}", json={"enabled": True}).json()
    assert enabled["next_run_at"] is not None


def test_trigger_change_and_delete_take_effect_at_once(
    server: LiveServer, http: httpx.Client, clock: Clock
) -> None:
    a = create(http, "changing", {"type": "interval", "seconds": 3600})
    changed = http.patch(
        f"/v1/automations/{a['id']}", json={"trigger": {"type": "interval", "seconds": 1}}
    ).json()
    nxt = datetime.fromisoformat(changed["next_run_at"].replace("Z", "+00:00"))
    assert (nxt - datetime.now(UTC)).total_seconds() < 2
    http.delete(f"/v1/automations/{a['id']}")
    clock.advance(10)
    scheduler(server, clock).tick()
    assert ticks_of(server, a["id"]) == []


@pytest.mark.parametrize(
    ("policy", "expected_runs"), [("run_once", 1), ("run_all", 3), ("skip", 0)]
)
def test_misfire_policy_after_downtime(
    server: LiveServer, http: httpx.Client, clock: Clock, policy: str, expected_runs: int
) -> None:
    a = create(
        http,
        f"down-{policy}",
        {"type": "interval", "seconds": 60},
        misfire={"policy": policy, "grace_s": 10, "max_catchup": 3},
    )
    first = automation_row(server, a["id"]).next_run_at
    assert first is not None
    clock.now = first + timedelta(minutes=10, seconds=30)  # 11 ticks, all late
    scheduler(server, clock).tick()
    fired = ticks_of(server, a["id"])
    assert len(fired) == expected_runs
    if fired:
        assert fired[-1] == first + timedelta(minutes=10)
    out = http.get(f"/v1/automations/{a['id']}").json()
    assert out["missed_ticks"] == 11
    assert datetime.fromisoformat(out["next_run_at"].replace("Z", "+00:00")) == first + timedelta(
        minutes=11
    )


def test_scheduler_thread_fires_on_time(server: LiveServer, http: httpx.Client) -> None:
    s = server.services
    sched = Scheduler(db=s.db, dispatcher=s.dispatcher, notifier=s.notifier, poll_s=0.2)
    sched.start()
    try:
        a = create(http, "live", {"type": "interval", "seconds": 1})
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while len(ticks_of(server, a["id"])) < 2 and datetime.now(UTC) < deadline:
            threading.Event().wait(0.05)
        with s.db.read() as session:
            runs = list(session.scalars(select(Run).where(Run.automation_id == a["id"])))
        assert len(runs) >= 2
        late = [(r.created_at - r.scheduled_for).total_seconds() for r in runs]  # type: ignore[operator]
        assert max(late) < 1.0, late
    finally:
        sched.stop()


def test_skipped_overlap_is_recorded(server: LiveServer, http: httpx.Client, clock: Clock) -> None:
    a = create(http, "overlap", {"type": "interval", "seconds": 1})
    with server.services.db.write() as session:
        session.execute(
            update(Automation)
            .where(Automation.id == a["id"])
            .values(concurrency={"max_running": 1, "on_overlap": "skip"})
        )
    first = automation_row(server, a["id"]).next_run_at
    assert first is not None
    sched = scheduler(server, clock)
    for k in range(3):
        clock.now = first + timedelta(seconds=k, milliseconds=1)
        sched.tick()
    runs = http.get("/v1/runs", params={"automation_id": a["id"]}).json()["items"]
    statuses = sorted(r["status"] for r in runs)
    assert statuses == ["queued", "skipped", "skipped"]
    skipped = next(r for r in runs if r["status"] == "skipped")
    assert "max_running=1" in skipped["error"]
