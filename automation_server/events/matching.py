"""Which automations an event runs: its type against ``on``, then the ``filter``.

Filters are JMESPath expressions checked at save time; they are compiled once per
process. Truthiness is JMESPath's (false, null, "", [] and {} are false; 0 is
true), so a filter means the same as in any JMESPath tool.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from automation_server.errors import BadRequest
from automation_server.logging import get_logger

log = get_logger("events")

MAX_EVENT_TYPE_CHARS = 200


@lru_cache(maxsize=4096)
def _compiled(expression: str) -> ParsedResult:
    return jmespath.compile(expression)


def event_type_of(spec: Mapping[str, str], headers: Mapping[str, str], body: Any) -> str:
    """The delivery's event type, from the source's header or body path (400 if absent)."""
    if "header" in spec:
        value: Any = headers.get(spec["header"].lower())
        where = f"header {spec['header']}"
    else:
        value = _search(spec["path"], body)
        where = f"body path '{spec['path']}'"
    if isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
        raise BadRequest(
            f"no event type: the source reads it from the {where}, which this delivery "
            "does not have (or it is not a string)",
            code="missing_event_type",
        )
    return str(value)[:MAX_EVENT_TYPE_CHARS]


def matches(trigger: Mapping[str, Any], event_type: str, body: Any) -> bool:
    on = trigger.get("on") or ["*"]
    if "*" not in on and event_type not in on:
        return False
    expression = trigger.get("filter")
    return expression is None or _truthy(_search(expression, body))


def _search(expression: str, body: Any) -> Any:
    try:
        return _compiled(expression).search(body)
    except JMESPathError as exc:  # e.g. a function given the wrong type: no match
        log.info("event.filter_error", expression=expression, error=str(exc))
        return None


def _truthy(value: Any) -> bool:
    return value is not None and value is not False and value not in ("", [], {})
