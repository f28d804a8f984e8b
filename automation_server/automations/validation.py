"""Rules on automation definitions beyond what the schema declares (422s).

Every function raises :class:`Invalid` with the JSON path of the offending field
and a stable code, so clients can point at the input that broke the rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from automation_server.automations.schemas import (
    EXPERIMENT_ID,
    LimitsSpec,
    TriggerSpec,
)
from automation_server.config import LimitSettings, RunLimits
from automation_server.errors import Invalid
from automation_server.triggers import parse_cron, parse_interval

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
RESERVED_ENV_PREFIX = "AUTOMATION_"
_EXPERIMENT = re.compile(EXPERIMENT_ID)


def storable_problem(value: Any) -> str | None:
    """Why a JSON-like value cannot be stored as text (NUL or unpaired surrogates), or None.

    PostgreSQL rejects NUL in text and JSONB, and UTF-8 has no encoding for a lone
    surrogate that a JSON ``\\ud800`` escape can produce; both are refused up front.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "contains a NUL character"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "contains an unpaired surrogate (not valid Unicode text)"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def check_storable(value: Any, field: str) -> None:
    problem = storable_problem(value)
    if problem:
        raise Invalid(f"{field}: a string {problem}", field=field, code="invalid_text")


def check_experiment_id(value: str | None) -> None:
    if value is not None and not _EXPERIMENT.match(value):
        raise Invalid(
            f"experiment_id: {value[:50]!r} must match {EXPERIMENT_ID}",
            field="experiment_id",
            code="invalid_experiment_id",
        )


def check_env(env: Mapping[str, str], field: str) -> None:
    """Names must be shell-style identifiers and may not start with ``AUTOMATION_``."""
    for name in env:
        if not ENV_NAME.match(name):
            raise Invalid(
                f"{field}: {name[:50]!r} is not a valid environment variable name",
                field=f"{field}.{name[:50]}",
                code="invalid_env",
            )
        if name.upper().startswith(RESERVED_ENV_PREFIX):
            raise Invalid(
                f"{field}: {name!r} is reserved: names starting with AUTOMATION_ are set "
                "by the server",
                field=f"{field}.{name}",
                code="reserved_env",
            )


def check_entrypoint(argv: Sequence[str], field: str) -> None:
    """``argv[0]`` is a command on PATH or a path inside the tarball: never absolute or ``..``."""
    command = argv[0]
    if command.startswith("/"):
        raise Invalid(
            f"{field}: '{command[:100]}' is absolute; use a command on PATH or a "
            "path relative to the tarball root",
            field=f"{field}[0]",
            code="invalid_entrypoint",
        )
    if ".." in command.split("/"):
        raise Invalid(
            f"{field}: '{command[:100]}' may not contain '..'",
            field=f"{field}[0]",
            code="invalid_entrypoint",
        )
    if any("\x00" in arg for arg in argv):
        raise Invalid(
            f"{field}: arguments may not contain NUL bytes", field=field, code="invalid_entrypoint"
        )


def check_variant_set(
    names: Sequence[str], weights: Sequence[int], experiment_id: str | None, field: str
) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise Invalid(
                f"{field}[{i}].name: duplicate variant name '{name}'",
                field=f"{field}[{i}].name",
                code="duplicate_variant",
            )
        seen.add(name)
    if not any(w > 0 for w in weights):
        raise Invalid(
            f"{field}: at least one variant needs a weight above 0",
            field=field,
            code="no_weighted_variant",
        )
    if sum(1 for w in weights if w > 0) >= 2 and experiment_id is None:
        raise Invalid(
            "experiment_id: two or more variants with weight > 0 need an experiment_id",
            field="experiment_id",
            code="experiment_required",
        )


def check_network(network: str, allow_host: bool) -> None:
    if network == "host" and not allow_host:
        raise Invalid(
            "network: 'host' is disabled on this server (the operator can allow it "
            "with AUTOMATION_ALLOW_HOST_NETWORK=true)",
            field="network",
            code="host_network_not_allowed",
        )


