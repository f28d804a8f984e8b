"""Property tests: next_after against a brute-force minute-by-minute oracle.

Crontabs are generated as structured items, so the expected value sets come from
the generator, not from the parser under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
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
