"""Identifiers and clock helpers shared by every component."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime


def new_id() -> str:
    """A time-ordered UUID version 7 (RFC 9562) as a string.

    Python 3.11 has no ``uuid.uuid7``; the layout is 48 bits of Unix milliseconds,
    version and variant bits, and 74 random bits, so ids sort by creation time.
    """
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # 12 random bits (rand_a)
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)  # 62 random bits (rand_b)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def to_rfc3339(value: datetime | None) -> str | None:
    """RFC 3339 UTC with a ``Z`` suffix (what the API returns), or None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
