"""Finishing touches on the generated OpenAPI document (served at /schema).

Litestar documents its own validation error shape and knows nothing of ours, of
request bodies that refuse unknown fields, or of the raw upload body. One pass
after the app is built makes the document say what the server does.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)

ERROR_STATUSES = {
    "400": "The request does not match the schema (malformed JSON, unknown field, bad type)",
    "401": "Missing or invalid API key",
    "403": "The key's scope does not allow this",
    "404": "Not found (or another organization's)",
    "409": "Conflict with the current state",
    "413": "Body over this endpoint's limit",
    "422": "A rule beyond the schema is broken; `field` names the input",
    "429": "Rate or queue limit; see Retry-After",
    "503": "The database or object store is unreachable; retry",
}


def error_schema() -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        properties={
            "status_code": Schema(type=OpenAPIType.INTEGER),
            "code": Schema(type=OpenAPIType.STRING, description="stable machine code"),
            "detail": Schema(type=OpenAPIType.STRING),
            "field": Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL]),
        },
        required=["status_code", "code", "detail", "field"],
        additional_properties=False,
        description="Every error response has this shape",
    )


def _strict_struct_names() -> set[str]:
    """Names of request structs that reject unknown fields."""
    names: set[str] = set()
    stack: list[type[Any]] = [msgspec.Struct]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        config = getattr(cls, "__struct_config__", None)
        if (
            config is not None
            and config.forbid_unknown_fields
            and cls.__module__.startswith("automation_server")
        ):
            names.add(cls.__name__)
    return names


def _operations(schema: OpenAPI) -> list[tuple[str, Operation]]:
    found = []
    for path, item in (schema.paths or {}).items():
        for method in ("get", "post", "put", "patch", "delete"):
            op = getattr(item, method, None)
            if op is not None:
                found.append((path, op))
    return found


def polish(schema: OpenAPI) -> OpenAPI:
    components = schema.components if isinstance(schema.components, Components) else Components()
    components.schemas = dict(components.schemas or {})
    components.schemas["Error"] = error_schema()
    for name in _strict_struct_names() & set(components.schemas):
        component = components.schemas[name]
        if isinstance(component, Schema):
            component.additional_properties = False
    schema.components = components
    error = {
        "application/json": OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Error"))
    }
    for path, op in _operations(schema):
        if not path.startswith("/v1"):
            continue
        responses = dict(op.responses or {})
        for status, description in ERROR_STATUSES.items():
            responses[status] = OpenAPIResponse(description=description, content=error)
        op.responses = responses
        if path == "/v1/uploads" and op.request_body is None:
            op.request_body = RequestBody(
                required=True,
                description="the .tar.gz bytes (any content type is accepted)",
                content={
                    "application/octet-stream": OpenAPIMediaType(
                        schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
                    ),
                },
            )
    return schema
