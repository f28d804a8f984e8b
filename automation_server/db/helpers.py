"""Small statement helpers that read the same on PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def upsert_insert(session: Session, model: Any) -> Any:
    """The session's dialect's INSERT, which has ``on_conflict_do_nothing`` and
    ``on_conflict_do_update`` (PostgreSQL's and SQLite's spell them alike)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def insert_ignore(session: Session, model: Any, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when a row was inserted."""
    stmt: Insert = upsert_insert(session, model).values(**values).on_conflict_do_nothing()
    result = session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]
