# ruff: noqa: RUF001 - pages write the typographic minus (U+2212) and en dash (U+2013)
"""Numbers, times and sizes on dashboard pages read the way people write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from automation_server.api.ui import format as fmt

NOW = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "—"),
        (0, "0 ms"),
        (812, "812 ms"),
        (999.4, "999 ms"),
        (3200, "3.2 s"),
        (9_949, "9.9 s"),
        (9_960, "10 s"),
        (42_400, "42 s"),
        (245_000, "4 min 5 s"),
        (240_000, "4 min"),
        (7_380_000, "2 h 3 min"),
        (3 * 86_400_000 + 4 * 3_600_000, "3 d 4 h"),
        (float("nan"), "—"),
    ],
)
def test_durations(ms: float | None, text: str) -> None:
    assert fmt.duration_ms(ms) == text


def test_percentages_with_intervals() -> None:
    assert fmt.percent_interval(0.8123, [0.770, 0.8514]) == "81.2% [77.0–85.1]"
    assert fmt.percent_interval(1.0, [0.6, 1.0]) == "100.0% [60.0–100.0]"
    assert fmt.percent_interval(0.5, None) == "50.0%"
    assert fmt.percent_interval(None, None) == "—"
    assert fmt.percent(0.0449, 0) == "4%"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.93412, "0.934"),
        (12.345, "12.3"),
        (1234.5, "1,234"),
        (-0.5, "−0.500"),
        (0.0000123, "1.23e−05"),
        (0, "0"),
        (None, "—"),
    ],
)
def test_numbers_keep_three_significant_digits(value: float | None, text: str) -> None:
    assert fmt.number(value) == text


def test_estimates_take_their_decimals_from_the_interval_width() -> None:
    assert fmt.estimate(0.93412, [0.9121, 0.9563]) == "0.934 [0.912–0.956]"
    assert fmt.estimate(104.2, [98.1, 110.4]) == "104 [98–110]"
    assert fmt.estimate(3.44, [2.71, 4.18]) == "3.4 [2.7–4.2]"
    assert fmt.estimate(-0.004, [-0.012, 0.004]) == "−0.004 [−0.012–0.004]"
    assert fmt.estimate(1.5, None) == "1.50"


def test_differences_are_signed_and_percentage_points_for_rates() -> None:
    assert fmt.difference(0.12, [-0.03, 0.27]) == "+0.12 [−0.03, +0.27]"
    assert fmt.difference(0.041, [-0.02, 0.102], points=True) == "+4.1 pp [−2.0, +10.2]"
    assert fmt.difference(-0.0001, [-0.02, 0.02]) == "0.000 [−0.020, +0.020]"
    assert fmt.difference(0.0, None, points=True) == "0.0 pp"
    assert fmt.difference(None, None) == "—"


def test_probabilities_never_claim_certainty() -> None:
    assert fmt.probability(0.973) == "97.3%"
    assert fmt.probability(0.99995) == ">99.9%"
    assert fmt.probability(0.00001) == "<0.1%"
    assert fmt.probability(None) == "—"
    assert fmt.p_value(0.04213) == "0.042"
    assert fmt.p_value(0.0031) == "0.0031"
    assert fmt.p_value(1e-9) == "<0.0001"


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=2), "just now"),
        (timedelta(seconds=42), "42 s ago"),
        (timedelta(minutes=3, seconds=10), "3 min ago"),
        (timedelta(hours=5), "5 h ago"),
        (timedelta(days=2, hours=3), "2 d ago"),
        (-timedelta(minutes=7), "in 7 min"),
        (timedelta(days=45), "2026-10-10"),
    ],
)
def test_relative_times(delta: timedelta, text: str) -> None:
    assert fmt.relative(NOW - delta, NOW) == text


def test_relative_time_reads_the_api_strings() -> None:
    assert fmt.relative("2026-11-24T08:57:00Z", NOW) == "3 min ago"
    assert fmt.relative(None, NOW) == "—"
    assert fmt.utc("2026-11-24T09:00:00.123456Z") == "2026-11-24 09:00:00 UTC"
    assert fmt.utc("2026-11-24T10:00:00+01:00") == "2026-11-24 09:00:00 UTC"


def test_sizes_ids_and_digests() -> None:
    assert fmt.size_bytes(812) == "812 B"
    assert fmt.size_bytes(2048) == "2.0 KiB"
    assert fmt.size_bytes(3 * 1024 * 1024 // 2) == "1.5 MiB"
    assert fmt.short_id("01a20b97-19f8-78f1-a7b7-5ce547217a48") == "5ce547217a48"
    assert fmt.short_digest("sha256:" + "9f2c" + "0" * 56 + "b1a0") == "sha256:9f2c0000…b1a0"
    assert fmt.plain(0.75) == "0.75" and fmt.plain(-1e-7) == "−1e−07"
