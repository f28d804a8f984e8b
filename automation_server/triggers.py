"""Trigger parsing and fire-time arithmetic for cron and interval automations.

Cron meaning (DESIGN section 6) is Debian cron's, computed by ``cronsim``: 0 and 7
are Sunday, names are allowed, and when neither day field starts with ``*`` a day
matching either fires. This module is a thin layer in front of it that

* validates the expression first, with messages a user can act on (cronsim only
  says "Bad minute"), and rejects cronsim's extensions (``L``, ``LW``, ``#``,
  seconds fields); it expands the ``@daily``-style macros cronsim lacks;
* rewrites a day-of-week range ending in ``sun`` (``fri-sun``) to end in ``7``:
  cron reads such a Sunday as 7, cronsim as 0 and then calls the range reversed.

Daylight saving. Section 6: a wall-clock time that occurs twice fires once, at
its first occurrence; a time skipped by the change fires once, at the moment of
the change (03:00 for a 02:30 job); several skipped times collapse into that one
fire. We apply that to every job whose hour field does not start with ``*``.
cronsim implements exactly this for the jobs it deems "fixed-time", but, like
Debian, only when *neither* minute nor hour starts with ``*``, so for a fixed
hour we hand it the minute field with a leading ``*`` spelled ``0-59`` (same
minutes): ``*/20 2 * * *`` then collapses and fires once per day too.

Jobs whose hour field starts with ``*`` (``30 * * * *``, ``*/10 */2 * * *``) keep
their real-time rhythm: every real instant whose local wall time matches fires,
so a repeated hour fires twice and a skipped one not at all. cronsim's stepping
for the jobs it does not deem fixed-time advances whole hours of real time from
the top of a local hour, which goes wrong when a change is not a whole hour or
not at the top of one: on Australia/Lord_Howe's 30-minute change of 4 October
2026 ``30 * * * *`` skips 02:30 +11 and ``0 */3 * * *`` skips 03:00; asked at
14:00 UTC on 4 April 2026, Pacific/Chatham's ``0 */3 * * *`` answers 13:15 UTC,
before the question, and its ``* 3 * * *`` goes from 13:59 back to 13:15 UTC
for ever. So for hour-``*`` jobs cronsim only enumerates naive wall times and
each match is mapped to the real instants that show it; the ``0-59`` spelling
above keeps fixed-hour jobs out of that stepping too.

Interval schedules tick at ``anchor + k * seconds`` for k >= 1, computed with
exact integer microseconds, so every replica derives the same instants from the
stored anchor; the first tick is one interval after the anchor.

All public methods take and return timezone-aware datetimes; results are UTC.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol, runtime_checkable

from cronsim import CronSim, CronSimError

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
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class _FieldSpec(NamedTuple):
    name: str
    low: int
    high: int
    names: tuple[str, ...]  # names[i] is the value low + i
    names_hint: str


_MINUTE = _FieldSpec("minute", 0, 59, (), "")
_HOUR = _FieldSpec("hour", 0, 23, (), "")
_DOM = _FieldSpec("day-of-month", 1, 31, (), "")
_MONTH = _FieldSpec("month", 1, 12, _MONTHS, "jan-dec")
# 7 is accepted as a second Sunday, as in every cron.
_DOW = _FieldSpec("day-of-week", 0, 7, _WEEKDAYS, "sun-sat")
_SPECS = (_MINUTE, _HOUR, _DOM, _MONTH, _DOW)


class _CronError(Exception):
    """A problem in one crontab expression, worded for the user."""


class _Compiled(NamedTuple):
    """A validated crontab as cronsim reads it, plus what equality compares."""

    cron: str  # five fields in cronsim's syntax
    fixed_hour: bool  # hour field not starting with '*': section 6's DST rules apply
    key: tuple[object, ...]  # the meaning: value sets, the day-field AND flag, fixed_hour


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

    __slots__ = ("_compiled", "_zone", "expression", "timezone")

    def __init__(self, expression: str, timezone: str, compiled: _Compiled) -> None:
        self.expression = expression
        self.timezone = timezone
        self._compiled = compiled
        self._zone = parse_timezone(timezone)

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r}, timezone={self.timezone!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronSchedule):
            return NotImplemented
        return (self._compiled.key, self.timezone) == (other._compiled.key, other.timezone)

    def __hash__(self) -> int:
        return hash((self._compiled.key, self.timezone))

    def next_after(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after``, as an aware UTC datetime."""
        after = _as_utc(after, "after")
        try:
            if self._compiled.fixed_hour:
                return self._next_fixed(after)
            return self._next_every_pass(after)
        except OverflowError:  # the search ran past year 9999
            return None

    def ticks_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Fire times t with start < t <= end, oldest first, at most ``limit``."""
        return _collect(self, start, end, limit)

    def _next_fixed(self, after: datetime) -> datetime | None:
        # In its fixed-time mode (see _compile) cronsim walks naive wall time and
        # reads a repeated time at its first occurrence, so started inside the
        # second pass of a fall-back it yields first-pass instants that are
        # already behind us: skip them.
        for fire in CronSim(self._compiled.cron, after.astimezone(self._zone)):
            if fire > after:
                return fire.astimezone(UTC)
        return None  # cronsim gives up after 50 years without a match

    def _next_every_pass(self, after: datetime) -> datetime | None:
        # After a fall-back a later instant can show an earlier wall time than
        # ``after`` does, so the wall-time search starts that much earlier and
        # keeps the earliest instant found. A wall time's first instant grows
        # with the wall time, so once it passes the best one nothing later wins.
        # A naive start: cronsim then does no zone arithmetic at all.
        local = after.astimezone(self._zone).replace(tzinfo=None)
        best: datetime | None = None
        for wall in CronSim(self._compiled.cron, local - self._set_back_within_a_day(after)):
            instants = _instants(wall, self._zone)
            later = [instant for instant in instants if instant > after]
            if later and (best is None or later[0] < best):
                best = later[0]
            if best is not None and instants and instants[0] >= best:
                break
        return best

    def _set_back_within_a_day(self, after: datetime) -> timedelta:
        """How far the local clock falls back in the day after ``after`` (zero if it does not)."""
        now = _offset(after, self._zone)
        lowest = min(_offset(after + timedelta(hours=h), self._zone) for h in range(1, 25))
        return max(timedelta(0), now - lowest)


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
        compiled = _compile(text)
    except _CronError as exc:
        raise _invalid_cron(text, str(exc)) from None
    return CronSchedule(text, timezone, compiled)


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


def _compile(text: str) -> _Compiled:
    """Check every field, then let cronsim read the result."""
    if text.startswith("@"):
        expanded = _MACROS.get(text.lower())
        if expanded is None:
            raise _CronError(f"unknown macro; use 5 fields or one of {', '.join(_MACROS)}")
        text = expanded
    parts = text.split()
    if len(parts) != 5:
        hint = "; seconds and year fields are not supported" if len(parts) in (6, 7) else ""
        raise _CronError(f"expected 5 fields ({_FIELD_ORDER}), got {len(parts)}{hint}")
    minute, hour, dom, month, dow = (_check_field(p, s) for p, s in zip(parts, _SPECS, strict=True))
    fixed_hour = not hour.startswith("*")
    if fixed_hour and minute.startswith("*"):
        minute = "0-59" + minute[1:]  # see the module docstring: cronsim's fixed-time test
    cron = " ".join((minute, hour, dom, month, dow))
    try:
        sim = CronSim(cron, EPOCH)
    except CronSimError:
        # The syntax is already checked, so this is cronsim's one remaining
        # refusal: both day fields must match and no chosen month has the days.
        raise _CronError("never fires: no chosen month has any of the chosen days") from None
    return _Compiled(cron, fixed_hour, _meaning(sim, fixed_hour))


def _meaning(sim: CronSim, fixed_hour: bool) -> tuple[object, ...]:
    """What makes two crontabs equal: 'mon-fri' is '1-5', weekday 7 is 0."""
    weekdays = frozenset(d % 7 for d in sim.weekdays if isinstance(d, int))
    sets = (sim.minutes, sim.hours, sim.days, sim.months)
    return (*(frozenset(s) for s in sets), weekdays, sim.day_and, fixed_hour)


def _check_field(text: str, spec: _FieldSpec) -> str:
    """Validate one field; return it as cronsim should read it."""
    items: list[str] = []
    for item in text.split(","):
        if not item:
            raise _CronError(f"{spec.name} has an empty list item in {text!r}")
        items.append(_check_item(item, spec))
    return ",".join(items)


def _check_item(item: str, spec: _FieldSpec) -> str:
    base, slash, step_text = item.partition("/")
    if slash:
        _check_step(step_text, spec, item)
    if base == "*":
        return item
    start_text, dash, end_text = base.partition("-")
    if not start_text or (dash and not end_text):
        raise _CronError(f"{spec.name} item {item!r} is not a value, range or step")
    start = _check_value(start_text, spec)
    if not dash:
        if slash:
            # cronsim would read '5/10' as '5-59/10'; cron refuses it, and so do we.
            raise _CronError(
                f"{spec.name} step {item!r} needs a range or '*' before the '/', "
                f"as in '{start_text}-{spec.high}/{step_text}'"
            )
        return item
    end = _check_value(end_text, spec)
    if spec is _DOW and end == 0 and start > 0 and not _NUMBER.fullmatch(end_text):
        # 'fri-sun' ends on Sunday = 7 in cron; cronsim would read 0 and refuse it.
        end, item = 7, f"{start_text}-7{slash}{step_text}"
    if start > end:
        raise _CronError(f"{spec.name} range {base!r} is reversed (start after end)")
    return item


def _check_step(text: str, spec: _FieldSpec, item: str) -> None:
    top = max(spec.high, 1)
    if not _NUMBER.fullmatch(text) or not 1 <= int(text) <= top:
        raise _CronError(f"{spec.name} step in {item!r} must be a number 1-{top}")


def _check_value(text: str, spec: _FieldSpec) -> int:
    # ASCII only: cronsim reads the text upper-cased, and some non-ASCII letters
    # change case into ASCII ones, so its reading could differ from ours.
    name = text.lower()
    if text.isascii() and name in spec.names:
        return spec.low + spec.names.index(name)
    if not _NUMBER.fullmatch(text):
        kind = "a number" + (f" or a name ({spec.names_hint})" if spec.names else "")
        raise _CronError(f"{spec.name} value {text!r} is not {kind}")
    value = int(text)
    if not spec.low <= value <= spec.high:
        allowed = f"{spec.low}-{spec.high}" + (f" or {spec.names_hint}" if spec.names else "")
        raise _CronError(f"{spec.name} must be {allowed}")
    return value


def _instants(wall: datetime, zone: zoneinfo.ZoneInfo) -> list[datetime]:
    """The real UTC instants at which ``zone`` shows the naive ``wall``, earliest first.

    Two for a time repeated by a fall-back, none for one skipped by a spring-forward.
    """
    candidates = {wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)}
    return sorted(c for c in candidates if c.astimezone(zone).replace(tzinfo=None) == wall)


def _offset(instant: datetime, zone: zoneinfo.ZoneInfo) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # ZoneInfo always knows the offset of an aware instant
    return offset


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
