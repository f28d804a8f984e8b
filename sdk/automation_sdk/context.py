"""What the server tells a run about itself (standard library only).

Attributes read the ``AUTOMATION_*`` environment the server sets::

    from automation_sdk import context
    context.run_id, context.variant, context.payload["ticket"]
"""

from __future__ import annotations

import json
import os
from typing import Any

_FIELDS = {
    "run_id": "AUTOMATION_RUN_ID",
    "automation_id": "AUTOMATION_ID",
    "automation_name": "AUTOMATION_NAME",
    "experiment_id": "AUTOMATION_EXPERIMENT_ID",
    "variant": "AUTOMATION_VARIANT",
    "trigger": "AUTOMATION_TRIGGER",
    "output_dir": "AUTOMATION_OUTPUT_DIR",
    "payload_path": "AUTOMATION_PAYLOAD",
}
_INT_FIELDS = {"revision": "AUTOMATION_REVISION", "attempt": "AUTOMATION_ATTEMPT"}
_payload_cache: dict[str, Any] | None = None


def get_payload() -> dict[str, Any]:
    """The dispatch or webhook payload (``{}`` when there is none)."""
    global _payload_cache
    if _payload_cache is None:
        path = os.environ.get("AUTOMATION_PAYLOAD")
        if not path:
            return {}
        with open(path, encoding="utf-8") as fh:
            loaded = json.load(fh)
        _payload_cache = loaded if isinstance(loaded, dict) else {"value": loaded}
    return _payload_cache


def as_dict() -> dict[str, Any]:
    """Everything above in one dictionary (handy for logging)."""
    out: dict[str, Any] = {name: __getattr__(name) for name in (*_FIELDS, *_INT_FIELDS)}
    out["payload"] = get_payload()
    return out


def __getattr__(name: str) -> Any:
    if name == "payload":
        return get_payload()
    if name in _FIELDS:
        return os.environ.get(_FIELDS[name]) or None
    if name in _INT_FIELDS:
        raw = os.environ.get(_INT_FIELDS[name])
        return int(raw) if raw and raw.isdigit() else None
    raise AttributeError(f"module 'automation_sdk.context' has no attribute {name!r}")
