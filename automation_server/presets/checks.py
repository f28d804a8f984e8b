"""Request-time checks of preset content: template syntax and plugin configs (422s).

Templates are parsed with the settings the run renders them with (sandboxed,
strict undefined), so a syntax error is reported when the preset is created,
naming the variant and field, rather than by every run. Plugin configs are
validated with ``jsonschema`` against the plugin's own schema; the schema may
mark strings ``"format": "template"`` to have them syntax-checked too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jsonschema
from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from jsonschema.exceptions import SchemaError, ValidationError

from automation_server.errors import Invalid

# Same settings as presets/common/templating.py, which renders at run time.
_TEMPLATES = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)
_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("template", raises=TemplateSyntaxError)
def _is_template(value: object) -> bool:
    if isinstance(value, str):
        _TEMPLATES.parse(value)
    return True


def check_template(source: str, field: str) -> None:
    """422 ``invalid_template`` naming ``field`` when ``source`` is not a valid template."""
    try:
        _TEMPLATES.parse(source)
    except TemplateSyntaxError as exc:
        raise Invalid(
            f"{field}: template syntax error at line {exc.lineno}: {exc.message}",
            field=field,
            code="invalid_template",
        ) from None


def check_schema(schema: dict[str, Any], field: str) -> None:
    """422 ``invalid_plugin`` when a plugin's ``schema.json`` is not a valid JSON Schema."""
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise Invalid(
            f"{field}: schema.json is not a valid JSON Schema: {exc.message}",
            field=field,
            code="invalid_plugin",
        ) from None


def validate_config(schema: dict[str, Any], config: Any, field: str) -> None:
    """422 ``invalid_plugin_config`` at the offending path below ``field`` (``....config``)."""
    validator = jsonschema.validators.validator_for(schema)(schema, format_checker=_FORMATS)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return
    path = field + _json_path(error.absolute_path)
    named = _named_property(error)
    if named is not None:
        path = f"{path}.{named}"
    raise Invalid(f"{path}: {_message(error)}", field=path, code="invalid_plugin_config")


def _json_path(parts: Iterable[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _named_property(error: ValidationError) -> str | None:
    """The property a ``required`` or ``additionalProperties`` error is about, if one."""
    instance, schema = error.instance, error.schema
    if not isinstance(instance, dict) or not isinstance(schema, dict):
        return None
    if error.validator == "required" and isinstance(error.validator_value, list):
        return next((str(name) for name in error.validator_value if name not in instance), None)
    if error.validator == "additionalProperties" and "patternProperties" not in schema:
        known = schema.get("properties", {})
        return next((str(name) for name in sorted(instance) if name not in known), None)
    return None


def _message(error: ValidationError) -> str:
    cause = error.cause
    if isinstance(cause, TemplateSyntaxError):
        return f"template syntax error at line {cause.lineno}: {cause.message}"
    if error.validator == "format" and cause is not None:
        return f"not a valid {error.validator_value}: {cause}"
    return error.message[:500]
