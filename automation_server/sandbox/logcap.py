"""Capped capture of a run's output: keep the head and the tail, count everything.

A run may print gigabytes; the stored log keeps the first half of the budget
and the last half, with one marker line saying how much was left out. The
reader runs in its own thread so a chatty program or a slow ``on_output``
consumer never delays timeout handling.
"""

from __future__ import annotations

import os
import threading

import structlog

from automation_server.sandbox.base import OnOutput
from automation_server.sandbox.fdwait import wait_readable

log = structlog.get_logger(__name__)

_CHUNK = 65536


def omitted_marker(n: int) -> bytes:
    return f"\n[... {n} bytes omitted ...]\n".encode()


class LogCapture:
    """Head-and-tail buffer: the result never exceeds ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, max_bytes)
        self._head_cap = self.max_bytes // 2
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self._tail += chunk
        tail_cap = self.max_bytes - self._head_cap
        # Trim lazily (at twice the budget) so a stream of small chunks costs O(n).
        if len(self._tail) > 2 * tail_cap + _CHUNK:
            del self._tail[: len(self._tail) - tail_cap]

    @property
    def truncated(self) -> bool:
        return self.total > self.max_bytes

    def result(self) -> bytes:
        """The captured log: everything, or head + marker + tail within ``max_bytes``."""
        if not self.truncated:
            return bytes(self._head + self._tail)
        head = bytes(self._head)
        budget = self.max_bytes - len(head)
        keep = min(budget, len(self._tail))
        # The marker's length depends on the number it prints: shrink the kept
        # tail until head + marker + tail fits.
        while True:
            marker = omitted_marker(self.total - len(head) - keep)
            if len(marker) + keep <= budget:
                break
            if keep == 0:
                return head[: self.max_bytes]
            keep = max(0, budget - len(marker))
        tail = bytes(self._tail[len(self._tail) - keep :]) if keep else b""
        return head + marker + tail


class OutputPump(threading.Thread):
    """Reads a pipe until EOF (or :meth:`stop`), feeding a capture and a callback."""

    def __init__(self, fd: int, capture: LogCapture, on_output: OnOutput | None) -> None:
        super().__init__(name=f"sandbox-output-{fd}", daemon=True)
        self._fd = fd
        self._capture = capture
        self._on_output = on_output
        self._stop_requested = threading.Event()

    def run(self) -> None:
        drained = 0
        try:
            while True:
                stopping = self._stop_requested.is_set()
                if not wait_readable(self._fd, 0 if stopping else 0.2):
                    if stopping:
                        return
                    continue
                chunk = os.read(self._fd, _CHUNK)
                if not chunk:
                    return
                self._deliver(chunk)
                if stopping:
                    # Something outside the run still writes: take what is
                    # buffered, not an endless stream.
                    drained += len(chunk)
                    if drained > 16 * _CHUNK:
                        return
        finally:
            os.close(self._fd)

    def _deliver(self, chunk: bytes) -> None:
        self._capture.feed(chunk)
        if self._on_output is None:
            return
        try:
            self._on_output(chunk)
        except Exception:
            # A broken log streamer must not break the run; the capture goes on.
            log.exception("sandbox.on_output_failed")
            self._on_output = None

    def finish(self, timeout: float) -> None:
        """Wait for EOF; after ``timeout`` give up on writers that still hold the pipe."""
        self.join(timeout)
        if self.is_alive():
            self._stop_requested.set()
            self.join()
