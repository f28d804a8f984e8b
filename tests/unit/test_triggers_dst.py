"""Daylight-saving changes (DESIGN section 6).

Europe/Berlin: 2026-03-29 02:00 CET (UTC+1) -> 03:00 CEST (UTC+2) at 01:00 UTC;
2026-10-25 03:00 CEST -> 02:00 CET at 01:00 UTC (02:00-02:59 happens twice).
America/New_York: 2026-03-08 02:00 EST (UTC-5) -> 03:00 EDT (UTC-4) at 07:00 UTC;
2026-11-01 02:00 EDT -> 01:00 EST at 06:00 UTC (01:00-01:59 happens twice).
Australia/Lord_Howe: 2026-10-04 02:00 (UTC+10:30) -> 02:30 (UTC+11) at 15:30 UTC
on 3 October.
"""

from __future__ import annotations

from datetime import UTC, datetime

from automation_server.triggers import parse_cron

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def fires(schedule: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    return parse_cron(schedule, tz).ticks_between(start, end, 100)


def test_berlin_skipped_time_fires_at_the_change() -> None:
    got = fires("30 2 * * *", BERLIN, utc(2026, 3, 27, 12), utc(2026, 3, 30, 12))
    # 02:30 CET; 29 March at 03:00 CEST (the change); 02:30 CEST.
    assert got == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]


def test_berlin_repeated_time_fires_at_first_occurrence_only() -> None:
    got = fires("30 2 * * *", BERLIN, utc(2026, 10, 23, 12), utc(2026, 10, 26, 12))
    # 02:30 CEST; 25 October 02:30 CEST (not 02:30 CET = 01:30 UTC); 02:30 CET.
    assert got == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_berlin_repeated_time_does_not_fire_when_asked_between_occurrences() -> None:
    schedule = parse_cron("30 2 * * *", BERLIN)
    # Asking from inside the second 02:00-02:59 (e.g. after a scheduler restart).
    assert schedule.next_after(utc(2026, 10, 25, 1)) == utc(2026, 10, 26, 1, 30)
    assert schedule.next_after(utc(2026, 10, 25, 0, 45)) == utc(2026, 10, 26, 1, 30)
    assert schedule.next_after(utc(2026, 10, 25, 0, 29)) == utc(2026, 10, 25, 0, 30)


def test_skipped_time_asked_from_just_before_and_after_the_change() -> None:
    schedule = parse_cron("30 2 * * *", BERLIN)
    assert schedule.next_after(utc(2026, 3, 29, 0, 59, 59, 999999)) == utc(2026, 3, 29, 1)
    assert schedule.next_after(utc(2026, 3, 29, 1)) == utc(2026, 3, 30, 0, 30)


def test_several_skipped_times_fire_once_at_the_change() -> None:
    got = fires("*/20 2 * * *", BERLIN, utc(2026, 3, 28, 12), utc(2026, 3, 30, 12))
    # 29 March: 02:00, 02:20, 02:40 do not exist -> one fire at 03:00 CEST.
    assert got == [
        utc(2026, 3, 29, 1),
        utc(2026, 3, 30, 0),
        utc(2026, 3, 30, 0, 20),
        utc(2026, 3, 30, 0, 40),
    ]


def test_skipped_time_and_real_change_time_fire_once() -> None:
    got = fires("30 2,3 * * *", BERLIN, utc(2026, 3, 28, 22), utc(2026, 3, 29, 12))
    # 02:30 is moved to 03:00 CEST; 03:30 CEST still fires.
    assert got == [utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 30)]


def test_fixed_hour_job_in_the_repeated_hour_runs_its_first_pass_only() -> None:
    got = fires("*/20 2 * * *", BERLIN, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))
    assert got == [utc(2026, 10, 25, 0), utc(2026, 10, 25, 0, 20), utc(2026, 10, 25, 0, 40)]


def test_new_york_skipped_time_fires_at_the_change() -> None:
    got = fires("30 2 * * *", NEW_YORK, utc(2026, 3, 6, 12), utc(2026, 3, 9, 12))
    # 02:30 EST; 8 March at 03:00 EDT; 02:30 EDT.
    assert got == [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)]


def test_new_york_half_past_two_is_unaffected_by_fall_back() -> None:
    got = fires("30 2 * * *", NEW_YORK, utc(2026, 10, 30, 12), utc(2026, 11, 2, 12))
    assert got == [utc(2026, 10, 31, 6, 30), utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 7, 30)]


