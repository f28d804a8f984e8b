"""Property tests: next_after against a brute-force minute-by-minute oracle.

Crontabs are generated as structured items, so the expected value sets come from
the generator, not from the parser under test (nor from cronsim behind it). The
oracles walk real minutes with zoneinfo and apply DESIGN section 6 directly.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from automation_server.errors import Invalid
from automation_server.triggers import parse_cron

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MONTH_DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


@dataclass(frozen=True)
class Field:
    text: str
    values: frozenset[int]
    star: bool


@dataclass(frozen=True)
class Cron:
    minute: Field
    hour: Field
    dom: Field
    month: Field
    dow: Field

    @property
    def text(self) -> str:
        return " ".join(f.text for f in (self.minute, self.hour, self.dom, self.month, self.dow))

    def day_matches(self, day: datetime) -> bool:
        in_dom = day.day in self.dom.values
        in_dow = (day.isoweekday() % 7) in self.dow.values  # cron: Sunday = 0
        if self.dom.star or self.dow.star:
            return day.month in self.month.values and in_dom and in_dow
        return day.month in self.month.values and (in_dom or in_dow)

    def matches(self, wall: datetime) -> bool:
        return (
            wall.minute in self.minute.values
            and wall.hour in self.hour.values
            and self.day_matches(wall)
        )

    def can_fire(self) -> bool:
        if not (self.dom.star or self.dow.star):
            return True
        return min(self.dom.values) <= max(MONTH_DAYS[m - 1] for m in self.month.values)


def name_or_number(draw: st.DrawFn, value: int, names: list[str] | None, offset: int) -> str:
    if names and value - offset < len(names) and draw(st.booleans()):
        name = names[value - offset]
        return draw(st.sampled_from([name, name.upper(), name.title()]))
    return str(value)


@st.composite
def fields(draw: st.DrawFn, low: int, high: int, names: list[str] | None = None) -> Field:
    texts: list[str] = []
    values: set[int] = set()
    for index in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["star", "value", "range"]))
        step = draw(st.one_of(st.none(), st.integers(1, high)))
        suffix = "" if step is None else f"/{step}"
        if kind == "star":
            if index > 0 and step is None:
                kind = "value"  # a bare '*' after other items is legal but pointless
            else:
                texts.append("*" + suffix)
                values.update(range(low, high + 1, step or 1))
                continue
        start = draw(st.integers(low, high))
        if kind == "value":
            texts.append(name_or_number(draw, start, names, low))
            values.add(start)
        else:
            end = draw(st.integers(start, high))
            first = name_or_number(draw, start, names, low)
            last = name_or_number(draw, end, names, low)
            texts.append(f"{first}-{last}{suffix}")
            values.update(range(start, end + 1, step or 1))
    if high == 7:  # day-of-week: 7 is Sunday
        values = {v % 7 for v in values}
    return Field(",".join(texts), frozenset(values), texts[0].startswith("*"))


crons = st.builds(
    Cron,
    minute=fields(0, 59),
    hour=fields(0, 23),
    dom=fields(1, 31),
    month=fields(1, 12, MONTHS),
    dow=fields(0, 7, WEEKDAYS),
)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2060, 12, 31), timezones=st.just(UTC)
)


def first_match_utc(cron: Cron, after: datetime, until: datetime) -> datetime | None:
    """Brute force in UTC: minute by minute, skipping whole days that cannot match."""
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t <= until:
        if not cron.day_matches(t):
            t = t.replace(hour=0, minute=0) + timedelta(days=1)
        elif cron.matches(t):
            return t
        else:
            t += timedelta(minutes=1)
    return None


@settings(max_examples=300, deadline=None)
@given(cron=crons, after=instants)
def test_next_after_is_the_first_matching_minute_in_utc(cron: Cron, after: datetime) -> None:
    if not cron.can_fire():
        with pytest.raises(Invalid):
            parse_cron(cron.text)
        return
    result = parse_cron(cron.text).next_after(after)
    assert result is not None
    assert result > after
    assert result.tzinfo is UTC
    assert (result.second, result.microsecond) == (0, 0)
    assert cron.matches(result)
    assert first_match_utc(cron, after, result) == result


def oracle_in_zone(
    cron: Cron, zone: ZoneInfo, after: datetime, horizon: timedelta
) -> datetime | None:
    """The DESIGN rules, checked by walking real minutes (DST offsets here are whole hours).

    A real minute fires if its wall time matches, unless it is the second pass of a
    repeated wall time and the job has a fixed hour; a fixed-hour job also fires at
    the instant of a spring-forward change if a skipped wall time matched.
    """
    fixed = not cron.hour.star
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t <= after + horizon:
        local = t.astimezone(zone)
        before = (t - timedelta(minutes=1)).astimezone(zone)
        if cron.matches(local) and not (fixed and local.fold == 1):
            return t
        jump = local.utcoffset() - before.utcoffset()  # type: ignore[operator]
        if fixed and jump > timedelta(0):
            skipped = local.replace(tzinfo=None) - jump
            while skipped < local.replace(tzinfo=None):
                if cron.matches(skipped):
                    return t
                skipped += timedelta(minutes=1)
        t += timedelta(minutes=1)
    return None


DST_EDGES = [
    datetime(2026, 3, 29, 1, tzinfo=UTC),  # Berlin spring forward
    datetime(2026, 10, 25, 1, tzinfo=UTC),  # Berlin fall back
    datetime(2026, 3, 8, 7, tzinfo=UTC),  # New York spring forward
    datetime(2026, 11, 1, 6, tzinfo=UTC),  # New York fall back
]


@settings(max_examples=150, deadline=None)
@given(
    cron=crons.filter(lambda c: c.can_fire()),
    zone=st.sampled_from(["Europe/Berlin", "America/New_York"]),
    edge=st.sampled_from(DST_EDGES),
    shift=st.integers(-6 * 3600 * 10**6, 6 * 3600 * 10**6),
)
def test_next_after_follows_the_dst_rules_near_changes(
    cron: Cron, zone: str, edge: datetime, shift: int
) -> None:
    after = edge + timedelta(microseconds=shift)
    result = parse_cron(cron.text, zone).next_after(after)
    assert result is not None and result > after
    horizon = timedelta(days=2)
    expected = oracle_in_zone(cron, ZoneInfo(zone), after, horizon)
    if expected is None:
        assert result > after + horizon
    else:
        assert result == expected


# -- any IANA zone, weeks ahead --------------------------------------------------

MINUTE = timedelta(minutes=1)
HOUR_US = 3600 * 10**6
HORIZON = timedelta(days=40)
YEARS = st.integers(2001, 2059)
Case = tuple[Cron, str, datetime]  # crontab, zone name, start
# Zones whose changes stress the rules in their own way.
DST_ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # half-hour daylight saving
    "Pacific/Chatham",  # +12:45/+13:45
    "Antarctica/Troll",  # two-hour daylight saving
    "America/Santiago",  # changes at midnight
    "America/Havana",  # changes at midnight
]
ALL_ZONES = sorted(available_timezones() - {"localtime", "posixrules"})  # host files, not IANA
zones = st.sampled_from(["UTC", "Asia/Kolkata", *DST_ZONES]) | st.sampled_from(ALL_ZONES)

STAR_HOUR = Field("*", frozenset(range(24)), star=True)
STAR_DOM = Field("*", frozenset(range(1, 32)), star=True)
STAR_MONTH = Field("*", frozenset(range(1, 13)), star=True)
STAR_DOW = Field("*", frozenset(range(7)), star=True)  # the generator folds 7 into 0


def offset(instant: datetime, zone: ZoneInfo) -> timedelta:
    result = instant.astimezone(zone).utcoffset()
    assert result is not None
    return result


def first_change(start: datetime, step: timedelta, count: int, zone: ZoneInfo) -> datetime | None:
    """The first of ``count`` probes after ``start`` whose offset differs from start's."""
    probes = (start + step * i for i in range(1, count + 1))
    return next((p for p in probes if offset(p, zone) != offset(start, zone)), None)


