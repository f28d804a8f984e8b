"""The automation page's allocation chart: each revision's weights as shares of 100 %.

A bandit writes a new revision at every reweight, so this is where a reader sees
traffic move to the variant that works (and that no arm is starved below its
minimum). One stacked bar per revision, oldest on the left, one colour per
variant as on the experiment page; the latest shares are written right of the plot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from automation_server.api.ui.chart import (
    HEIGHT,
    MARGIN_BOTTOM,
    MARGIN_LEFT,
    MARGIN_RIGHT,
    MARGIN_TOP,
    PALETTE,
    WIDTH,
    Marker,
    Tick,
    spread_labels,
)

MAX_REVISIONS = 60  # the latest ones: older bars would be thinner than a pixel or two
SHARE_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
BAR_GAP = 0.2  # of a slot's width, between neighbouring bars


@dataclass(frozen=True)
class Segment:
    variant: str
    color: str
    y: float
    height: float
    label: str  # tooltip: revision, variant, share and weight


@dataclass(frozen=True)
class Bar:
    revision: int
    x: float
    width: float
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class WeightsChart:
    title: str
    bars: tuple[Bar, ...]
    variants: tuple[tuple[str, str], ...]  # (name, colour) in stacking order, for the legend
    end_labels: tuple[tuple[str, str, Marker], ...]  # (variant, colour, latest share)
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    hidden: int  # older revisions left out
    width: int = WIDTH
    height: int = HEIGHT
    left: float = MARGIN_LEFT
    right: float = WIDTH - MARGIN_RIGHT
    top: float = MARGIN_TOP
    bottom: float = HEIGHT - MARGIN_BOTTOM


def _stacked(
    revision: int,
    weights: Mapping[str, int],
    variants: Sequence[str],
    colors: Mapping[str, str],
    bottom: float,
    height: float,
) -> tuple[Segment, ...]:
    """Shares stacked from the bottom in ``variants`` order; a zero weight draws nothing."""
    total = sum(weights.values())
    if total <= 0:
        return ()
    segments, below = [], 0.0
    for name in variants:
        weight = weights.get(name, 0)
        if weight <= 0:
            continue
        share = weight / total
        segments.append(
            Segment(
                name,
                colors.get(name, PALETTE[-1]),
                bottom - height * (below + share),
                height * share,
                f"revision {revision} · {name} {share:.1%} (weight {weight})",
            )
        )
        below += share
    return tuple(segments)


def _end_labels(
    bars: Sequence[Bar], colors: Mapping[str, str], top: float, bottom: float, x: float
) -> tuple[tuple[str, str, Marker], ...]:
    """The newest bar's shares, each beside the middle of its segment (spread apart)."""
    if not bars or not bars[-1].segments:
        return ()
    segments = bars[-1].segments
    plot = bottom - top
    ys = spread_labels([s.y + s.height / 2 for s in segments], top + 4, bottom)
    return tuple(
        (s.variant, s.color, Marker(x, y + 4, f"{s.height / plot:.0%}"))
        for s, y in zip(segments, ys, strict=True)
    )


def weights_chart(
    revisions: Sequence[tuple[int, Mapping[str, int]]],
    variants: Sequence[str],
    colors: Mapping[str, str],
) -> WeightsChart:
    """``revisions`` are (number, weights) in any order; ``variants`` gives the stacking
    order (names found only in old revisions are stacked after them)."""
    ordered = sorted(revisions, key=lambda r: r[0])
    shown = ordered[-MAX_REVISIONS:]
    names = list(variants) + sorted({n for _, w in shown for n in w} - set(variants))
    left, right = float(MARGIN_LEFT), float(WIDTH - MARGIN_RIGHT)
    top, bottom = float(MARGIN_TOP), float(HEIGHT - MARGIN_BOTTOM)
    slot = (right - left) / max(1, len(shown))
    bars = tuple(
        Bar(
            number,
            left + i * slot + slot * BAR_GAP / 2,
            slot * (1 - BAR_GAP),
            _stacked(number, weights, names, colors, bottom, bottom - top),
        )
        for i, (number, weights) in enumerate(shown)
    )
    wanted = min(8, len(bars))
    picks = sorted({round(i * (len(bars) - 1) / max(1, wanted - 1)) for i in range(wanted)})
    return WeightsChart(
        title="Weights over revisions",
        bars=bars,
        variants=tuple((n, colors.get(n, PALETTE[-1])) for n in names),
        end_labels=_end_labels(bars, colors, top, bottom, right + 8),
        y_ticks=tuple(Tick(bottom - (bottom - top) * t, f"{t:.0%}") for t in SHARE_TICKS),
        x_ticks=tuple(Tick(bars[i].x + bars[i].width / 2, str(bars[i].revision)) for i in picks)
        if bars
        else (),
        hidden=len(ordered) - len(shown),
    )
