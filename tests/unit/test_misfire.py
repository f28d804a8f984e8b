"""Misfire policies decide which due ticks run after downtime (pure, any clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from automation_server.scheduler.loop import due_ticks, plan_fires
from automation_server.triggers import parse_cron, parse_interval

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def ticks(*minutes_ago: int) -> list[datetime]:
    return [NOW - timedelta(minutes=m) for m in minutes_ago]


def test_on_time_tick_fires_and_nothing_is_missed() -> None:
    plan = plan_fires([NOW - timedelta(seconds=3)], NOW, {"policy": "run_once", "grace_s": 60})
    assert plan.fire == [NOW - timedelta(seconds=3)] and plan.missed == 0


def test_run_once_fires_only_the_latest_missed_tick() -> None:
    due = ticks(50, 40, 30, 20)
    plan = plan_fires(due, NOW, {"policy": "run_once", "grace_s": 60})
    assert plan.fire == [due[-1]] and plan.missed == 4


def test_run_once_with_an_on_time_tick_drops_the_missed_ones() -> None:
    due = [*ticks(50, 40), NOW - timedelta(seconds=10)]
    plan = plan_fires(due, NOW, {"policy": "run_once", "grace_s": 60})
    assert plan.fire == [due[-1]] and plan.missed == 2


def test_run_all_fires_up_to_max_catchup_latest_ticks() -> None:
    due = ticks(50, 40, 30, 20, 10)
    plan = plan_fires(due, NOW, {"policy": "run_all", "grace_s": 60, "max_catchup": 3})
    assert plan.fire == due[-3:] and plan.missed == 5


def test_skip_fires_no_missed_tick() -> None:
    due = [*ticks(50, 40), NOW]
    plan = plan_fires(due, NOW, {"policy": "skip", "grace_s": 60})
    assert plan.fire == [NOW] and plan.missed == 2


def test_grace_boundary_counts_as_on_time() -> None:
    tick = NOW - timedelta(seconds=60)
    assert plan_fires([tick], NOW, {"policy": "skip", "grace_s": 60}).fire == [tick]
    late = NOW - timedelta(seconds=61)
    assert plan_fires([late], NOW, {"policy": "skip", "grace_s": 60}).fire == []


def test_due_ticks_lists_every_tick_since_the_first() -> None:
    schedule = parse_cron("*/10 * * * *")
    first = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    found, count = due_ticks(schedule, first, NOW)
    assert count == 7 and found[0] == first and found[-1] == NOW  # 11:00, 11:10 ... 12:00


def test_due_ticks_after_a_very_long_downtime_keeps_the_latest() -> None:
    anchor = NOW - timedelta(days=30)
    schedule = parse_interval(1, anchor=anchor)
    found, count = due_ticks(schedule, anchor + timedelta(seconds=1), NOW)
    assert found[-1] == NOW and count >= 10_000 and len(found) <= 10_000
