"""HTML form fields to the same request structs the JSON API decodes.

Going through ``msgspec.convert`` applies the structs' declared patterns and
ranges, so a form can never pass what the API would refuse.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import msgspec

from automation_server.automations.schemas import AutomationPatch, CloneRequest, PromoteRequest
from automation_server.errors import Invalid
from automation_server.runs.schemas import DispatchRequest

Form = dict[str, str]
T = TypeVar("T")

WEIGHT_PREFIX = "weight."


def _convert(data: dict[str, Any], kind: type[T]) -> T:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise Invalid(str(exc).replace("$.", ""), code="invalid_form") from None


def _text(form: Form, name: str) -> str | None:
    value = form.get(name, "").strip()
    return value or None


def _integer(value: str, field: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise Invalid(f"{field}: '{value}' is not a whole number", field=field) from None


def dispatch_request(form: Form) -> DispatchRequest:
    """Optional forced variant, assignment key and JSON payload."""
    payload: Any = {}
    raw = _text(form, "payload")
    if raw is not None:
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise Invalid(f"payload: not valid JSON ({exc})", field="payload") from None
        if not isinstance(payload, dict):
            raise Invalid("payload: must be a JSON object ({...})", field="payload")
    data: dict[str, Any] = {"payload": payload}
    if (variant := _text(form, "variant")) is not None:
        data["variant"] = variant
    if (key := _text(form, "assignment_key")) is not None:
        data["assignment_key"] = key
    return _convert(data, DispatchRequest)


def clone_request(form: Form) -> CloneRequest:
    """New name, weight, and optional description and tarball overrides."""
    data: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "weight": _integer(form.get("weight", "0") or "0", "weight"),
    }
    overrides: dict[str, Any] = {}
    if (description := _text(form, "description")) is not None:
        overrides["description"] = description
    if (tarball := _text(form, "tarball")) is not None:
        overrides["tarball"] = tarball
    data["overrides"] = overrides
    return _convert(data, CloneRequest)


def promote_request(form: Form) -> PromoteRequest:
    return _convert(
        {"variant": form.get("variant", "").strip(), "reason": form.get("reason", "").strip()},
        PromoteRequest,
    )


def weights_patch(form: Form) -> AutomationPatch:
    """Fields ``weight.<variant>`` to a weights-only PATCH."""
    weights = {
        name[len(WEIGHT_PREFIX) :]: _integer(value, name)
        for name, value in form.items()
        if name.startswith(WEIGHT_PREFIX)
    }
    if not weights:
        raise Invalid("weights: no weights were sent", field="weights")
    return _convert({"weights": weights}, AutomationPatch)


def enabled_patch(form: Form) -> AutomationPatch:
    value = form.get("enabled", "")
    if value not in ("true", "false"):
        raise Invalid("enabled: must be 'true' or 'false'", field="enabled")
    return AutomationPatch(enabled=value == "true")
