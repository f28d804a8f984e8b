"""The allocation chart: one stacked bar of weight shares per revision, oldest first."""

from __future__ import annotations

import pytest

from automation_server.api.ui.chart import colors_for
from automation_server.api.ui.weights_chart import MAX_REVISIONS, weights_chart

VARIANTS = ["control", "fast"]


def test_each_revision_is_a_bar_of_shares_stacked_to_the_full_height() -> None:
    chart = weights_chart(
        [(3, {"control": 1, "fast": 3}), (1, {"control": 1, "fast": 1}), (2, {"control": 1})],
        VARIANTS,
        colors_for(VARIANTS),
    )
    assert [b.revision for b in chart.bars] == [1, 2, 3]  # oldest on the left
    assert chart.bars[0].x < chart.bars[1].x < chart.bars[2].x
    plot = chart.bottom - chart.top
    for bar in chart.bars:
        assert sum(s.height for s in bar.segments) == pytest.approx(plot)
        assert bar.segments[0].y + bar.segments[0].height == pytest.approx(chart.bottom)
    # A zero (or missing) weight draws nothing; the share is in the tooltip.
    assert [s.variant for s in chart.bars[1].segments] == ["control"]
    fast = chart.bars[2].segments[1]
    assert fast.variant == "fast" and fast.height == pytest.approx(0.75 * plot)
    assert fast.label == "revision 3 · fast 75.0% (weight 3)"
    assert {s.color for s in chart.bars[2].segments} == set(colors_for(VARIANTS).values())


def test_latest_shares_are_written_at_the_end_and_ticks_label_revisions() -> None:
    chart = weights_chart(
        [(1, {"control": 1, "fast": 1}), (2, {"control": 1, "fast": 9})],
        VARIANTS,
        colors_for(VARIANTS),
    )
    assert [(name, mk.label) for name, _, mk in chart.end_labels] == [
        ("control", "10%"),
        ("fast", "90%"),
    ]
    assert all(mk.x > chart.right for _, _, mk in chart.end_labels)
    assert [t.label for t in chart.x_ticks] == ["1", "2"]
    assert [t.label for t in chart.y_ticks] == ["0%", "25%", "50%", "75%", "100%"]


def test_only_the_latest_revisions_are_drawn_and_old_variants_still_get_a_colour() -> None:
    revisions = [(n, {"control": 1, "old": 1} if n < 5 else {"control": n}) for n in range(1, 91)]
    chart = weights_chart(revisions, ["control"], colors_for(["control", "old"]))
    assert len(chart.bars) == MAX_REVISIONS and chart.hidden == 90 - MAX_REVISIONS
    assert chart.bars[-1].revision == 90
    assert len(chart.x_ticks) == 8
    every = weights_chart(revisions[:10], ["control"], colors_for(["control", "old"]))
    assert [name for name, _ in every.variants] == ["control", "old"]


def test_a_revision_without_weight_is_an_empty_bar() -> None:
    chart = weights_chart([(1, {"control": 0, "fast": 0})], VARIANTS, {})
    assert chart.bars[0].segments == () and chart.end_labels == ()
