"""How a preset run ends badly: the reason on stderr and as the ``error`` output."""

from __future__ import annotations

import sys

from automation_sdk import report

EXIT_FAILED = 1


def fail(message: str, **outputs: object) -> int:
    """Print ``error: message`` on stderr, record it (and ``outputs``), return the exit code."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    report.output("error", message)
    for key, value in outputs.items():
        report.output(key, value)
    return EXIT_FAILED