@functools.cache
def offset_changes(name: str, year: int) -> tuple[datetime, ...]:
    """Minutes of ``year`` at which ``name`` changes offset (daily, hourly, then minute probes)."""
    zone, found = ZoneInfo(name), []
    for day in range(366):
        start = datetime(year, 1, 1, tzinfo=UTC) + timedelta(days=day)
        if first_change(start, timedelta(days=1), 1, zone):
            hour = first_change(start, timedelta(hours=1), 24, zone)
            assert hour is not None
            minute = first_change(hour - timedelta(hours=1), MINUTE, 60, zone)
            found.append(minute or hour)
    return tuple(found)


def value(v: int) -> Field:
    return Field(str(v), frozenset({v}), star=False)


def every(n: int, high: int) -> Field:
    return Field(f"*/{n}", frozenset(range(0, high + 1, n)), star=True)


def crons_around(hours: list[int]) -> st.SearchStrategy[Cron]:
    """Crontabs likely to fire in ``hours``, where a change moves the clock.

    Besides random fields: the usual shapes ('30 2 * * *', '0 */3 * * *',
    '30 * * * *'); a single minute is what cronsim's own stepping gets wrong.
    """
    fixed = st.sampled_from(hours).map(value)
    return st.builds(
        Cron,
        minute=st.integers(0, 59).map(value) | fields(0, 59),
        hour=st.one_of(
            fixed,
            fixed,
            st.just(STAR_HOUR),
            st.integers(2, 6).map(lambda n: every(n, 23)),
            fields(0, 23),
        ),
        dom=st.just(STAR_DOM),
        month=st.just(STAR_MONTH),
        dow=st.just(STAR_DOW) | fields(0, 7, WEEKDAYS),
    )


