"""Cron fire times against known calendars (expected dates read off a calendar by hand).

Reference: Tuesday 2026-11-24. November 2026 Mondays: 2, 9, 16, 23, 30;
December 2026 Mondays: 7, 14, 21, 28; Fridays: 4, 11, 18, 25; 1 January 2027 is a
Friday; Friday 13 August 2027. Europe/Berlin is UTC+1 in winter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from automation_server.triggers import parse_cron

TODAY = datetime(2026, 11, 24, tzinfo=UTC)  # Tuesday, 00:00 UTC


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def midnights(*dates: tuple[int, int, int]) -> list[datetime]:
    return [utc(y, m, d) for y, m, d in dates]


def fires(
    schedule: str, start: datetime, end: datetime, tz: str = "UTC", limit: int = 50
) -> list[datetime]:
    return parse_cron(schedule, tz).ticks_between(start, end, limit)


def test_weekdays_at_nine_in_berlin_over_two_weeks() -> None:
    got = fires("0 9 * * 1-5", TODAY, utc(2026, 12, 8), "Europe/Berlin")
    # 09:00 CET is 08:00 UTC; no Saturday 28/Sunday 29 Nov or 5/6 Dec.
    assert got == [
        utc(2026, 11, 24, 8), utc(2026, 11, 25, 8), utc(2026, 11, 26, 8), utc(2026, 11, 27, 8),
        utc(2026, 11, 30, 8), utc(2026, 12, 1, 8), utc(2026, 12, 2, 8), utc(2026, 12, 3, 8),
        utc(2026, 12, 4, 8), utc(2026, 12, 7, 8),
    ]  # fmt: skip
    assert fires("0 9 * * mon-fri", TODAY, utc(2026, 12, 8), "Europe/Berlin") == got
    assert fires("0 9 * * MON-Fri", TODAY, utc(2026, 12, 8), "Europe/Berlin") == got


@pytest.mark.parametrize("weekday", ["0", "7", "sun", "SUN", "Sun"])
def test_sunday_is_zero_seven_and_sun(weekday: str) -> None:
    got = fires(f"0 12 * * {weekday}", TODAY, utc(2026, 12, 14))
    assert got == [utc(2026, 11, 29, 12), utc(2026, 12, 6, 12), utc(2026, 12, 13, 12)]


def test_monday_is_one_not_zero() -> None:
    # APScheduler's from_crontab would read 0 as Monday; cron reads 1.
    assert fires("0 0 * * 1", TODAY, utc(2026, 12, 8)) == midnights((2026, 11, 30), (2026, 12, 7))


@pytest.mark.parametrize("weekdays", ["5-7", "fri-sun", "FRI-SUN", "5,6,0", "fri,sat,7"])
def test_friday_to_sunday_ranges(weekdays: str) -> None:
    got = fires(f"0 0 * * {weekdays}", TODAY, utc(2026, 12, 8))
    assert got == midnights(
        (2026, 11, 27), (2026, 11, 28), (2026, 11, 29), (2026, 12, 4), (2026, 12, 5), (2026, 12, 6)
    )


@pytest.mark.parametrize("weekdays", ["sat-sun", "6-7", "6,0", "sat,sun"])
def test_weekend_ranges(weekdays: str) -> None:
    got = fires(f"0 0 * * {weekdays}", TODAY, utc(2026, 12, 8))
    assert got == midnights((2026, 11, 28), (2026, 11, 29), (2026, 12, 5), (2026, 12, 6))


@pytest.mark.parametrize("weekdays", ["0-6", "0-7", "sun-sat", "*"])
def test_whole_week_ranges_fire_daily(weekdays: str) -> None:
    got = fires(f"0 0 * * {weekdays}", TODAY, utc(2026, 11, 30, 12))
    assert got == midnights(
        (2026, 11, 25),
        (2026, 11, 26),
        (2026, 11, 27),
        (2026, 11, 28),
        (2026, 11, 29),
        (2026, 11, 30),
    )


def test_weekday_steps() -> None:
    # Sunday, Tuesday, Thursday, Saturday
    got = fires("0 0 * * */2", TODAY, utc(2026, 12, 2))
    assert got == midnights((2026, 11, 26), (2026, 11, 28), (2026, 11, 29), (2026, 12, 1))
    assert fires("0 0 * * 1-5/2", TODAY, utc(2026, 12, 3)) == midnights(
        (2026, 11, 25), (2026, 11, 27), (2026, 11, 30), (2026, 12, 2)
    )


def test_month_names() -> None:
    got = fires("0 0 1 jan,JUL *", TODAY, utc(2029, 1, 1), limit=3)
    assert got == midnights((2027, 1, 1), (2027, 7, 1), (2028, 1, 1))
    assert fires("0 0 1 Jan-Mar *", TODAY, utc(2027, 12, 31)) == midnights(
        (2027, 1, 1), (2027, 2, 1), (2027, 3, 1)
    )


def test_both_day_fields_restricted_fire_on_either() -> None:
    # Every 13th and every Friday; 13 Dec is a Sunday, 13 Jan a Wednesday.
    got = fires("0 0 13 * 5", TODAY, utc(2027, 1, 14))
    assert got == midnights(
        (2026, 11, 27), (2026, 12, 4), (2026, 12, 11), (2026, 12, 13), (2026, 12, 18),
        (2026, 12, 25), (2027, 1, 1), (2027, 1, 8), (2027, 1, 13),
    )  # fmt: skip


def test_friday_the_thirteenth_fires_once() -> None:
    got = fires("0 0 13 * fri", utc(2027, 8, 1), utc(2027, 8, 31))
    assert got == midnights((2027, 8, 6), (2027, 8, 13), (2027, 8, 20), (2027, 8, 27))


def test_day_field_starting_with_star_is_anded() -> None:
    # Odd days that are also Mondays: 7 and 21 Dec, 11 and 25 Jan (not 30 Nov, 14 Dec...).
    got = fires("0 0 */2 * 1", TODAY, utc(2027, 1, 31))
    assert got == midnights((2026, 12, 7), (2026, 12, 21), (2027, 1, 11), (2027, 1, 25))


def test_same_days_written_as_a_range_are_ored() -> None:
    # '1-31/2' does not start with '*': odd days OR Mondays (30 Nov is even but a Monday).
    got = fires("0 0 1-31/2 * 1", TODAY, utc(2026, 12, 4))
    assert got == midnights(
        (2026, 11, 25), (2026, 11, 27), (2026, 11, 29), (2026, 11, 30), (2026, 12, 1), (2026, 12, 3)
    )


def test_weekday_field_starting_with_star_is_anded() -> None:
    # First of the month on a Sunday/Tuesday/Thursday/Saturday: 1 Dec 2026 is a
    # Tuesday; 1 Jan-1 Mar 2027 are Fri, Mon, Mon; 1 Apr Thu, 1 May Sat.
    got = fires("0 0 1 * */2", TODAY, utc(2027, 5, 2))
    assert got == midnights((2026, 12, 1), (2027, 4, 1), (2027, 5, 1))


def test_thirty_first_skips_short_months() -> None:
    got = fires("0 0 31 * *", TODAY, utc(2028, 1, 1))
    assert got == midnights(
        (2026, 12, 31), (2027, 1, 31), (2027, 3, 31), (2027, 5, 31), (2027, 7, 31),
        (2027, 8, 31), (2027, 10, 31), (2027, 12, 31),
    )  # fmt: skip


def test_leap_day_fires_only_in_leap_years() -> None:
    got = fires("0 0 29 2 *", TODAY, utc(2040, 1, 1))
    assert got == midnights((2028, 2, 29), (2032, 2, 29), (2036, 2, 29))


def test_leap_day_skips_2100() -> None:
    assert parse_cron("0 0 29 2 *").next_after(utc(2096, 3, 1)) == utc(2104, 2, 29)


def test_minute_hour_lists_ranges_and_steps() -> None:
    got = fires("0,30 8-9 * * *", TODAY, utc(2026, 11, 25))
    assert got == [
        utc(2026, 11, 24, 8),
        utc(2026, 11, 24, 8, 30),
        utc(2026, 11, 24, 9),
        utc(2026, 11, 24, 9, 30),
    ]
    got = fires("10-50/20 */12 * * *", TODAY, utc(2026, 11, 25))
    assert got == [
        utc(2026, 11, 24, 0, 10), utc(2026, 11, 24, 0, 30), utc(2026, 11, 24, 0, 50),
        utc(2026, 11, 24, 12, 10), utc(2026, 11, 24, 12, 30), utc(2026, 11, 24, 12, 50),
    ]  # fmt: skip


def test_every_fifteen_minutes() -> None:
    got = fires("*/15 * * * *", utc(2026, 11, 24, 9, 7), utc(2026, 11, 24, 10))
    assert got == [
        utc(2026, 11, 24, 9, 15),
        utc(2026, 11, 24, 9, 30),
        utc(2026, 11, 24, 9, 45),
        utc(2026, 11, 24, 10),
    ]


def test_next_after_is_strict_and_handles_microseconds() -> None:
    schedule = parse_cron("0 9 * * 1-5", "Europe/Berlin")
    assert schedule.next_after(utc(2026, 11, 24, 7, 59, 59, 999999)) == utc(2026, 11, 24, 8)
    assert schedule.next_after(utc(2026, 11, 24, 8)) == utc(2026, 11, 25, 8)
    assert schedule.next_after(utc(2026, 11, 24, 8, 0, 0, 1)) == utc(2026, 11, 25, 8)
    every_minute = parse_cron("* * * * *")
    assert every_minute.next_after(utc(2026, 11, 24, 9, 0, 0, 1)) == utc(2026, 11, 24, 9, 1)
    assert every_minute.next_after(utc(2026, 11, 24, 9, 0, 59, 999999)) == utc(2026, 11, 24, 9, 1)


def test_accepts_any_aware_input_and_returns_utc() -> None:
    schedule = parse_cron("0 9 * * 1-5", "Europe/Berlin")
    result = schedule.next_after(datetime(2026, 11, 24, 9, tzinfo=ZoneInfo("Europe/Berlin")))
    assert result == utc(2026, 11, 25, 8)
    assert result is not None and result.tzinfo is UTC
    assert schedule.next_after(
        datetime(2026, 11, 24, 2, tzinfo=ZoneInfo("America/New_York"))
    ) == utc(2026, 11, 24, 8)


def test_ticks_between_excludes_start_includes_end_and_respects_limit() -> None:
    schedule = parse_cron("0 * * * *")
    start, end = utc(2026, 11, 24, 9), utc(2026, 11, 24, 12)
    assert schedule.ticks_between(start, end, 10) == [
        utc(2026, 11, 24, 10),
        utc(2026, 11, 24, 11),
        end,
    ]
    assert schedule.ticks_between(start, end, 2) == [utc(2026, 11, 24, 10), utc(2026, 11, 24, 11)]
    assert schedule.ticks_between(start, end, 0) == []
    assert schedule.ticks_between(start, end, -1) == []
    assert schedule.ticks_between(end, start, 10) == []
    assert schedule.ticks_between(start, start + timedelta(minutes=59), 10) == []


def test_ends_quietly_at_the_end_of_the_calendar() -> None:
    assert parse_cron("0 0 1 1 *").next_after(utc(9999, 6, 1)) is None
    assert parse_cron("0 0 * * *", "Pacific/Kiritimati").next_after(utc(9999, 12, 31, 12)) is None
