"""Reading what a run reported through ``automation_sdk.report``.

The file is written by untrusted code, so everything is bounded and checked:
a malformed line makes a clear run error naming the line, never a worker crash.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automation_server.automations.validation import METRIC_NAME, storable_problem

REPORT_FILE = "report.jsonl"
NAME = METRIC_NAME
MAX_REPORT_BYTES = 1_048_576
MAX_METRICS = 200
MAX_OUTPUTS = 200
MAX_OUTPUTS_BYTES = 256 * 1024


class ReportError(ValueError):
    """The report file breaks a rule; the message says which line and why."""


@dataclass
class Report:
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    # The automation's new state (the last ``report.state`` call), or None: unchanged.
    state: dict[str, Any] | None = None


def read_report(output_dir: Path, *, max_state_bytes: int = 256 * 1024) -> Report:
    path = output_dir / REPORT_FILE
    report = Report()
    if not path.is_file() or path.is_symlink():
        return report
    # A state may be up to max_state_bytes, written several times (the last one wins).
    cap = MAX_REPORT_BYTES + 4 * max_state_bytes
    if path.stat().st_size > cap:
        raise ReportError(f"report.jsonl is over {cap} bytes")
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if raw.strip():
                _apply(report, _parse(raw, number), number)
    problem = storable_problem(report.outputs)
    if problem:
        raise ReportError(f"an output {problem}")
    size = len(json.dumps(report.outputs))
    if size > MAX_OUTPUTS_BYTES:
        raise ReportError(f"outputs total {size} bytes, over the limit of {MAX_OUTPUTS_BYTES}")
    _check_state(report.state, max_state_bytes)
    return report


def _check_state(state: dict[str, Any] | None, max_bytes: int) -> None:
    if state is None:
        return
    problem = storable_problem(state)
    if problem:
        raise ReportError(f"the state {problem}")
    size = len(json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_bytes:
        raise ReportError(
            f"report.state: the state is {size} bytes, over the limit of {max_bytes} bytes "
            "(AUTOMATION_MAX_STATE_BYTES); keep less between runs"
        )


def _parse(raw: bytes, number: int) -> dict[str, Any]:
    try:
        record = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportError(f"report.jsonl line {number}: not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ReportError(f"report.jsonl line {number}: expected an object")
    return record


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def _apply(report: Report, record: dict[str, Any], number: int) -> None:
    kind = record.get("type")
    if kind == "metric":
        name, value = record.get("name"), record.get("value")
        _check_name(name, number)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ReportError(f"report.jsonl line {number}: metric {name!r} needs a finite number")
        if name not in report.metrics and len(report.metrics) >= MAX_METRICS:
            raise ReportError(f"report.jsonl line {number}: more than {MAX_METRICS} metrics")
        report.metrics[str(name)] = float(value)
    elif kind == "output":
        key = record.get("key")
        _check_name(key, number)
        if key not in report.outputs and len(report.outputs) >= MAX_OUTPUTS:
            raise ReportError(f"report.jsonl line {number}: more than {MAX_OUTPUTS} outputs")
        report.outputs[str(key)] = record.get("value")
    elif kind == "state":
        value = record.get("value")
        if not isinstance(value, dict):
            raise ReportError(f"report.jsonl line {number}: the state must be a JSON object")
        report.state = value
    else:
        raise ReportError(f"report.jsonl line {number}: type must be 'metric', 'output' or 'state'")


def _check_name(name: object, number: int) -> None:
    if not isinstance(name, str) or not NAME.match(name):
        raise ReportError(f"report.jsonl line {number}: name {name!r} must match {NAME.pattern}")
