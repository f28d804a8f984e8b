"""Database access: one :class:`Database` per process, short transactions.

``read()`` and ``write()`` open a session in a transaction. On SQLite, ``write()``
starts with ``BEGIN IMMEDIATE`` so the write lock is taken up front: a deferred
transaction that reads and then writes can fail with "database is locked" when
another writer committed in between, and busy_timeout does not help with that.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from automation_server.errors import Unavailable

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's implicit
        # transactions cannot be IMMEDIATE).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for SQLite (WAL, busy timeout) or PostgreSQL (psycopg 3)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        _configure_sqlite(engine)
        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
    _drop_closed_connections(engine)
    return engine


def _drop_closed_connections(engine: Engine) -> None:
    """A pooled connection the server has closed is replaced before it is used.

    An idle pooled connection receives nothing unasked; when PostgreSQL
    restarts or ends the backend, it sends a termination notice and closes the
    socket, which then reads as ready. Looking at the socket costs no round
    trip, unlike ``pool_pre_ping``'s ``SELECT 1`` on every checkout (three
    per run on the hot path). Raising ``DisconnectionError`` makes the pool
    discard the connection and try a fresh one.
    """

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        try:
            ready = select.select([dbapi_conn.fileno()], [], [], 0)[0]
        except (OSError, ValueError) as exc:  # already closed on our side
            raise DisconnectionError("pooled connection is closed") from exc
        if ready:
            raise DisconnectionError("the server closed this pooled connection")


class Database:
    """Sessions for services; the only object that knows about engines."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        write_bind = (
            self.engine.execution_options(sqlite_immediate=True) if self.is_sqlite else self.engine
        )
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(write_bind, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; its transaction is rolled back when it closes."""
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction commits when the block ends without error."""
        with self._write() as session, session.begin():
            yield session

    def ping(self) -> None:
        """Raise :class:`Unavailable` when the database cannot be reached."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            raise Unavailable(f"database unreachable: {type(exc.orig).__name__}") from exc

    def dispose(self) -> None:
        self.engine.dispose()
