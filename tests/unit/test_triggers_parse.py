"""Crontab, time zone and interval validation: every bad input names its field and code."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from automation_server.errors import Invalid
from automation_server.triggers import (
    CronSchedule,
    IntervalSchedule,
    Schedule,
    describe,
    parse_cron,
    parse_interval,
    parse_timezone,
)


def cron_error(schedule: str) -> Invalid:
    with pytest.raises(Invalid) as info:
        parse_cron(schedule)
    assert info.value.code == "invalid_cron"
    assert info.value.field == "trigger.schedule"
    assert info.value.detail.startswith(f"trigger.schedule: {schedule.strip()!r}: ")
    return info.value


def test_out_of_range_minute_gives_the_documented_message() -> None:
    error = cron_error("61 * * * *")
    assert error.detail == "trigger.schedule: '61 * * * *': minute must be 0-59"


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("0 24 * * *", "hour must be 0-23"),
        ("0 0 0 * *", "day-of-month must be 1-31"),
        ("0 0 32 * *", "day-of-month must be 1-31"),
        ("0 0 1 13 *", "month must be 1-12 or jan-dec"),
        ("0 0 1 0 *", "month must be 1-12 or jan-dec"),
        ("0 0 * * 8", "day-of-week must be 0-7 or sun-sat"),
        ("0 0 1-40 * *", "day-of-month must be 1-31"),
        ("0 0 * * 1-9", "day-of-week must be 0-7 or sun-sat"),
    ],
)
def test_rejects_values_outside_a_field_range(schedule: str, problem: str) -> None:
    assert cron_error(schedule).detail.endswith(problem)


@pytest.mark.parametrize(
    ("schedule", "fragment"),
    [
        ("*/0 * * * *", "minute step in '*/0' must be a number 1-59"),
        ("0 */0 * * *", "hour step in '*/0' must be a number 1-23"),
        ("1-10/0 * * * *", "minute step in '1-10/0' must be a number 1-59"),
        ("*/x * * * *", "minute step in '*/x' must be a number 1-59"),
        ("*/2/3 * * * *", "minute step in '*/2/3'"),
        ("*/99 * * * *", "minute step in '*/99' must be a number 1-59"),
        ("5/10 * * * *", "needs a range or '*' before the '/', as in '5-59/10'"),
    ],
)
def test_rejects_bad_steps(schedule: str, fragment: str) -> None:
    assert fragment in cron_error(schedule).detail


def test_rejects_reversed_range() -> None:
    assert cron_error("5-1 * * * *").detail.endswith(
        "minute range '5-1' is reversed (start after end)"
    )


def test_rejects_reversed_weekday_name_range() -> None:
    assert "day-of-week range 'fri-mon' is reversed" in cron_error("0 0 * * fri-mon").detail


@pytest.mark.parametrize(
    ("schedule", "fragment"),
    [
        ("a b c d e", "minute value 'a' is not a number"),
        ("0 0 ? * *", "day-of-month value '?' is not a number"),
        ("0 0 L * *", "day-of-month value 'L' is not a number"),
        ("0 0 * * 1#2", "day-of-week value '1#2' is not a number or a name (sun-sat)"),
        ("0 0 * * monday", "day-of-week value 'monday' is not a number or a name (sun-sat)"),
        ("0 0 * foo *", "month value 'foo' is not a number or a name (jan-dec)"),
        ("0 0 * * -1", "day-of-week item '-1' is not a value, range or step"),
        ("0 0 * * 1-", "day-of-week item '1-' is not a value, range or step"),
        ("/5 * * * *", "minute item '/5' is not a value, range or step"),
        ("*-5 * * * *", "minute value '*' is not a number"),
        ("1,,2 * * * *", "minute has an empty list item in '1,,2'"),
        ("0 0 * * mon,", "day-of-week has an empty list item"),
        ("0 jan * * *", "hour value 'jan' is not a number"),
        ("0 0 * * \uff10", "day-of-week value '\uff10' is not a number"),
    ],
)
def test_rejects_garbage_with_the_offending_token(schedule: str, fragment: str) -> None:
    assert fragment in cron_error(schedule).detail


@pytest.mark.parametrize(
    ("schedule", "count"),
    [("garbage", 1), ("0 0 * *", 4), ("* * * * * * *", 7), ("", 0), ("   ", 0)],
)
def test_rejects_wrong_field_count(schedule: str, count: int) -> None:
    detail = cron_error(schedule).detail
    assert f"expected 5 fields (minute hour day-of-month month day-of-week), got {count}" in detail


def test_six_field_expression_says_seconds_are_unsupported() -> None:
    detail = cron_error("0 0 9 * * 1").detail
    assert detail.endswith("got 6; seconds and year fields are not supported")


def test_rejects_expression_that_can_never_fire() -> None:
    assert cron_error("0 0 30 2 *").detail.endswith(
        "never fires: no chosen month has any of the chosen days"
    )
    assert "never fires" in cron_error("0 0 31 4,6,9,11 *").detail
    # With a weekday the cron OR rule makes it fire on Fridays, so it is valid.
    parse_cron("0 0 30 2 fri")


def test_rejects_unknown_macro_and_non_string() -> None:
    assert "unknown macro" in cron_error("@reboot").detail
    with pytest.raises(Invalid) as info:
        parse_cron(None)  # type: ignore[arg-type]
    assert info.value.code == "invalid_cron"


def test_rejects_absurdly_long_expression() -> None:
    with pytest.raises(Invalid) as info:
        parse_cron(",".join(["1"] * 600) + " * * * *")
    assert info.value.code == "invalid_cron"
    assert "longer than 1000 characters" in info.value.detail


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@ANNUALLY", "0 0 1 1 *"),
    ],
)
def test_macros_fire_like_their_expansion(macro: str, expanded: str) -> None:
    start = datetime(2026, 11, 24, 10, 17, tzinfo=UTC)
    end = datetime(2029, 1, 1, tzinfo=UTC)
    assert parse_cron(macro).ticks_between(start, end, 5) == parse_cron(expanded).ticks_between(
        start, end, 5
    )


def test_unknown_timezone_gives_the_documented_message() -> None:
    with pytest.raises(Invalid) as info:
        parse_cron("0 9 * * *", "Mars/Base")
    assert info.value.detail == "trigger.timezone: unknown time zone 'Mars/Base'"
    assert info.value.field == "trigger.timezone"
    assert info.value.code == "invalid_timezone"


@pytest.mark.parametrize(
    "name",
    ["", "Europe", "europe/berlin", "../etc/passwd", "/etc/localtime", "localtime", "a\x00b"],
)
def test_rejects_names_that_are_not_iana_zones(name: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_timezone(name)
    assert info.value.code == "invalid_timezone"
    assert info.value.field == "trigger.timezone"


def test_bad_schedule_is_reported_before_bad_timezone() -> None:
    with pytest.raises(Invalid) as info:
        parse_cron("61 * * * *", "Mars/Base")
    assert info.value.code == "invalid_cron"


def test_accepts_iana_zones_and_extra_whitespace() -> None:
    schedule = parse_cron("  0\t9  * *   1-5 ", "America/New_York")
    assert schedule.expression == "0\t9  * *   1-5"
    assert schedule.timezone == "America/New_York"
    assert parse_cron("0 9 * * 1-5").timezone == "UTC"


@pytest.mark.parametrize("seconds", [0, -1, -3600])
def test_rejects_interval_below_one_second(seconds: int) -> None:
    with pytest.raises(Invalid) as info:
        parse_interval(seconds)
    assert info.value.code == "invalid_interval"
    assert info.value.field == "trigger.seconds"
    assert info.value.detail == f"trigger.seconds: must be at least 1 second, got {seconds}"


@pytest.mark.parametrize("seconds", [True, 1.5, "60", None])
def test_rejects_interval_that_is_not_whole_seconds(seconds: object) -> None:
    with pytest.raises(Invalid) as info:
        parse_interval(seconds)  # type: ignore[arg-type]
    assert info.value.code == "invalid_interval"
    assert "whole number of seconds" in info.value.detail


def test_rejects_interval_beyond_ten_years() -> None:
    with pytest.raises(Invalid) as info:
        IntervalSchedule(10 * 365 * 24 * 3600 + 1)
    assert info.value.code == "invalid_interval"


def test_naive_datetimes_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_cron("* * * * *").next_after(datetime(2026, 11, 24))
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_interval(60, datetime(2026, 11, 24))


def test_schedules_satisfy_the_protocol_and_describe_themselves() -> None:
    cron = parse_cron("0 9 * * 1-5", "Europe/Berlin")
    interval = parse_interval(90, datetime(2026, 11, 24, 9, tzinfo=UTC))
    assert isinstance(cron, Schedule)
    assert isinstance(interval, Schedule)
    assert describe(cron) == "cron '0 9 * * 1-5' (Europe/Berlin)"
    assert describe(interval) == "every 90 s from 2026-11-24T09:00:00+00:00"


def test_equal_meaning_means_equal_schedules() -> None:
    assert parse_cron("0 9 * * mon-fri", "UTC") == parse_cron("0 9 * * 1-5")
    assert parse_cron("0 9 * * 7") == parse_cron("0 9 * * 0")
    assert parse_cron("0 9 * * 1-5") != parse_cron("0 9 * * 1-5", "Europe/Berlin")
    assert isinstance(parse_cron("@daily"), CronSchedule)
