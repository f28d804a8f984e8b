"""Opaque keyset cursors over ``(created_at DESC, id DESC)``.

A cursor encodes the last row's sort key, so pages stay correct while rows are
inserted (new rows sort before the cursor and never shift later pages).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.orm import Session

from automation_server.errors import BadRequest

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(
            f"limit: must be between 1 and {MAX_LIMIT}", field="limit", code="invalid_limit"
        )
    return limit


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.astimezone(UTC).isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, row_id = json.loads(raw)
        created = datetime.fromisoformat(stamp)
        if created.tzinfo is None or not isinstance(row_id, str) or len(row_id) > 64:
            raise ValueError("bad cursor contents")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise BadRequest(
            "cursor: not a cursor returned by this API", field="cursor", code="invalid_cursor"
        ) from None
    return created, row_id


def after_cursor(created_col: Any, id_col: Any, cursor: str | None) -> ColumnElement[bool] | None:
    """The WHERE clause selecting rows after the cursor in newest-first order."""
    if not cursor:
        return None
    created, row_id = decode_cursor(cursor)
    return or_(created_col < created, and_(created_col == created, id_col < row_id))


def parse_time(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"{field}: {value!r} is not an RFC 3339 time", field=field, code="invalid_time"
        ) from None
    if parsed.tzinfo is None:
        raise BadRequest(f"{field}: give a time zone (e.g. 'Z')", field=field, code="invalid_time")
    return parsed


def created_between(model: Any, since: str | None, until: str | None) -> list[ColumnElement[bool]]:
    """``since`` (inclusive) and ``until`` (exclusive) on ``created_at``, from query strings."""
    start, end = parse_time(since, "since"), parse_time(until, "until")
    conditions = []
    if start is not None:
        conditions.append(model.created_at >= start)
    if end is not None:
        conditions.append(model.created_at < end)
    return conditions


def fetch_page(
    session: Session, query: Select[Any], model: Any, *, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """One newest-first page of ``query`` after ``cursor``, and the cursor of the next."""
    check_limit(limit)
    after = after_cursor(model.created_at, model.id, cursor)
    if after is not None:
        query = query.where(after)
    query = query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
    rows = list(session.scalars(query))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.id)