def test_new_york_half_past_one_fires_once_on_fall_back() -> None:
    got = fires("30 1 * * *", NEW_YORK, utc(2026, 10, 30, 12), utc(2026, 11, 2, 12))
    # 1 November 01:30 EDT = 05:30 UTC fires; 01:30 EST = 06:30 UTC does not.
    assert got == [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_hourly_job_fires_every_real_hour_across_berlin_spring_forward() -> None:
    got = fires("30 * * * *", BERLIN, utc(2026, 3, 28, 23), utc(2026, 3, 29, 3))
    # 00:30 CET, 01:30 CET, (02:30 does not exist), 03:30 CEST, 04:30 CEST
    assert got == [
        utc(2026, 3, 28, 23, 30),
        utc(2026, 3, 29, 0, 30),
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 29, 2, 30),
    ]


def test_hourly_job_fires_in_both_passes_of_berlin_fall_back() -> None:
    got = fires("30 * * * *", BERLIN, utc(2026, 10, 24, 23), utc(2026, 10, 25, 3))
    # 01:30 CEST, 02:30 CEST, 02:30 CET, 03:30 CET, 04:30 CET
    assert got == [
        utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30),
        utc(2026, 10, 25, 2, 30),
    ]  # fmt: skip


def test_hourly_job_across_new_york_changes() -> None:
    spring = fires("0 * * * *", NEW_YORK, utc(2026, 3, 8, 5, 30), utc(2026, 3, 8, 8))
    # 01:00 EST, 03:00 EDT, 04:00 EDT: still one fire per real hour.
    assert spring == [utc(2026, 3, 8, 6), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8)]
    fall = fires("0 * * * *", NEW_YORK, utc(2026, 11, 1, 3, 30), utc(2026, 11, 1, 7))
    # 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST
    assert fall == [
        utc(2026, 11, 1, 4),
        utc(2026, 11, 1, 5),
        utc(2026, 11, 1, 6),
        utc(2026, 11, 1, 7),
    ]


def test_hourly_job_asked_from_inside_the_repeated_hour() -> None:
    schedule = parse_cron("30 * * * *", BERLIN)
    # 02:40 CEST (first pass): the next match is 02:30 CET, in the second pass.
    assert schedule.next_after(utc(2026, 10, 25, 0, 40)) == utc(2026, 10, 25, 1, 30)
    # 02:10 CET (second pass): also 02:30 CET.
    assert schedule.next_after(utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 25, 1, 30)
    every_ten = parse_cron("*/10 * * * *", BERLIN)
    # 02:55 CEST -> 02:00 CET (01:00 UTC), the very next real ten-minute mark.
    assert every_ten.next_after(utc(2026, 10, 25, 0, 55)) == utc(2026, 10, 25, 1)


def test_every_minute_job_keeps_real_time_rhythm_across_changes() -> None:
    schedule = parse_cron("* * * * *", BERLIN)
    assert schedule.ticks_between(utc(2026, 3, 29, 0, 58), utc(2026, 3, 29, 1, 1), 10) == [
        utc(2026, 3, 29, 0, 59), utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 1),
    ]  # fmt: skip
    assert schedule.ticks_between(utc(2026, 10, 25, 0, 58), utc(2026, 10, 25, 1, 1), 10) == [
        utc(2026, 10, 25, 0, 59), utc(2026, 10, 25, 1), utc(2026, 10, 25, 1, 1),
    ]  # fmt: skip


def test_half_hour_shift_fires_skipped_time_at_the_change() -> None:
    got = fires("15 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 2), utc(2026, 10, 5))
    # 02:15 +10:30; 4 October 02:15 is skipped -> 02:30 +11 = 15:30 UTC; 02:15 +11.
    assert got == [utc(2026, 10, 2, 15, 45), utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15, 15)]


def test_weekday_job_in_berlin_across_spring_forward_keeps_local_nine() -> None:
    got = fires("0 9 * * 1-5", BERLIN, utc(2026, 3, 26), utc(2026, 3, 31, 12))
    # Thu, Fri at 09:00 CET; Mon, Tue at 09:00 CEST.
    assert got == [
        utc(2026, 3, 26, 8),
        utc(2026, 3, 27, 8),
        utc(2026, 3, 30, 7),
        utc(2026, 3, 31, 7),
    ]
