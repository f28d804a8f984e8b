"""Small pure helpers that turn API records into what a page shows."""

from __future__ import annotations

from typing import Any

from automation_server.api.ui import format as fmt

FINISHED = frozenset({"succeeded", "failed", "timed_out", "cancelled", "skipped"})
STATUSES = ("queued", "running", "succeeded", "failed", "timed_out", "cancelled", "skipped")
TRIGGERS = ("manual", "cron", "interval", "webhook", "event")

# Messages after a successful form: the redirect names one of these codes, so no
# text from a URL is ever shown to the user.
NOTICES = {
    "promoted": "Promoted: the champion now has all the weight (see the new revision below).",
    "cloned": "Variant cloned (see the new revision below).",
    "weights": "Weights saved (see the new revision below).",
    "unchanged": "Nothing changed: the weights were already those.",
    "enabled": "Automation enabled.",
    "disabled": "Automation disabled: it will not fire until enabled again.",
    "cancel-requested": "Cancellation requested.",
    "already-finished": "The run had already finished: there was nothing to cancel.",
}


def trigger_text(trigger: dict[str, Any]) -> str:
    """cron 0 9 * * 1-5 (Europe/Berlin), every 5 min, manual, webhook."""
    kind = trigger.get("type", "manual")
    if kind == "cron":
        zone = trigger.get("timezone") or "UTC"
        return f"cron {trigger.get('schedule', '')} ({zone})"
    if kind == "interval":
        return f"every {fmt.seconds_text(int(trigger.get('seconds') or 0))}"
    return str(kind)


def weight_shares(variants: list[Any]) -> dict[str, float]:
    """Each variant's share of the traffic (weight over the total)."""
    total = sum(v.weight for v in variants)
    return {v.name: (v.weight / total if total else 0.0) for v in variants}


def notice_text(code: str | None) -> str | None:
    return NOTICES.get(code or "")


def metric_names(summary: dict[str, Any]) -> list[str]:
    """Every metric any variant of an experiment reported, sorted."""
    return sorted({name for item in summary["variants"] for name in item["metrics"]})


def variant_names(summary: dict[str, Any]) -> list[str]:
    """Variants in the summary's order (the control first), each once."""
    return list(dict.fromkeys(item["variant"] for item in summary["variants"]))


def source_text(source: dict[str, Any]) -> str:
    """How a variant was made: upload, s3, clone of X (rev 2), preset prompt."""
    kind = source.get("kind") or "upload"
    if kind == "clone":
        return f"clone of {source.get('of', '?')} (rev {source.get('revision', '?')})"
    if kind == "preset":
        return f"preset {source.get('preset', '?')}"
    return str(kind)
