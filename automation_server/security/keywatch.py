"""Re-checking, while a process runs, that its key is still the deployment's.

A rotation done by another process moves the key check value to the new
key. A process started before it with only the old key would go on: a worker
claiming runs it cannot decrypt, an api encrypting new secrets under a key
that is about to be dropped. Every long-running process therefore re-checks
every ``KEY_CHECK_S`` seconds and stops when its key is no longer the
deployment's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from automation_server.logging import get_logger
from automation_server.security.crypto import SecretKeyError

KEY_CHECK_S = 30.0

log = get_logger("security")


class FatalStop(threading.Event):
    """Set when a process cannot go on; ``reason`` says why, for the process to print
    before it exits non-zero."""

    reason: str | None = None

    def stop_with(self, reason: str) -> None:
        if not self.is_set():
            self.reason = reason
            self.set()


class KeyWatch:
    def __init__(
        self,
        verify: Callable[[], object],
        on_mismatch: Callable[[str], None],
        interval_s: float = KEY_CHECK_S,
    ) -> None:
        self._verify = verify
        self._on_mismatch = on_mismatch
        self._interval_s = interval_s
        self._stop = threading.Event()

    def start(self) -> KeyWatch:
        threading.Thread(target=self._loop, name="key-watch", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._verify()
            except SecretKeyError as exc:
                log.error("secret_key.mismatch", detail=exc.detail)
                self._on_mismatch(exc.detail)
                return
            except Exception as exc:  # the database is down: check again next time
                log.warning("secret_key.check_failed", error=type(exc).__name__)
