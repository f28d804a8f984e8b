"""Geometry of the experiment page's charts, drawn as inline SVG.

The server computes every coordinate here and the template only writes them
out, so a chart is readable without JavaScript. Two kinds:

- :func:`line_chart`, per-bucket values overlaid, one path per variant; a bucket
  without a value breaks the line rather than drawing a misleading slope, and
  each line's latest value is written at its end, so a chart with one or two
  buckets (a young experiment) still reads as numbers;
- :func:`effect_chart`, each treatment's cumulative difference from the control
  with its always-valid interval as a band, around a labelled zero line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
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
# The right margin holds each line's latest value (its end label).
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 60, 12, 36
LABEL_GAP = 13.0  # px between stacked end labels (11 px text)

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
    end_label: Marker | None = None  # the latest value, written right of the plot


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


@dataclass(frozen=True)
class Frame:
    """Where data lands in the plot: the i-th time on x (buckets are evenly spaced),
    a value on y between the first and last tick."""

    count: int  # times on the x axis
    y_min: float
    y_max: float
    left: float = MARGIN_LEFT
    right: float = WIDTH - MARGIN_RIGHT
    top: float = MARGIN_TOP
    bottom: float = HEIGHT - MARGIN_BOTTOM

    def x(self, i: int) -> float:
        if self.count == 1:
            return (self.left + self.right) / 2
        return self.left + (self.right - self.left) * i / (self.count - 1)

    def y(self, v: float) -> float:
        return self.bottom - (self.bottom - self.top) * (v - self.y_min) / (self.y_max - self.y_min)


def spread_labels(wanted: Sequence[float], low: float, high: float) -> list[float]:
    """Label positions near ``wanted`` (any order) at least LABEL_GAP apart, inside
    [low, high]: a downward pass pushes overlaps apart, an upward one keeps the last
    label inside the plot."""
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    placed = [0.0] * len(wanted)
    previous = low - LABEL_GAP
    for i in order:
        placed[i] = previous = max(wanted[i], previous + LABEL_GAP)
    following = high + LABEL_GAP
    for i in reversed(order):
        placed[i] = following = min(placed[i], following - LABEL_GAP)
    return placed


def _with_end_labels(
    lines: Sequence[Line],
    y_label: Callable[[float], str],
    frame: Frame,
    values: Mapping[str, float],
) -> tuple[Line, ...]:
    """Each line with a value gets its latest one written right of the plot."""
    ends = [line for line in lines if line.markers]
    ys = spread_labels([line.markers[-1].y for line in ends], frame.top + 4, frame.bottom)
    labelled = {
        line.variant: Marker(frame.right + 8, y + 4, y_label(values[line.variant]))
        for line, y in zip(ends, ys, strict=True)
    }
    return tuple(replace(line, end_label=labelled.get(line.variant)) for line in lines)


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

    ``y_label`` writes a value in a marker's tooltip and at the line's end;
    ``tick_label`` an axis tick (by default with the decimals the tick step
    needs). ``y_floor`` and ``y_ceiling`` pin the axis (0 and 1 for a rate)
    instead of fitting it to the data.
    """
    times = sorted({t for _, points in series for t, _ in points})
    values = [v for _, points in series for _, v in points if v is not None and math.isfinite(v)]
    low = y_floor if y_floor is not None else min(values, default=0.0)
    high = y_ceiling if y_ceiling is not None else max(values, default=1.0)
    if y_floor is not None and high <= low:
        high = low + 1  # nothing above the floor yet (no runs): a unit axis, not a negative one
    ticks = nice_ticks(low, high)
    frame = Frame(len(times), ticks[0], ticks[-1])
    index = {t: i for i, t in enumerate(times)}
    lines, latest = [], {}
    for variant, points in series:
        commands: list[str] = []
        markers: list[Marker] = []
        pen_down = False
        for t, v in sorted(points, key=lambda p: p[0]):
            if v is None or not math.isfinite(v):
                pen_down = False
                continue
            x, y = frame.x(index[t]), frame.y(v)
            commands.append(f"{'L' if pen_down else 'M'}{x:.1f} {y:.1f}")
            markers.append(Marker(x, y, f"{variant} · {t:%Y-%m-%d %H:%M} UTC · {y_label(v)}"))
            latest[variant] = v
            pen_down = True
        lines.append(
            Line(variant, colors.get(variant, PALETTE[-1]), " ".join(commands), tuple(markers))
        )
    return Chart(
        title=title,
        lines=_with_end_labels(lines, y_label, frame, latest),
        y_ticks=tuple(
            Tick(frame.y(t), tick_label(t) if tick_label else tick_text(t, ticks[1] - ticks[0]))
            for t in ticks
        ),
        x_ticks=_x_ticks(times, frame.x),
    )


# ---- cumulative effects ----------------------------------------------------------


@dataclass(frozen=True)
class EffectValue:
    """One cumulative point of a treatment: the difference and its interval at ``t``."""

    t: datetime
    estimate: float | None
    interval: tuple[float, float] | None
    note: str = ""  # for the tooltip: how many runs stand behind it


