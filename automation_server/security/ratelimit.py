"""Per-key rate limiting (a token bucket per API key, per API process).

Each key may make ``per_minute`` requests a minute on average with bursts up
to ``burst``; beyond that the API answers 429 with ``Retry-After``. Limits are
kept in memory: with several API replicas each enforces its own share, which
is documented rather than coordinated through the database on every request.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from automation_server.errors import RateLimited


class RateLimiter:
    def __init__(
        self, per_minute: int, burst: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst if burst is not None else max(10, per_minute // 6))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def check(self, key: str) -> None:
        """Take one token for ``key`` or raise :class:`RateLimited` with the wait."""
        if not self.enabled:
            return
        now = self._clock()
        with self._lock:
            tokens, updated = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - updated) * self._rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self._rate)
                raise RateLimited(
                    f"rate limit of {round(self._rate * 60)} requests a minute "
                    f"for this key exceeded; retry in {wait} s",
                    retry_after_s=wait,
                )
            self._buckets[key] = (tokens - 1.0, now)
