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

from sqlalchemy import ColumnElement, func, literal, select
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

    def read(self, session: Session) -> datetime:
        """The current time as a value (one round trip on PostgreSQL)."""
        if self._postgres:
            value: datetime | None = session.scalar(select(func.now()))
            assert value is not None
            return value.astimezone(UTC)
        return self._host_clock()
