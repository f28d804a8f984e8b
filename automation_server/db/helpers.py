"""Small statement helpers that read the same on PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(session: Session, model: Any, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when a row was inserted."""
    dialect = session.get_bind().dialect.name
    stmt: Insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)
    stmt = stmt.values(**values).on_conflict_do_nothing()  # type: ignore[attr-defined]
    result = session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]
