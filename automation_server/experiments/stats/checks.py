"""Argument checks and JSON helpers shared by the statistics modules."""

from __future__ import annotations

import math

from automation_server.errors import Invalid


def check_probability(value: float, name: str) -> None:
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise Invalid(
            f"{name} must be strictly between 0 and 1, got {value!r}", code=f"invalid_{name}"
        )


def check_count(successes: int, n: int) -> None:
    if n < 0 or not 0 <= successes <= n:
        raise Invalid(f"need 0 <= successes <= n, got {successes}/{n}", code="invalid_counts")


def finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: map them to None (null)."""
    return value if value is not None and math.isfinite(value) else None


def interval_json(low: float, high: float) -> list[float | None]:
    return [finite(low), finite(high)]
