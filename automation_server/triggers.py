"""Trigger parsing and fire-time arithmetic for cron and interval automations.

Cron meaning (DESIGN section 6) is Vixie cron's, not APScheduler's
``CronTrigger.from_crontab`` (which numbers weekdays from Monday = 0 and ANDs the
two day fields). We parse the five crontab fields ourselves, validate them with
messages a user can act on, and hand explicit fields to APScheduler 3.x
``CronTrigger`` objects (``OrTrigger`` of two when both day fields are
restricted), which do the calendar search.

Daylight saving. APScheduler 3.11, given a zone, fires a wall-clock time that
occurs twice at *both* occurrences, and a skipped wall-clock time (02:30 on a
spring-forward night) at wall time + the jump, i.e. 03:30 rather than 03:00
(it builds ``datetime(..., 2, 30, tzinfo=zone, fold=0)``, which PEP 495 reads
with the pre-change offset). Both differ from the contract, so the triggers run
on *naive local wall-clock time* (a UTC trigger fed wall times) and this module
maps each matching wall time to real instants itself:

* a wall time that exists once fires at that instant;
* fixed-hour jobs (hour field not starting with ``*``, e.g. ``30 2 * * *``):
  a wall time that occurs twice fires once, at its first occurrence; a wall
  time skipped by the change fires once, at the moment of the change (03:00
  local for a 02:30 job in Europe/Berlin on 2026-03-29 = 01:00 UTC). Several
  skipped times (``*/15 2 * * *``) collapse into that one fire;
* wildcard-hour jobs (hour field starting with ``*``, e.g. ``30 * * * *`` or
  ``*/10 */2 * * *``): every real instant whose local wall time matches fires,
  so the repeated hour of a fall-back fires twice and the skipped hour of a
  spring-forward not at all; the job keeps its real-time rhythm. This is
  Vixie cron's split between "wildcard" and fixed-time jobs, keyed on the hour
  field only (Vixie also treats a ``*`` minute as wildcard).

Interval schedules tick at ``anchor + k * seconds`` for k >= 1, computed with
exact integer microseconds, so every replica derives the same instants from the
stored anchor; the first tick is one interval after the anchor.

All public methods take and return timezone-aware datetimes; results are UTC.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol, runtime_checkable

from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from automation_server.errors import Invalid

__all__ = [
    "CronSchedule",
    "IntervalSchedule",
    "Schedule",
    "describe",
    "parse_cron",
    "parse_interval",
    "parse_timezone",
]

SCHEDULE_FIELD = "trigger.schedule"
TIMEZONE_FIELD = "trigger.timezone"
SECONDS_FIELD = "trigger.seconds"

#: Longest accepted crontab; real ones are far shorter, this only bounds work.
MAX_EXPRESSION_LENGTH = 1000
#: Longest interval: ten years. Longer ones are almost surely mistakes and would
#: overflow ``datetime`` arithmetic near the end of its range.
MAX_INTERVAL_SECONDS = 10 * 365 * 24 * 3600
#: Default interval anchor when none is given: ticks fall on multiples of the
#: interval since the Unix epoch, which every replica agrees on.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ONE_MINUTE = timedelta(minutes=1)
_NUMBER = re.compile(r"[0-9]+")
_FIELD_ORDER = "minute hour day-of-month month day-of-week"
# Zone files that exist on a host but are not IANA zones: 'localtime' is the
# host's own zone, so replicas on differently configured hosts would disagree.
_HOST_ZONES = frozenset({"localtime", "posixrules"})
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_CRON_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# APScheduler numbers weekdays from Monday = 0; its names avoid any doubt.
_APS_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Longest month lengths (February counts its leap day) for "never fires" checks.
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class _FieldSpec(NamedTuple):
    name: str
    low: int
    high: int
    names: dict[str, int]
    names_hint: str


_MINUTE = _FieldSpec("minute", 0, 59, {}, "")
_HOUR = _FieldSpec("hour", 0, 23, {}, "")
_DOM = _FieldSpec("day-of-month", 1, 31, {}, "")
_MONTH = _FieldSpec("month", 1, 12, {n: i + 1 for i, n in enumerate(_MONTHS)}, "jan-dec")
# 7 is accepted as a second Sunday, as in every cron.
_DOW = _FieldSpec("day-of-week", 0, 7, {n: i for i, n in enumerate(_CRON_WEEKDAYS)}, "sun-sat")


class _CronError(Exception):
    """A problem in one crontab expression, worded for the user."""


@dataclass(frozen=True)
class _CronFields:
    """The parsed crontab: value sets plus the flags cron derives from the text."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # cron numbering, Sunday = 0 (7 folded into 0)
    days_star: bool  # day-of-month text starts with '*': unrestricted for the OR rule
    weekdays_star: bool
    hours_star: bool  # wildcard-hour job: see the DST rules in the module docstring


