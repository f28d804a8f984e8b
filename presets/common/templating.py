"""Sandboxed Jinja2 templates over the trigger payload (runs inside the sandbox).

The sandbox's Python has only the standard library, so the preset tarball
carries pinned, pure-Python copies of Jinja2 and MarkupSafe under ``_vendor/``.
Templates are rendered with Jinja2's ``SandboxedEnvironment`` (no access to
Python internals from a template) and ``StrictUndefined`` (a missing payload
field is an error naming it, not an empty string). The server checks the
syntax with the same settings when the preset is created.

Variables: ``payload`` (the dispatch or webhook payload), ``run`` (run id,
variant, automation name, trigger, ...) and whatever the caller adds (the
plugin runner adds ``results`` and ``model``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

_VENDOR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_vendor")
# First on the path: the pinned copies win over any Jinja2 the system may have.
if _VENDOR not in sys.path:
    sys.path.insert(0, _VENDOR)

from jinja2 import StrictUndefined  # noqa: E402
from jinja2.sandbox import SandboxedEnvironment  # noqa: E402

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
