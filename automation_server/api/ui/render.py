"""Jinja2 templates (autoescaped) and the HTML responses every dashboard page sends."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import MediaType, Response
from litestar.response import Redirect

from automation_server.api.ui import format as fmt
from automation_server.api.ui import views
from automation_server.ids import utcnow

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# Pages carry an organization's data: no caching, no framing, nothing from elsewhere.
# Inline SVG needs no 'unsafe-inline': colours are presentation attributes.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@cache
def environment() -> Environment:
    """Built once: the templates ship with the package and never change at run time."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=fmt.duration_ms,
        percent=fmt.percent,
        percent_interval=fmt.percent_interval,
        number=fmt.number,
        plain=fmt.plain,
        estimate=fmt.estimate,
        difference=fmt.difference,
        probability=fmt.probability,
        p_value=fmt.p_value,
        size=fmt.size_bytes,
        utc=fmt.utc,
        short_id=fmt.short_id,
        short_digest=fmt.short_digest,
        seconds=fmt.seconds_text,
        pretty_json=_pretty_json,
        ago=lambda value: fmt.relative(value, utcnow()),
    )
    env.globals.update(
        weight_shares=views.weight_shares,
        trigger_text=views.trigger_text,
        source_text=views.source_text,
    )
    return env


def render(template: str, **context: Any) -> str:
    for name in ("session", "notice", "error"):
        context.setdefault(name, None)
    context.setdefault("section", "")
    return environment().get_template(template).render(**context)


def page(template: str, *, status: int = 200, **context: Any) -> Response[str]:
    return Response(
        render(template, **context),
        status_code=status,
        media_type=MediaType.HTML,
        headers=SECURITY_HEADERS,
    )


def redirect(path: str) -> Redirect:
    """303 See Other: after a form POST the browser GETs the result (no resubmission)."""
    return Redirect(path, status_code=303, headers={"Cache-Control": "no-store"})
