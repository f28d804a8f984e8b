# ruff: noqa: RUF001 - pages write the typographic minus (U+2212)
"""Effect chart geometry (band, whiskers, zero line, clipped axis), per-bucket end labels,
the cumulative points against the summary's own comparison, and the rendered page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from automation_server.api.ui import format as fmt
from automation_server.api.ui.chart import (
    LABEL_GAP,
    EffectChart,
    EffectValue,
    colors_for,
    effect_chart,
    line_chart,
    spread_labels,
    tick_text,
)
from automation_server.experiments import stats
from automation_server.experiments.comparisons import _compare
from automation_server.experiments.effects import compare, cumulative
from tests.unit.test_ui_render import HOSTILE, experiment_page

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
STEP = timedelta(minutes=10)


def values(*points: tuple[float | None, tuple[float, float] | None]) -> list[EffectValue]:
    return [EffectValue(T0 + i * STEP, e, iv) for i, (e, iv) in enumerate(points)]


def chart(
    series: list[tuple[str, list[EffectValue]]],
    *,
    better: str = "up",
    bounds: tuple[float, float] | None = None,
) -> EffectChart:
    return effect_chart(
        "score against control",
        series,
        colors=colors_for(["control", *(v for v, _ in series)]),
        reading=lambda v: fmt.difference(v.estimate, v.interval),
        tick_label=tick_text,
        better=better,
        bounds=bounds,
    )


def test_band_for_runs_of_intervals_whisker_for_a_lone_one_and_a_zero_line() -> None:
    series = values(
        (0.5, None),  # two runs per arm: an estimate, no interval yet
        (0.4, (-1.0, 1.8)),  # alone between points without one: a whisker
        (0.3, None),
        (0.3, (-0.2, 0.8)),
        (0.35, (-0.1, 0.8)),
        (0.3, (0.0, 0.6)),
    )
    c = chart([("fast", series)])
    (line,) = c.lines
    assert len(line.whiskers) == 1 and line.band.count("Z") == 1
    assert line.band.count("L") == 5  # three upper ends and three lower ones
    assert len(line.markers) == 6 and line.d.startswith("M")
    assert c.top < c.zero < c.bottom
    assert line.reading == "+0.30 [0.00, +0.60]"
    assert "by 2026-11-24 09:50 UTC: +0.30" in line.markers[-1].label


def test_zero_is_always_on_the_axis_and_higher_is_up() -> None:
    c = chart([("fast", values((2.0, (1.5, 2.5)), (2.1, (1.8, 2.4))))])
    y = {t.label: t.position for t in c.y_ticks}
    assert "0" in y and y["0"] > min(y.values())
    assert c.zero == pytest.approx(y["0"])


def test_first_wide_intervals_do_not_flatten_the_latest_band() -> None:
    wide = values((0.1, (-50.0, 50.0)), *[(0.1, (-0.1, 0.3))] * 8)
    c = chart([("fast", wide)])
    ticks = [t.label for t in c.y_ticks]
    assert c.clipped
    assert float(ticks[-1].replace("−", "-")) < 5


def test_rates_stay_within_minus_one_and_one() -> None:
    c = chart([("fast", values((0.2, (-1.0, 1.0)), (0.1, (-0.9, 0.95))))], bounds=(-1.0, 1.0))
    labels = [float(t.label.replace("−", "-")) for t in c.y_ticks]
    assert min(labels) >= -1.0 and max(labels) <= 1.0


def test_a_treatment_without_points_reads_so() -> None:
    c = chart([("fast", [])])
    assert c.empty and c.lines[0].reading == "no runs to compare yet"


def test_end_labels_keep_apart_and_inside_the_plot() -> None:
    placed = spread_labels([100.0, 101.0, 102.0, 230.0], 16.0, 204.0)
    ordered = sorted(placed)
    assert all(b - a >= LABEL_GAP - 1e-9 for a, b in pairwise(ordered))
    assert ordered[0] >= 16.0 and ordered[-1] <= 204.0


def test_per_bucket_lines_write_their_latest_value() -> None:
    series = [
        ("control", [(T0, 1.0), (T0 + STEP, 1.2)]),
        ("fast", [(T0, 1.3), (T0 + STEP, None)]),
    ]
    c = line_chart("score", series, colors=colors_for(["control", "fast"]), y_label=fmt.number)
    labels = {line.variant: line.end_label for line in c.lines}
    assert labels["control"] is not None and labels["control"].label == "1.20"
    assert labels["fast"] is not None and labels["fast"].label == "1.30"  # the last value
    assert all(label.x > c.right for label in labels.values() if label)


def test_cumulative_points_are_the_summary_comparison_of_everything_so_far() -> None:
    buckets = {
        "control": {0: stats.MeanStats.of([1.0, 1.2]), 600: stats.MeanStats.of([0.9, 1.1, 1.0])},
        "fast": {0: stats.MeanStats.of([1.4]), 1200: stats.MeanStats.of([1.5, 1.1, 1.3])},
    }
    points = cumulative(buckets, "control", "fast", [0, 600, 1200], 600, rate=False)
    assert [p.t.timestamp() for p in points] == [600, 1200, 1800]
    assert [(p.control.count, p.treatment.count) for p in points] == [(2, 1), (5, 1), (5, 4)]
    assert points[0].interval is None  # one treatment run: no spread yet
    last = points[-1]
    summary = _compare(last.control, last.treatment)  # what the summary computes
    assert last.estimate == pytest.approx(summary["difference"]["estimate"])
    assert list(last.interval or ()) == pytest.approx(summary["always_valid"]["interval"])


def test_earlier_buckets_fold_into_the_first_point() -> None:
    buckets = {
        "control": {0: stats.MeanStats.of([1.0, 2.0])},
        "fast": {0: stats.MeanStats.of([3.0])},
    }
    (point,) = cumulative(buckets, "control", "fast", [600], 600, rate=False)
    assert (point.control.count, point.treatment.count) == (2, 1)


def test_rate_intervals_are_cut_at_plus_minus_one() -> None:
    control, fast = stats.MeanStats.from_successes(1, 3), stats.MeanStats.from_successes(3, 3)
    estimate, interval, tau2 = compare(control, fast, rate=True)
    assert estimate == pytest.approx(2 / 3) and tau2 is not None
    assert interval is not None and interval[0] >= -1.0 and interval[1] == 1.0


def test_the_page_draws_effect_charts_and_escapes_names() -> None:
    series = [("fast", values((0.2, None), (0.12, (0.03, 0.21)), (0.1, (0.02, 0.2))))]
    charts = [
        (f"effect:{HOSTILE}", chart(series)),
        ("effect:success_rate", chart(series, better="down")),
    ]
    html = experiment_page(effect_charts=charts, auto_bucket="1h", bucket_asked=None)
    assert HOSTILE not in html
    figure = re.search(
        r'<figure class="chart effect" data-chart="effect:success_rate">.*?</figure>', html, re.S
    )
    assert figure is not None
    body = figure.group(0)
    assert body.count('class="zero"') == 1 and "0: no" in body and "difference" in body
    assert '<path class="band" data-variant="fast"' in body
    assert "▲ treatment worse" in body and "▼ treatment better" in body
    assert "fast − control: " in body and "+0.10 [+0.02, +0.20]" in body
    assert '<option value="" selected>auto (1h)</option>' in html
