"""Waiting for a file descriptor with poll(2), which, unlike select(2), has no fd limit.

A server process with many connections can hold descriptors above 1023,
which ``select.select`` refuses.
"""

from __future__ import annotations

import select


def wait_readable(fd: int, timeout_s: float) -> bool:
    """True once ``fd`` is readable (or at EOF / hung up) within ``timeout_s``."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(max(timeout_s, 0.0) * 1000))