def check_assignment_key_path(path: str | None) -> None:
    if path is None:
        return
    try:
        jmespath.compile(path)
    except JMESPathError as exc:
        raise Invalid(
            f"assignment_key_path: not a JMESPath expression: {exc}",
            field="assignment_key_path",
            code="invalid_assignment_key_path",
        ) from None


# What a run may report as a metric name (worker/reports.py reads the same rule).
METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,99}$")


MAX_DECLARED_METRICS = 50
MAX_UNIT_CHARS = 16


def check_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Declared metrics: at most 50, names a run can report, direction ``higher`` or
    ``lower`` (``success_rate`` is always higher), a unit of at most 16 characters."""
    if len(metrics) > MAX_DECLARED_METRICS:
        raise Invalid(
            f"metrics: {len(metrics)} declared, at most {MAX_DECLARED_METRICS} are allowed",
            field="metrics",
            code="invalid_metric",
        )
    for name, spec in metrics.items():
        if spec.get("direction") not in ("higher", "lower"):
            raise Invalid(
                f"metrics.{name}.direction: {spec.get('direction')!r} is not 'higher' or 'lower'",
                field=f"metrics.{name}.direction",
                code="invalid_metric",
            )
        unit = spec.get("unit")
        if unit is not None and not 1 <= len(unit) <= MAX_UNIT_CHARS:
            raise Invalid(
                f"metrics.{name}.unit: {len(unit)} characters, it must have 1 to {MAX_UNIT_CHARS}",
                field=f"metrics.{name}.unit",
                code="invalid_metric",
            )
        if not METRIC_NAME.match(name):
            raise Invalid(
                f"metrics: {name!r} is not a metric name a run can report "
                f"(it must match {METRIC_NAME.pattern})",
                field=f"metrics.{name}",
                code="invalid_metric",
            )
        if name == "success_rate" and spec.get("direction") != "higher":
            raise Invalid(
                "metrics.success_rate: the success rate is always better higher",
                field="metrics.success_rate.direction",
                code="invalid_metric",
            )
    return {
        name: {k: v for k, v in spec.items() if v is not None} for name, spec in metrics.items()
    }


BANDIT_DEFAULTS = {"metric": "success_rate", "every_runs": 50, "min_weight": 100}
EVERY_RUNS = (10, 100_000)
MIN_WEIGHT = (0, 10_000)


def check_allocation(
    spec: Mapping[str, Any], metrics: Mapping[str, Any], variants: int
) -> dict[str, Any]:
    """The allocation as stored: ``{"mode": "fixed"}``, or a bandit with its defaults."""
    mode = spec.get("mode")
    if mode == "fixed":
        return {"mode": "fixed"}
    if mode != "bandit":
        raise _allocation(f"mode: {mode!r} is not 'fixed' or 'bandit'", "mode")
    bandit = {**BANDIT_DEFAULTS, **{k: v for k, v in spec.items() if v is not None}}
    low, high = EVERY_RUNS
    if not low <= bandit["every_runs"] <= high:
        raise _allocation(
            f"every_runs: {bandit['every_runs']} is not in {low}..{high}", "every_runs"
        )
    low, high = MIN_WEIGHT
    if not low <= bandit["min_weight"] <= high:
        raise _allocation(
            f"min_weight: {bandit['min_weight']} is not in {low}..{high}", "min_weight"
        )
    if bandit["min_weight"] * variants > 10_000:
        raise _allocation(
            f"min_weight: {bandit['min_weight']} for each of {variants} variants is more than "
            "the total weight of 10000",
            "min_weight",
        )
    if bandit["metric"] != "success_rate" and bandit["metric"] not in metrics:
        raise _allocation(
            f"metric: {bandit['metric']!r} is neither 'success_rate' nor a declared metric "
            "(declare it under metrics to say which way is better)",
            "metric",
        )
    return bandit


def _allocation(detail: str, name: str) -> Invalid:
    return Invalid(f"allocation.{detail}", field=f"allocation.{name}", code="invalid_allocation")


def effective_policy(policy: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``auto_promote`` with each direction filled in: its own, else the metric's declared
    one, else higher (the success rate is always higher)."""

    def direction(metric: str, given: str | None) -> str:
        return given or str((metrics.get(metric) or {}).get("direction") or "higher")

    out = dict(policy)
    out["direction"] = direction(str(policy.get("metric")), policy.get("direction"))
    out["guardrails"] = [
        {**rail, "direction": direction(str(rail.get("metric")), rail.get("direction"))}
        for rail in policy.get("guardrails") or []
    ]
    return out