# -- public protocol ---------------------------------------------------------


@runtime_checkable
class Schedule(Protocol):
    """What the scheduler needs from any time-based trigger."""

    def next_after(self, after: datetime) -> datetime | None:
        """The first tick strictly after ``after`` (UTC), or None if there is none."""
        ...

    def ticks_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Ticks t with start < t <= end, oldest first, at most ``limit`` of them."""
        ...


# -- cron ----------------------------------------------------------------------


class CronSchedule:
    """A validated 5-field crontab in an IANA time zone. Build with :func:`parse_cron`."""

    __slots__ = ("_fields", "_trigger", "_zone", "expression", "timezone")

    def __init__(self, expression: str, timezone: str, fields: _CronFields) -> None:
        self.expression = expression
        self.timezone = timezone
        self._fields = fields
        self._zone = parse_timezone(timezone)
        self._trigger = _build_trigger(fields)

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r}, timezone={self.timezone!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronSchedule):
            return NotImplemented
        return (self._fields, self.timezone) == (other._fields, other.timezone)

    def __hash__(self) -> int:
        return hash((self._fields, self.timezone))

    def next_after(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after``, as an aware UTC datetime."""
        try:
            return self._next_after(_as_utc(after, "after"))
        except OverflowError:  # the search ran past year 9999
            return None

    def ticks_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Fire times t with start < t <= end, oldest first, at most ``limit``."""
        return _collect(self, start, end, limit)

    def _next_after(self, after: datetime) -> datetime | None:
        # Wall times are not monotonic in real time across a fall-back, so the
        # search starts early enough to see the repeated hour and keeps the
        # earliest real instant found. A wall time's *first* instant is
        # monotonic in the wall time, so once it passes the best candidate no
        # later wall time can do better.
        local = after.astimezone(self._zone).replace(tzinfo=None)
        wall = local.replace(second=0, microsecond=0) - self._fold_margin(after)
        best: datetime | None = None
        while True:
            found = self._next_wall(wall)
            if found is None:
                return best
            instants = self._instants(found)
            for instant in instants:
                if instant > after and (best is None or instant < best):
                    best = instant
            if best is not None and instants and instants[0] >= best:
                return best
            wall = found + _ONE_MINUTE

    def _fold_margin(self, after: datetime) -> timedelta:
        """How far local time falls back within a day of ``after`` (zero if it does not)."""
        offset = _offset(after, self._zone)
        probes = (_offset(after + timedelta(hours=h), self._zone) for h in range(1, 25))
        return max(timedelta(0), offset - min(probes))

    def _next_wall(self, wall: datetime) -> datetime | None:
        """The first matching naive wall time at or after ``wall``."""
        fire: datetime | None = self._trigger.get_next_fire_time(None, wall.replace(tzinfo=UTC))
        return None if fire is None else fire.replace(tzinfo=None)

    def _instants(self, wall: datetime) -> list[datetime]:
        """Real UTC instants at which the matching wall time ``wall`` fires, earliest first."""
        first = wall.replace(tzinfo=self._zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self._zone, fold=1).astimezone(UTC)
        if first == second:
            return [first]
        fixed = not self._fields.hours_star
        if first < second:  # occurs twice (fall back): fold=0 is the earlier one
            return [first] if fixed else [first, second]
        # Skipped (spring forward): PEP 495 reads fold=1 with the new offset,
        # which lands before the change, and fold=0 with the old one, after it.
        return [_transition(self._zone, second, first)] if fixed else []


def parse_cron(schedule: str, timezone: str = "UTC") -> CronSchedule:
    """Validate a 5-field crontab (or @hourly/@daily/... macro) and an IANA zone."""
    if not isinstance(schedule, str):
        raise _invalid_cron(repr(schedule), "schedule must be a string")
    text = schedule.strip()
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise _invalid_cron(
            text[:40] + "...", f"schedule is longer than {MAX_EXPRESSION_LENGTH} characters"
        )
    try:
        fields = _parse_expression(text)
    except _CronError as exc:
        raise _invalid_cron(text, str(exc)) from None
    return CronSchedule(text, timezone, fields)


def parse_timezone(name: str) -> zoneinfo.ZoneInfo:
    """Load an IANA time zone by name, or raise ``Invalid`` (code ``invalid_timezone``)."""
    if isinstance(name, str) and name and name not in _HOST_ZONES:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass  # reported below with the user's spelling
    raise Invalid(
        f"{TIMEZONE_FIELD}: unknown time zone {name!r}",
        field=TIMEZONE_FIELD,
        code="invalid_timezone",
    )


def _invalid_cron(shown: str, problem: str) -> Invalid:
    return Invalid(
        f"{SCHEDULE_FIELD}: {shown!r}: {problem}", field=SCHEDULE_FIELD, code="invalid_cron"
    )


def _parse_expression(text: str) -> _CronFields:
    if text.startswith("@"):
        expanded = _MACROS.get(text.lower())
        if expanded is None:
            raise _CronError(f"unknown macro; use 5 fields or one of {', '.join(_MACROS)}")
        text = expanded
    parts = text.split()
    if len(parts) != 5:
        hint = "; seconds and year fields are not supported" if len(parts) in (6, 7) else ""
        raise _CronError(f"expected 5 fields ({_FIELD_ORDER}), got {len(parts)}{hint}")
    minute, hour, dom, month, dow = parts
    fields = _CronFields(
        minutes=_parse_field(minute, _MINUTE),
        hours=_parse_field(hour, _HOUR),
        days=_parse_field(dom, _DOM),
        months=_parse_field(month, _MONTH),
        weekdays=frozenset(d % 7 for d in _parse_field(dow, _DOW)),
        days_star=dom.startswith("*"),
        weekdays_star=dow.startswith("*"),
        hours_star=hour.startswith("*"),
    )
    if _anded(fields) and not _some_day_exists(fields.days, fields.months):
        raise _CronError("never fires: no chosen month has any of the chosen days")
    return fields


def _parse_field(text: str, spec: _FieldSpec) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _CronError(f"{spec.name} has an empty list item in {text!r}")
        values.update(_parse_item(item, spec))
    return frozenset(values)


def _parse_item(item: str, spec: _FieldSpec) -> range:
    base, slash, step_text = item.partition("/")
    step = _parse_step(step_text, spec, item) if slash else 1
    if base == "*":
        return range(spec.low, spec.high + 1, step)
    start_text, dash, end_text = base.partition("-")
    if not start_text or (dash and not end_text):
        raise _CronError(f"{spec.name} item {item!r} is not a value, range or step")
    start = _parse_value(start_text, spec)
    if not dash:
        if slash:
            raise _CronError(
                f"{spec.name} step {item!r} needs a range or '*' before the '/', "
                f"as in '{start_text}-{spec.high}/{step_text}'"
            )
        return range(start, start + 1)
    end = _parse_value(end_text, spec, range_end=True, start=start)
    if start > end:
        raise _CronError(f"{spec.name} range {base!r} is reversed (start after end)")
    return range(start, end + 1, step)


def _parse_step(text: str, spec: _FieldSpec, item: str) -> int:
    top = max(spec.high, 1)
    if not _NUMBER.fullmatch(text) or not 1 <= int(text) <= top:
        raise _CronError(f"{spec.name} step in {item!r} must be a number 1-{top}")
    return int(text)


def _parse_value(text: str, spec: _FieldSpec, *, range_end: bool = False, start: int = 0) -> int:
    name = text.lower()
    if name in spec.names:
        value = spec.names[name]
        # 'sun' ends a weekday range as 7, so 'fri-sun' and 'sat-sun' work.
        if range_end and spec is _DOW and value == 0 and start > 0:
            return 7
        return value
    allowed = f"{spec.low}-{spec.high}" + (f" or {spec.names_hint}" if spec.names else "")
    if not _NUMBER.fullmatch(text):
        kind = "a number" + (f" or a name ({spec.names_hint})" if spec.names else "")
        raise _CronError(f"{spec.name} value {text!r} is not {kind}")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise _CronError(f"{spec.name} must be {allowed}")
    return value


def _anded(fields: _CronFields) -> bool:
    """Cron ANDs the day fields when either starts with '*', else ORs them."""
    return fields.days_star or fields.weekdays_star


def _some_day_exists(days: Iterable[int], months: Iterable[int]) -> bool:
    longest = max(_MONTH_DAYS[m - 1] for m in months)
    return min(days) <= longest


def _build_trigger(fields: _CronFields) -> Any:
    """APScheduler trigger over naive wall time (hence UTC, which has no DST)."""
    common = {
        "minute": _aps_list(fields.minutes),
        "hour": _aps_list(fields.hours),
        "month": _aps_list(fields.months),
        "second": "0",
        "timezone": UTC,
    }
    weekdays = ",".join(_APS_WEEKDAYS[(d - 1) % 7] for d in sorted(fields.weekdays))
    if _anded(fields):
        return CronTrigger(day=_aps_list(fields.days), day_of_week=weekdays, **common)
    by_weekday = CronTrigger(day="*", day_of_week=weekdays, **common)
    if not _some_day_exists(fields.days, fields.months):
        return by_weekday  # e.g. '0 0 30 2 fri': the day-of-month half never matches
    by_day = CronTrigger(day=_aps_list(fields.days), day_of_week="*", **common)
    return OrTrigger([by_day, by_weekday])


def _aps_list(values: frozenset[int]) -> str:
    """Compact APScheduler list ('0-5,10,30-31') for a set of field values."""
    ordered = sorted(values)
    runs: list[str] = []
    start = prev = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if value is not None:
            start = prev = value
    return ",".join(runs)


def _offset(instant: datetime, zone: zoneinfo.ZoneInfo) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # ZoneInfo always knows the offset of an aware instant
    return offset


def _transition(zone: zoneinfo.ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The instant in (before, after] at which ``zone`` switches to its new offset.

    Offsets change on whole seconds, so a binary search on seconds is exact.
    """
    old = _offset(before, zone)
    lo, hi = before, after
    while hi - lo > timedelta(seconds=1):
        mid = lo + timedelta(seconds=(hi - lo) // timedelta(seconds=2))
        if _offset(mid, zone) == old:
            lo = mid
        else:
            hi = mid
    return hi


# -- interval ------------------------------------------------------------------


@dataclass(frozen=True)
class IntervalSchedule:
    """Ticks at ``anchor + k * seconds`` for k >= 1 (exact to the microsecond)."""

    seconds: int
    anchor: datetime = EPOCH

    def __post_init__(self) -> None:
        _check_interval(self.seconds)
        object.__setattr__(self, "anchor", _as_utc(self.anchor, "anchor"))

    def next_after(self, after: datetime) -> datetime | None:
        """The first tick strictly after ``after``, as an aware UTC datetime."""
        after = _as_utc(after, "after")
        period = timedelta(seconds=self.seconds)
        # timedelta // timedelta is integer microsecond division: no float drift.
        k = 1 if after < self.anchor else (after - self.anchor) // period + 1
        try:
            return self.anchor + k * period
        except OverflowError:
            return None

    def ticks_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Ticks t with start < t <= end, oldest first, at most ``limit``."""
        return _collect(self, start, end, limit)


def parse_interval(seconds: int, anchor: datetime | None = None) -> IntervalSchedule:
    """Validate an interval (whole seconds >= 1); ``anchor`` defaults to the Unix epoch."""
    return IntervalSchedule(seconds, EPOCH if anchor is None else anchor)


def _check_interval(seconds: object) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        problem = f"must be a whole number of seconds, got {seconds!r}"
    elif seconds < 1:
        problem = f"must be at least 1 second, got {seconds}"
    elif seconds > MAX_INTERVAL_SECONDS:
        problem = f"must be at most {MAX_INTERVAL_SECONDS} seconds (10 years), got {seconds}"
    else:
        return
    raise Invalid(f"{SECONDS_FIELD}: {problem}", field=SECONDS_FIELD, code="invalid_interval")


# -- shared --------------------------------------------------------------------


def _as_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _collect(schedule: Schedule, start: datetime, end: datetime, limit: int) -> list[datetime]:
    end = _as_utc(end, "end")
    ticks: list[datetime] = []
    tick = _as_utc(start, "start")
    while len(ticks) < limit:
        found = schedule.next_after(tick)
        if found is None or found > end:
            break
        ticks.append(found)
        tick = found
    return ticks


def describe(schedule: Schedule) -> str:
    """A short human description, e.g. "cron '0 9 * * 1-5' (Europe/Berlin)"."""
    if isinstance(schedule, CronSchedule):
        return f"cron {schedule.expression!r} ({schedule.timezone})"
    if isinstance(schedule, IntervalSchedule):
        return f"every {schedule.seconds} s from {schedule.anchor.isoformat()}"
    return repr(schedule)


def schedule_of(trigger: Mapping[str, Any], anchor: datetime) -> Schedule | None:
    """The fire-time calculator of a stored trigger; None for manual and webhook."""
    if trigger["type"] == "cron":
        return parse_cron(trigger["schedule"], trigger.get("timezone", "UTC"))
    if trigger["type"] == "interval":
        return parse_interval(int(trigger["seconds"]), anchor=anchor)
    return None
