"""Sandboxed Jinja2 templates over the trigger payload (runs inside the sandbox).

Jinja2 and MarkupSafe come from the variant's environment (the preset
declares them as requirements; the worker mounts the locked packages).
Templates are rendered with Jinja2's ``SandboxedEnvironment`` (no access to
Python internals from a template) and ``StrictUndefined`` (a missing payload
field is an error naming it, not an empty string). The server checks the
syntax with the same settings when the preset is created.

Variables: ``payload`` (the dispatch or webhook payload), ``run`` (run id,
variant, automation name, trigger, ...) and whatever the caller adds (the
plugin runner adds ``results`` and ``model``).
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
RUN_FIELDS = (
    "run_id",
    "automation_id",
    "automation_name",
    "experiment_id",
    "variant",
    "revision",
    "trigger",
    "attempt",
)


class RenderError(Exception):
    """A template could not be rendered (syntax, a missing variable, a sandbox refusal)."""


def variables() -> dict[str, Any]:
    """``payload`` and ``run`` for templates, read from the run's environment."""
    from automation_sdk import context

    return {
        "payload": context.get_payload(),
        "run": {name: getattr(context, name) for name in RUN_FIELDS},
    }


def render(source: str, values: dict[str, Any], what: str) -> str:
    """The rendered text; ``what`` names the template in errors (e.g. ``prompt``)."""
    try:
        return _ENV.from_string(source).render(values)
    except Exception as exc:  # a template error or one its expressions raised
        raise RenderError(f"{what}: cannot render the template: {exc}") from None