def resolve_limits(spec: LimitsSpec, settings: LimitSettings) -> dict[str, int]:
    """The run limits with server defaults filled in, refused above the server maximum."""
    result: dict[str, int] = {}
    for name in RunLimits.__dataclass_fields__:
        asked = getattr(spec, name)
        value = getattr(settings.default, name) if asked is None else asked
        maximum = getattr(settings.maximum, name)
        if value > maximum:
            raise Invalid(
                f"limits.{name}: {value} is above this server's maximum of {maximum}",
                field=f"limits.{name}",
                code="limit_too_high",
            )
        result[name] = value
    return result


def resolve_timeout(timeout_s: int | None, settings: LimitSettings) -> int:
    value = settings.default_timeout_s if timeout_s is None else timeout_s
    if value > settings.max_timeout_s:
        raise Invalid(
            f"timeout_s: {value} is above this server's maximum of {settings.max_timeout_s}",
            field="timeout_s",
            code="limit_too_high",
        )
    return value


# The optional fields each trigger type uses; any other one given is a mistake (422).
TRIGGER_FIELDS = {
    "cron": {"schedule", "timezone"},
    "interval": {"seconds"},
    "event": {"source", "on", "filter"},
    "manual": set(),
    "webhook": set(),
}


def normalise_trigger(spec: TriggerSpec) -> dict[str, Any]:
    """The stored form of a trigger, after checking it can compute fire times (an event
    trigger's source is resolved by the service, which knows the organization)."""
    _check_unused_trigger_fields(spec)
    if spec.type == "cron":
        if not spec.schedule:
            raise Invalid(
                "trigger.schedule: a cron trigger needs a schedule such as '0 9 * * 1-5'",
                field="trigger.schedule",
                code="invalid_cron",
            )
        parse_cron(spec.schedule, spec.timezone)
        return {"type": "cron", "schedule": spec.schedule, "timezone": spec.timezone}
    if spec.type == "interval":
        if spec.seconds is None:
            raise Invalid(
                "trigger.seconds: an interval trigger needs 'seconds' (>= 1)",
                field="trigger.seconds",
                code="invalid_interval",
            )
        parse_interval(spec.seconds, anchor=datetime.now().astimezone())
        return {"type": "interval", "seconds": spec.seconds}
    if spec.type == "event":
        return _event_trigger(spec)
    return {"type": spec.type}


def _check_unused_trigger_fields(spec: TriggerSpec) -> None:
    for name in ("schedule", "seconds", "source", "on", "filter"):
        if getattr(spec, name) is not None and name not in TRIGGER_FIELDS[spec.type]:
            raise Invalid(
                f"trigger.{name}: not used by a '{spec.type}' trigger",
                field=f"trigger.{name}",
                code="invalid_trigger",
            )


def _event_trigger(spec: TriggerSpec) -> dict[str, Any]:
    if not spec.source:
        raise Invalid(
            "trigger.source: an event trigger needs the name of an event source "
            "(create one with POST /v1/event-sources)",
            field="trigger.source",
            code="invalid_trigger",
        )
    on = list(dict.fromkeys(spec.on or ["*"]))
    if "*" in on and len(on) > 1:
        raise Invalid(
            "trigger.on: '*' already means every event type; list types or '*' alone",
            field="trigger.on",
            code="invalid_trigger",
        )
    trigger: dict[str, Any] = {"type": "event", "source": spec.source, "on": on}
    if spec.filter is not None:
        check_event_filter(spec.filter)
        trigger["filter"] = spec.filter
    return trigger


def check_event_filter(expression: str) -> None:
    """A filter is a JMESPath expression evaluated on the event body (422 if it does not
    compile)."""
    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        raise Invalid(
            f"trigger.filter: not a valid JMESPath expression ({exc}); for example "
            "\"action == 'opened'\"",
            field="trigger.filter",
            code="invalid_filter",
        ) from None