@st.composite
def near_a_change(draw: st.DrawFn, zone: str, changes: tuple[datetime, ...]) -> Case:
    """A start up to a day before one of ``changes`` (mostly within hours of it)."""
    change = draw(st.sampled_from(changes))
    wall = change.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    jump = offset(change, ZoneInfo(zone)) - offset(change - MINUTE, ZoneInfo(zone))
    cron = draw(crons_around(sorted({wall.hour, (wall - jump).hour})))
    # A lead in minutes, so that hypothesis's favourite small values land inside
    # the hour that a fall-back repeats, plus a jitter off the minute.
    lead = draw(st.sampled_from([1, 2, 6, 24]).flatmap(lambda h: st.integers(-60, h * 60)))
    jitter = timedelta(microseconds=draw(st.integers(0, 60 * 10**6 - 1)))
    return cron, zone, change - lead * MINUTE + jitter


@st.composite
def anywhere(draw: st.DrawFn) -> Case:
    """Any crontab in any zone, from a month it fires in or from near a change."""
    zone, year = draw(zones), draw(YEARS)
    changes = offset_changes(zone, year)
    near = draw(st.booleans())
    if changes and near:
        return draw(near_a_change(zone, changes))
    cron = draw(crons.filter(lambda c: c.can_fire()))
    month = draw(st.sampled_from(sorted(cron.month.values)))
    shift = draw(st.integers(-24 * HOUR_US, 31 * 24 * HOUR_US))
    return cron, zone, datetime(year, month, 1, tzinfo=UTC) + timedelta(microseconds=shift)


@st.composite
def near_dst_changes(draw: st.DrawFn) -> Case:
    zone = draw(st.sampled_from(DST_ZONES))
    changes = offset_changes(zone, draw(YEARS))
    assume(changes)  # none in Troll before 2005, Havana in 2005, Santiago in 2015
    return draw(near_a_change(zone, changes))


def spell_sunday_as_name(cron: Cron) -> Cron:
    """'fri-7' as 'fri-sun': a Sunday ending a range is 7 (but 'sun-sun' is 0-0, not 0-7)."""
    text = re.sub(r"(^|,)(?!0-|sun-)(\w+)-7(?=/|,|$)", r"\1\2-sun", cron.dow.text, flags=re.I)
    return dataclasses.replace(cron, dow=dataclasses.replace(cron.dow, text=text))


def fires_at(cron: Cron, zone: ZoneInfo, t: datetime) -> bool:
    """Section 6 at the real minute ``t``.

    Hour field starting with '*': a minute fires when its wall time matches.
    Otherwise a repeated wall time fires at its first pass only, and the first
    minute after a spring-forward fires if any skipped wall time matched.
    """
    local = t.astimezone(zone)
    if cron.hour.star:
        return cron.matches(local)
    if cron.matches(local) and local.fold == 0:
        return True
    wall = local.replace(tzinfo=None)
    jump = offset(t, zone) - offset(t - MINUTE, zone)
    skipped = (wall - jump + MINUTE * i for i in range(jump // MINUTE))
    return any(cron.matches(w) for w in skipped)


def next_local_day(local: datetime, zone: ZoneInfo) -> datetime:
    """The earliest instant of the next local day; before it if its midnight is skipped."""
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0))
    return min(midnight.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))


def oracle_anywhere(cron: Cron, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first firing real minute within HORIZON, skipping local days that cannot match."""
    t = after.replace(second=0, microsecond=0) + MINUTE
    while t <= after + HORIZON:
        if fires_at(cron, zone, t):
            return t
        local = t.astimezone(zone)
        t = t + MINUTE if cron.day_matches(local) else max(t + MINUTE, next_local_day(local, zone))
    return None


def check_against_oracle(case: Case, sunday_name: bool) -> None:
    cron, zone, after = case
    text = spell_sunday_as_name(cron).text if sunday_name else cron.text
    result = parse_cron(text, zone).next_after(after)
    assert result is not None and result > after and result.tzinfo is UTC
    expected = oracle_anywhere(cron, ZoneInfo(zone), after)
    if expected is None:
        assert result > after + HORIZON
    else:
        assert result == expected


@settings(max_examples=600, deadline=None)
@given(case=anywhere(), sunday_name=st.booleans())
def test_next_after_follows_section_6_in_any_zone(case: Case, sunday_name: bool) -> None:
    check_against_oracle(case, sunday_name)


@settings(max_examples=600, deadline=None)
@given(case=near_dst_changes(), sunday_name=st.booleans())
def test_next_after_follows_section_6_around_dst_changes(case: Case, sunday_name: bool) -> None:
    check_against_oracle(case, sunday_name)
