"""Interval schedules: anchored ticks, exact to the microsecond."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from automation_server.triggers import IntervalSchedule, parse_interval

ANCHOR = datetime(2026, 11, 24, 9, 0, 0, 250000, tzinfo=UTC)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def test_first_tick_is_one_interval_after_the_anchor() -> None:
    schedule = parse_interval(90, ANCHOR)
    assert schedule.next_after(ANCHOR) == utc(2026, 11, 24, 9, 1, 30, 250000)
    assert schedule.next_after(ANCHOR - timedelta(days=3)) == utc(2026, 11, 24, 9, 1, 30, 250000)


def test_next_after_is_strict_to_the_microsecond() -> None:
    schedule = parse_interval(90, ANCHOR)
    tick = utc(2026, 11, 24, 9, 1, 30, 250000)
    assert schedule.next_after(tick - timedelta(microseconds=1)) == tick
    assert schedule.next_after(tick) == utc(2026, 11, 24, 9, 3, 0, 250000)
    assert schedule.next_after(tick + timedelta(microseconds=1)) == utc(
        2026, 11, 24, 9, 3, 0, 250000
    )


def test_replicas_with_the_same_anchor_agree_on_ticks() -> None:
    one = IntervalSchedule(3600, ANCHOR)
    other = IntervalSchedule(3600, ANCHOR.astimezone(ZoneInfo("Asia/Tokyo")))
    asked_late = other.next_after(utc(2026, 11, 24, 13, 59, 7))
    assert asked_late == utc(2026, 11, 24, 14, 0, 0, 250000)
    assert asked_late in one.ticks_between(ANCHOR, utc(2026, 11, 25), 100)
    assert asked_late is not None and asked_late.tzinfo is UTC


def test_ticks_stay_exact_far_from_the_anchor() -> None:
    schedule = IntervalSchedule(7, ANCHOR)
    # 10**9 s / 7 = 142857142.86 -> tick 142857143 = 1_000_000_001 s after the anchor.
    after = ANCHOR + timedelta(seconds=10**9, microseconds=1)
    assert schedule.next_after(after) == ANCHOR + timedelta(seconds=1_000_000_001)


def test_default_anchor_is_the_unix_epoch() -> None:
    schedule = parse_interval(3600)
    assert schedule.anchor == utc(1970, 1, 1)
    assert schedule.next_after(utc(2026, 11, 24, 9, 30)) == utc(2026, 11, 24, 10)


def test_anchor_is_normalised_to_utc() -> None:
    schedule = IntervalSchedule(60, datetime(2026, 11, 24, 10, tzinfo=ZoneInfo("Europe/Berlin")))
    assert schedule.anchor == utc(2026, 11, 24, 9)
    assert schedule.anchor.tzinfo is UTC


def test_ticks_between_bounds_and_limit() -> None:
    schedule = IntervalSchedule(60, utc(2026, 11, 24, 9))
    start, end = utc(2026, 11, 24, 9, 2), utc(2026, 11, 24, 9, 5)
    assert schedule.ticks_between(start, end, 10) == [
        utc(2026, 11, 24, 9, 3),
        utc(2026, 11, 24, 9, 4),
        end,
    ]
    assert schedule.ticks_between(start, end, 2) == [
        utc(2026, 11, 24, 9, 3),
        utc(2026, 11, 24, 9, 4),
    ]
    assert schedule.ticks_between(start, end, 0) == []
    assert schedule.ticks_between(end, start, 10) == []
    assert schedule.ticks_between(start, start + timedelta(seconds=59), 10) == []


def test_catch_up_after_downtime_is_capped() -> None:
    schedule = IntervalSchedule(1, utc(2026, 11, 24))
    ticks = schedule.ticks_between(utc(2026, 11, 24), utc(2026, 11, 25), 10)
    assert ticks == [utc(2026, 11, 24, 0, 0, s) for s in range(1, 11)]


def test_returns_none_past_the_end_of_the_calendar() -> None:
    assert IntervalSchedule(3600, ANCHOR).next_after(utc(9999, 12, 31, 23, 30)) is None
