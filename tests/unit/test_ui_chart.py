# ruff: noqa: RUF001 - pages write the typographic minus (U+2212) and en dash (U+2013)
"""Overlay chart geometry: one path per variant, gaps for empty buckets, round ticks."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from automation_server.api.ui import format as fmt
from automation_server.api.ui.chart import colors_for, line_chart, nice_ticks, tick_text

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def points(*values: float | None) -> list[tuple[datetime, float | None]]:
    return [(T0 + i * HOUR, v) for i, v in enumerate(values)]


def coords(d: str) -> list[tuple[str, float, float]]:
    return [(c, float(x), float(y)) for c, x, y in re.findall(r"([ML])([\d.]+) ([\d.]+)", d)]


def test_one_path_per_variant_with_a_gap_where_a_bucket_is_empty() -> None:
    series = [("control", points(1.0, 2.0, None, 4.0)), ("fast", points(2.0, 2.0, 2.0, 2.0))]
    chart = line_chart("score", series, colors=colors_for(["control", "fast"]), y_label=str)
    assert [line.variant for line in chart.lines] == ["control", "fast"]
    control = coords(chart.lines[0].d)
    assert [c for c, _, _ in control] == ["M", "L", "M"]  # the empty bucket breaks the line
    assert len(chart.lines[0].markers) == 3 and len(chart.lines[1].markers) == 4
    assert chart.lines[0].color != chart.lines[1].color


def test_values_map_inside_the_plot_with_higher_values_higher_up() -> None:
    chart = line_chart("score", [("a", points(0.0, 5.0, 10.0))], colors={}, y_label=str)
    (m0, m1, m2) = coords(chart.lines[0].d)
    assert m0[1] == pytest.approx(chart.left) and m2[1] == pytest.approx(chart.right)
    assert m0[2] == pytest.approx(chart.bottom) and m2[2] == pytest.approx(chart.top)
    assert m0[2] > m1[2] > m2[2]
    assert m1[1] == pytest.approx((chart.left + chart.right) / 2)


def test_a_single_bucket_sits_in_the_middle() -> None:
    chart = line_chart("score", [("a", points(3.0))], colors={}, y_label=str)
    ((_, x, _),) = coords(chart.lines[0].d)
    assert x == pytest.approx((chart.left + chart.right) / 2)
    assert not chart.empty


def test_a_variant_without_values_still_has_its_path_and_the_chart_says_empty() -> None:
    chart = line_chart("score", [("a", points(None, None))], colors={}, y_label=str)
    assert chart.lines[0].d == "" and chart.empty


def test_rate_axis_is_pinned_from_zero_to_one() -> None:
    chart = line_chart(
        "rate",
        [("a", points(0.4, 0.6))],
        colors={},
        y_label=fmt.percent,
        tick_label=lambda v: fmt.percent(v, 0),
        y_floor=0.0,
        y_ceiling=1.0,
    )
    labels = [t.label for t in chart.y_ticks]
    assert labels[0] == "0%" and labels[-1] == "100%"
    assert "40.0%" in chart.lines[0].markers[0].label


def test_counts_axis_without_runs_is_not_negative() -> None:
    chart = line_chart("runs", [("a", points(0, 0))], colors={}, y_label=str, y_floor=0.0)
    assert chart.y_ticks[0].label == "0"
    assert all(float(t.label) >= 0 for t in chart.y_ticks)


@pytest.mark.parametrize(
    ("low", "high", "ticks"),
    [
        (0, 8, [0, 2, 4, 6, 8]),
        (1.02, 1.33, [1.0, 1.1, 1.2, 1.3, 1.4]),
        (0, 1, [0, 0.25, 0.5, 0.75, 1.0]),
        (5, 5, [4.5, 4.75, 5.0, 5.25, 5.5]),
        (-3, 7, [-5, -2.5, 0, 2.5, 5, 7.5]),
        (0, 130, [0, 50, 100, 150]),
    ],
)
def test_nice_ticks_cover_the_range_with_round_steps(
    low: float, high: float, ticks: list[float]
) -> None:
    assert nice_ticks(low, high) == pytest.approx(ticks)


def test_tick_text_uses_the_decimals_of_the_step() -> None:
    assert tick_text(8.0, 2.0) == "8"
    assert tick_text(1.4, 0.1) == "1.4"
    assert tick_text(0.25, 0.25) == "0.25"
    assert tick_text(-2.0, 2.0) == "−2"
    assert tick_text(-2.5, 2.5) == "−2.5"
    assert tick_text(1500.0, 500.0) == "1,500"


def test_time_ticks_label_hours_within_a_day_and_dates_beyond() -> None:
    day = line_chart("s", [("a", points(*range(10)))], colors={}, y_label=str)
    assert day.x_ticks[0].label == "09:00" and day.x_ticks[-1].label == "18:00"
    week = [(T0 + i * timedelta(days=1), float(i)) for i in range(7)]
    long = line_chart("s", [("a", week)], colors={}, y_label=str)
    assert long.x_ticks[0].label == "Nov 24"
