"""Geometry of the experiment page's overlay line charts, drawn as inline SVG.

The server computes every coordinate here and the template only writes them
out, so a chart is readable without JavaScript. One path per variant; a bucket
without a value breaks the line rather than drawing a misleading slope.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

# Okabe-Ito: told apart by people with the common colour-vision deficiencies.
PALETTE = (
    "#0072b2",
    "#d55e00",
    "#009e73",
    "#cc79a7",
    "#e69f00",
    "#56b4e9",
    "#7f7f7f",
    "#000000",
)

WIDTH, HEIGHT = 640, 240
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 16, 12, 36

Point = tuple[datetime, float | None]


@dataclass(frozen=True)
class Marker:
    x: float
    y: float
    label: str


@dataclass(frozen=True)
class Line:
    variant: str
    color: str
    d: str
    markers: tuple[Marker, ...]


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    lines: tuple[Line, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    width: int = WIDTH
    height: int = HEIGHT
    left: float = MARGIN_LEFT
    right: float = WIDTH - MARGIN_RIGHT
    top: float = MARGIN_TOP
    bottom: float = HEIGHT - MARGIN_BOTTOM

    @property
    def empty(self) -> bool:
        return not any(line.markers for line in self.lines)


def colors_for(variants: Sequence[str]) -> dict[str, str]:
    """One colour per variant, stable across every chart and table of a page."""
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(variants)}


def _nice(step: float) -> float:
    exponent = math.floor(math.log10(step))
    scale = 10.0**exponent
    fraction = step / scale
    for nice in (1.0, 2.0, 2.5, 5.0, 10.0):
        if fraction <= nice + 1e-9:
            return nice * scale
    return 10.0 * scale


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (the axis runs from the first to the last)."""
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    step = _nice((high - low) / max(1, count - 1))
    first = math.floor(low / step + 1e-9) * step
    last = math.ceil(high / step - 1e-9) * step
    n = round((last - first) / step)
    return [round(first + i * step, 12) for i in range(n + 1)]


def tick_text(value: float, step: float) -> str:
    """A tick value with just the decimals its step needs: 8, 1.4, 0.25, 2.5."""
    decimals = next((d for d in range(7) if abs(round(step, d) - step) < 1e-9 * step), 6)
    text = f"{value:,.{decimals}f}"
    return ("0" if float(text.replace(",", "")) == 0 else text).replace("-", "\u2212")


def _time_label(when: datetime, span: timedelta, step: timedelta) -> str:
    if step >= timedelta(days=1):
        return when.strftime("%b %d")
    if span <= timedelta(days=1):
        return when.strftime("%H:%M")
    return when.strftime("%b %d %H:%M")


def _x_ticks(times: Sequence[datetime], x_of: Callable[[int], float]) -> tuple[Tick, ...]:
    if not times:
        return ()
    span = times[-1] - times[0]
    step = times[1] - times[0] if len(times) > 1 else timedelta(hours=1)
    wanted = min(6, len(times))
    indexes = sorted({round(i * (len(times) - 1) / max(1, wanted - 1)) for i in range(wanted)})
    return tuple(Tick(x_of(i), _time_label(times[i], span, step)) for i in indexes)


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[Point]]],
    *,
    colors: Mapping[str, str],
    y_label: Callable[[float], str],
    y_floor: float | None = None,
    y_ceiling: float | None = None,
    tick_label: Callable[[float], str] | None = None,
) -> Chart:
    """An overlay chart of per-variant series sharing one time axis.

    ``y_label`` writes a value in a marker's tooltip; ``tick_label`` an axis tick
    (by default with the decimals the tick step needs). ``y_floor`` and
    ``y_ceiling`` pin the axis (0 and 1 for a rate) instead of fitting it to the data.
    """
    times = sorted({t for _, points in series for t, _ in points})
    values = [v for _, points in series for _, v in points if v is not None and math.isfinite(v)]
    low = y_floor if y_floor is not None else min(values, default=0.0)
    high = y_ceiling if y_ceiling is not None else max(values, default=1.0)
    if y_floor is not None and high <= low:
        high = low + 1  # nothing above the floor yet (no runs): a unit axis, not a negative one
    ticks = nice_ticks(low, high)
    y_min, y_max = ticks[0], ticks[-1]
    chart = Chart(title=title, lines=(), y_ticks=(), x_ticks=())
    index = {t: i for i, t in enumerate(times)}

    def x_of(i: int) -> float:
        if len(times) == 1:
            return (chart.left + chart.right) / 2
        return chart.left + (chart.right - chart.left) * i / (len(times) - 1)

    def y_of(v: float) -> float:
        return chart.bottom - (chart.bottom - chart.top) * (v - y_min) / (y_max - y_min)

    lines = []
    for variant, points in series:
        commands: list[str] = []
        markers: list[Marker] = []
        pen_down = False
        for t, v in sorted(points, key=lambda p: p[0]):
            if v is None or not math.isfinite(v):
                pen_down = False
                continue
            x, y = x_of(index[t]), y_of(v)
            commands.append(f"{'L' if pen_down else 'M'}{x:.1f} {y:.1f}")
            markers.append(Marker(x, y, f"{variant} · {t:%Y-%m-%d %H:%M} UTC · {y_label(v)}"))
            pen_down = True
        lines.append(
            Line(variant, colors.get(variant, PALETTE[-1]), " ".join(commands), tuple(markers))
        )
    return Chart(
        title=title,
        lines=tuple(lines),
        y_ticks=tuple(
            Tick(y_of(t), tick_label(t) if tick_label else tick_text(t, ticks[1] - ticks[0]))
            for t in ticks
        ),
        x_ticks=_x_ticks(times, x_of),
    )
