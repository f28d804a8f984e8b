# ruff: noqa: RUF002 - the typographic minus and en dash are the point here
"""Numbers, times and sizes written for people (the dashboard's Jinja filters).

Every helper takes ``None`` and answers an em dash, so templates never test for
missing values. Negative numbers use the typographic minus sign (U+2212), and
ranges the en dash, as in "81.2% [77.0–85.1]".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

DASH = "—"
MINUS = "\u2212"
RANGE = "\u2013"


def _minus(text: str) -> str:
    return text.replace("-", MINUS)


def parse_time(value: str | datetime | None) -> datetime | None:
    """An RFC 3339 string (as the API returns) or a datetime, as aware UTC."""
    if value is None or value == "":
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def duration_ms(ms: float | None) -> str:
    """812 ms, 3.2 s, 42 s, 4 min 5 s, 2 h 3 min, 3 d 4 h."""
    if ms is None or not math.isfinite(ms):
        return DASH
    if ms < 1000:
        return f"{round(ms)} ms"
    seconds = ms / 1000
    if round(seconds, 1) < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{round(seconds)} s"
    return seconds_text(round(seconds))


def seconds_text(total: int) -> str:
    """Whole seconds in the two largest units: 45 s, 4 min 5 s, 2 h 3 min, 3 d 4 h."""
    units = (("d", 86_400), ("h", 3600), ("min", 60), ("s", 1))
    parts: list[str] = []
    rest = total
    for name, size in units:
        count, rest = divmod(rest, size)
        if count or (parts and len(parts) < 2):
            parts.append(f"{count} {name}")
        if len(parts) == 2:
            break
    if not parts:
        return "0 s"
    # "4 min 0 s" says nothing the shorter "4 min" does not.
    return parts[0] if len(parts) == 2 and parts[1].startswith("0 ") else " ".join(parts)


def percent(p: float | None, digits: int = 1) -> str:
    """A fraction as a percentage: 0.8123 -> 81.2%."""
    if p is None or not math.isfinite(p):
        return DASH
    return _minus(f"{p * 100:.{digits}f}%")


def percent_interval(p: float | None, interval: Sequence[float] | None) -> str:
    """81.2% [77.0–85.1]; the estimate alone when there is no interval."""
    if p is None:
        return DASH
    text = percent(p)
    if interval is None or len(interval) != 2:
        return text
    low, high = interval
    return f"{text} [{percent(low)[:-1]}{RANGE}{percent(high)[:-1]}]"


def number(x: float | None, significant: int = 3) -> str:
    """A value with a few significant digits: 0.934, 12.3, 1,234, 1.23e−05."""
    if x is None or not math.isfinite(x):
        return DASH
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude >= 15 or magnitude < -4:
        return _minus(f"{x:.{significant - 1}e}")
    if magnitude >= significant - 1:
        return _minus(f"{round(x):,}")
    decimals = significant - 1 - magnitude
    return _minus(f"{x:,.{decimals}f}")


def _decimals_for(width: float) -> int:
    """Enough decimals to show two significant digits of an interval's width."""
    if width <= 0 or not math.isfinite(width):
        return 3
    return max(0, min(6, 1 - math.floor(math.log10(width))))


def _fixed(x: float, decimals: int, *, signed: bool = False) -> str:
    sign = "+" if signed else ""
    text = f"{x:{sign},.{decimals}f}"
    # "-0.00" reads as a negative that is not there.
    if float(text.replace(",", "")) == 0:
        text = f"{0:.{decimals}f}"
    return _minus(text)


def estimate(mean: float | None, interval: Sequence[float] | None) -> str:
    """0.934 [0.912–0.956]: the decimals follow the interval's width."""
    if mean is None or not math.isfinite(mean):
        return DASH
    if interval is None or len(interval) != 2 or not all(map(math.isfinite, interval)):
        return number(mean)
    low, high = interval
    d = _decimals_for(high - low)
    return f"{_fixed(mean, d)} [{_fixed(low, d)}{RANGE}{_fixed(high, d)}]"


def difference(
    value: float | None, interval: Sequence[float] | None, *, points: bool = False
) -> str:
    """A signed difference with its interval: +0.12 [−0.03, +0.27].

    ``points`` formats fractions as percentage points (+4.1 pp [−2.0, +10.2]).
    A comma separates the ends because a dash between signed numbers misleads.
    """
    if value is None or not math.isfinite(value):
        return DASH
    scale, unit = (100.0, " pp") if points else (1.0, "")
    ends = [v * scale for v in interval] if interval and len(interval) == 2 else None
    d = 1 if points else _decimals_for(ends[1] - ends[0] if ends else abs(value) or 1)
    text = _fixed(value * scale, d, signed=True) + unit
    if ends is None or not all(map(math.isfinite, ends)):
        return text
    return f"{text} [{_fixed(ends[0], d, signed=True)}, {_fixed(ends[1], d, signed=True)}]"


def probability(p: float | None) -> str:
    """97.3%, with the extremes as >99.9% and <0.1% (never a false certainty)."""
    if p is None or not math.isfinite(p):
        return DASH
    if p > 0.999:
        return ">99.9%"
    if p < 0.001:
        return "<0.1%"
    return percent(p)


def p_value(p: float | None) -> str:
    """0.042, 0.0031, <0.0001."""
    if p is None or not math.isfinite(p):
        return DASH
    if p < 0.0001:
        return "<0.0001"
    return f"{p:.2g}" if p < 0.01 else f"{p:.3f}"


def size_bytes(n: int | None) -> str:
    """812 B, 2.0 KiB, 1.5 MiB."""
    if n is None:
        return DASH
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def utc(value: str | datetime | None) -> str:
    """2026-11-24 09:00:00 UTC."""
    when = parse_time(value)
    return DASH if when is None else when.strftime("%Y-%m-%d %H:%M:%S UTC")


def relative(value: str | datetime | None, now: datetime) -> str:
    """3 min ago, in 2 h, just now; a date past a month."""
    when = parse_time(value)
    if when is None:
        return DASH
    delta = (now - when).total_seconds()
    ahead = delta < 0
    seconds = abs(delta)
    if seconds < 5:
        return "just now"
    if seconds >= 30 * 86_400:
        return when.strftime("%Y-%m-%d")
    for name, size in (("d", 86_400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            count = int(seconds // size)
            return f"in {count} {name}" if ahead else f"{count} {name} ago"
    raise AssertionError("unreachable")


def short_id(value: str | None) -> str:
    """The last group of a UUID: random in version 7 ids, whose start is the creation time
    (runs made in the same second share it)."""
    return DASH if not value else value.rsplit("-", 1)[-1]


def plain(x: float | None) -> str:
    """A stored value as it is, to six significant digits: 0.75, 1234.57, 1e−07."""
    if x is None or not math.isfinite(x):
        return DASH
    return _minus(f"{x:.6g}")


def short_digest(value: str | None) -> str:
    """sha256:9f2c…b1a0."""
    if not value:
        return DASH
    algo, _, hexdigest = value.partition(":")
    if not hexdigest:
        return value[:12]
    return f"{algo}:{hexdigest[:8]}…{hexdigest[-4:]}"