@dataclass(frozen=True)
class Whisker:
    """An interval drawn as a vertical bar: a point with no neighbour to make a band with."""

    x: float
    y1: float
    y2: float


@dataclass(frozen=True)
class EffectLine:
    variant: str
    color: str
    d: str  # the estimate
    band: str  # the interval: closed polygons, one per run of points that have one
    whiskers: tuple[Whisker, ...]
    markers: tuple[Marker, ...]
    reading: str  # the latest difference and interval, for the legend


@dataclass(frozen=True)
class EffectChart:
    title: str
    lines: tuple[EffectLine, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    zero: float  # y of the zero line
    better: str  # "up" or "down": where the treatment is better
    clipped: bool  # some (early, wide) intervals run past the axis
    note: str = ""
    width: int = WIDTH
    height: int = HEIGHT
    left: float = MARGIN_LEFT
    right: float = WIDTH - MARGIN_RIGHT
    top: float = MARGIN_TOP
    bottom: float = HEIGHT - MARGIN_BOTTOM

    @property
    def empty(self) -> bool:
        return not any(line.markers for line in self.lines)


def _effect_range(
    series: Sequence[tuple[str, Sequence[EffectValue]]], bounds: tuple[float, float] | None
) -> tuple[float, float, bool]:
    """The y range: zero, every estimate and every interval, except that the first,
    widest intervals (a handful of runs) may not stretch the axis beyond twice the
    spread of the latest ones, or the band that matters would be a flat line."""
    estimates = [v.estimate for _, vs in series for v in vs if v.estimate is not None]
    ends = [e for _, vs in series for v in vs if v.interval for e in v.interval]
    latest = [e for _, vs in series if vs and vs[-1].interval for e in vs[-1].interval]
    core = [0.0, *estimates, *latest]
    low, high = min(core), max(core)
    reach = 2.0 * (high - low or 1.0)
    low_all, high_all = min([low, *ends]), max([high, *ends])
    low, high = max(low_all, low - reach), min(high_all, high + reach)
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return low, high, low > low_all or high < high_all


def _band(points: Sequence[tuple[float, float, float]]) -> str:
    """A closed polygon through the upper ends left to right and the lower ones back."""
    upper = [f"{x:.1f} {y:.1f}" for x, _, y in points]
    lower = [f"{x:.1f} {y:.1f}" for x, y, _ in reversed(points)]
    return "M" + " L".join(upper + lower) + " Z"


def _effect_line(
    variant: str,
    values: Sequence[EffectValue],
    frame: Frame,
    index: Mapping[datetime, int],
    color: str,
    reading: Callable[[EffectValue], str],
) -> EffectLine:
    commands, markers, whiskers, bands = [], [], [], []
    run: list[tuple[float, float, float]] = []  # consecutive points with an interval

    def close_run() -> None:
        if len(run) > 1:
            bands.append(_band(run))
        elif run:
            whiskers.append(Whisker(run[0][0], run[0][1], run[0][2]))
        run.clear()

    pen_down = False
    for v in values:
        x = frame.x(index[v.t])
        if v.interval is None:
            close_run()
        else:
            run.append((x, frame.y(v.interval[0]), frame.y(v.interval[1])))
        if v.estimate is None:
            pen_down = False
            continue
        y = frame.y(v.estimate)
        commands.append(f"{'L' if pen_down else 'M'}{x:.1f} {y:.1f}")
        pen_down = True
        tip = f"{variant} by {v.t:%Y-%m-%d %H:%M} UTC: {reading(v)}"
        markers.append(Marker(x, y, f"{tip} · {v.note}" if v.note else tip))
    close_run()
    latest = values[-1] if values else None
    return EffectLine(
        variant,
        color,
        " ".join(commands),
        " ".join(bands),
        tuple(whiskers),
        tuple(markers),
        reading(latest) if latest else "no runs to compare yet",
    )


def effect_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[EffectValue]]],
    *,
    colors: Mapping[str, str],
    reading: Callable[[EffectValue], str],
    tick_label: Callable[[float, float], str],
    better: str = "up",
    bounds: tuple[float, float] | None = None,
    note: str = "",
) -> EffectChart:
    """Each treatment's cumulative difference from the control (a line) and its interval
    (a band) on one time axis, with the zero line. ``reading`` writes a point for the
    tooltips and the legend, ``tick_label(value, step)`` an axis tick; ``bounds`` clips
    the axis to what a difference can be ([-1, 1] for rates)."""
    times = sorted({v.t for _, values in series for v in values})
    low, high, clipped = _effect_range(series, bounds)
    ticks = nice_ticks(low, high)
    frame = Frame(len(times), ticks[0], ticks[-1])
    index = {t: i for i, t in enumerate(times)}
    lines = tuple(
        _effect_line(variant, values, frame, index, colors.get(variant, PALETTE[-1]), reading)
        for variant, values in series
    )
    step = ticks[1] - ticks[0]
    return EffectChart(
        title=title,
        lines=lines,
        y_ticks=tuple(Tick(frame.y(t), tick_label(t, step)) for t in ticks),
        x_ticks=_x_ticks(times, frame.x),
        zero=frame.y(0.0),
        better=better,
        clipped=clipped,
        note=note,
    )
