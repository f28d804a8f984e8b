"""Report metrics and outputs from inside a run (standard library only).

Each call appends one JSON line to ``$AUTOMATION_OUTPUT_DIR/report.jsonl``; the
server reads the file after the run and stores the values on the run record
(``metrics`` and ``outputs``). Lines are flushed at once, so values reported
before a crash are kept.

    from automation_sdk import report
    report.metric("latency_ms", 412)
    report.output("summary", {"tickets": 3})
    seen = report.current_state().get("last_ticket", 0)
    report.state({"last_ticket": seen + 3})
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,99}$")
REPORT_FILE = "report.jsonl"


def _write(record: dict[str, Any]) -> None:
    directory = os.environ.get("AUTOMATION_OUTPUT_DIR")
    if not directory:
        raise RuntimeError("AUTOMATION_OUTPUT_DIR is not set: report.* works inside a run")
    line = json.dumps(record, allow_nan=False, separators=(",", ":"))
    with open(os.path.join(directory, REPORT_FILE), "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()


def metric(name: str, value: float) -> None:
    """Record a numeric metric (finite int or float); the last value of a name wins."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"metric name {name!r} must match {NAME.pattern}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"metric {name!r}: value must be a finite number, got {value!r}")
    _write({"type": "metric", "name": name, "value": value})


def state(value: dict[str, Any]) -> None:
    """Set the automation's state for its next runs (a JSON object; the last call wins).

    It is kept only if this run succeeds. The state as of this run's start is in the
    file named by ``AUTOMATION_STATE`` (see :func:`current_state`).
    """
    if not isinstance(value, dict):
        raise TypeError(f"state must be a dict (a JSON object), got {type(value).__name__}")
    _write({"type": "state", "value": value})


def current_state() -> dict[str, Any]:
    """The automation's state as of this run's start (``{}`` at first)."""
    path = os.environ.get("AUTOMATION_STATE")
    if not path:
        raise RuntimeError("AUTOMATION_STATE is not set: report.current_state works inside a run")
    with open(path, encoding="utf-8") as fh:
        loaded = json.load(fh)
    return loaded if isinstance(loaded, dict) else {}


def output(key: str, value: Any) -> None:
    """Record a JSON-serialisable output value under ``key``; the last value wins."""
    if not isinstance(key, str) or not NAME.match(key):
        raise ValueError(f"output key {key!r} must match {NAME.pattern}")
    _write({"type": "output", "key": key, "value": value})
