"""The database's clock, for every time the queue compares.

Leases, heartbeats, reaping, ``available_at`` and schedule claims compare
times written by different hosts, so they must all come from one clock: on
PostgreSQL that is ``now()`` in the SQL itself (the transaction's start), so a
host whose clock is off by a minute neither reaps live runs nor claims a retry
early. SQLite is one file on one host, whose clock is the database's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Interval, bindparam, func, literal, select
from sqlalchemy.orm import Session

from automation_server.db.types import UTCDateTime
from automation_server.ids import utcnow


class DbClock:
    def __init__(self, *, postgres: bool, host_clock: Callable[[], datetime] = utcnow) -> None:
        self._postgres = postgres
        self._host_clock = host_clock

    def now(self) -> ColumnElement[datetime]:
        """The current time as a SQL expression."""
        if self._postgres:
            return func.now()
        return literal(self._host_clock(), UTCDateTime())

    def after(self, seconds: float) -> ColumnElement[datetime]:
        """``now() + seconds`` as a SQL expression."""
        if self._postgres:
            return func.now() + timedelta(seconds=seconds)
        return literal(self._host_clock() + timedelta(seconds=seconds), UTCDateTime())

    @property
    def postgres(self) -> bool:
        return self._postgres

    # Statements built once (see claim.py) refer to the time through these: on
    # PostgreSQL ``now()`` itself, on SQLite a parameter that :meth:`params` fills.

    @staticmethod
    def now_param(postgres: bool) -> ColumnElement[datetime]:
        return func.now() if postgres else bindparam("b_now", type_=UTCDateTime())

    @staticmethod
    def after_param(postgres: bool, name: str) -> ColumnElement[datetime]:
        """``now + <seconds named name>`` in a statement built once."""
        if postgres:
            return func.now() + bindparam(f"b_{name}", type_=Interval())
        return bindparam(f"b_{name}", type_=UTCDateTime())

    def params(self, **seconds: float) -> dict[str, object]:
        """Values for :meth:`now_param` and each :meth:`after_param` name."""
        if self._postgres:
            return {f"b_{name}": timedelta(seconds=s) for name, s in seconds.items()}
        now = self._host_clock()
        out: dict[str, object] = {"b_now": now}
        out.update({f"b_{name}": now + timedelta(seconds=s) for name, s in seconds.items()})
        return out

    def read(self, session: Session) -> datetime:
        """The current time as a value (one round trip on PostgreSQL)."""
        if self._postgres:
            value: datetime | None = session.scalar(select(func.now()))
            assert value is not None
            return value.astimezone(UTC)
        return self._host_clock()
