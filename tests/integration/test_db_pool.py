"""Pooled PostgreSQL connections the server closed are replaced before use, without a ping."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from automation_server.db.engine import Database


def test_a_terminated_pooled_connection_is_replaced_unnoticed(pg_url: str) -> None:
    db = Database(pg_url, pool_size=1)
    try:
        with db.read() as session:
            first = session.scalar(sa.text("SELECT pg_backend_pid()"))
        killer = sa.create_engine(pg_url)
        with killer.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": first})
        killer.dispose()
        time.sleep(0.2)  # the termination notice reaches the idle pooled socket
        with db.read() as session:
            second = session.scalar(sa.text("SELECT pg_backend_pid()"))
        assert second != first, "the dead connection must not be handed out again"
    finally:
        db.dispose()


def test_a_healthy_pooled_connection_costs_no_ping(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(pg_url, pool_size=1)
    try:
        with db.read() as session:
            first = session.scalar(sa.text("SELECT pg_backend_pid()"))
        statements: list[str] = []
        event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        pings: list[object] = []
        ping = db.engine.dialect.do_ping
        monkeypatch.setattr(db.engine.dialect, "do_ping", lambda c: pings.append(c) or ping(c))
        with db.read() as session:
            second = session.scalar(sa.text("SELECT pg_backend_pid()"))
        assert second == first
        assert statements == ["SELECT pg_backend_pid()"] and pings == []
    finally:
        db.dispose()
