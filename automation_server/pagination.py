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

from sqlalchemy import ColumnElement, and_, or_

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
