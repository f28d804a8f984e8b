"""API keys of the organization (admin scope) and the audit log."""

from __future__ import annotations

from typing import Annotated

from litestar import delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from msgspec import Meta, Struct

from automation_server.api.deps import CallerDep, ServicesDep
from automation_server.audit import AuditFilters, AuditPage
from automation_server.ids import to_rfc3339
from automation_server.pagination import DEFAULT_LIMIT
from automation_server.security.accounts import create_key, list_keys, revoke_key
from automation_server.security.keys import Scope

Limit = Annotated[int, QueryParameter(ge=1, le=500, description="page size (1..500)")]


class KeyCreate(Struct, forbid_unknown_fields=True):
    scope: Scope = "read"
    name: Annotated[str, Meta(max_length=200)] | None = None


class KeyOut(Struct):
    id: str
    prefix: str
    scope: str
    name: str | None
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class KeyCreated(Struct):
    id: str
    key: str  # shown once
    prefix: str
    scope: str
    name: str | None


class KeyPage(Struct):
    items: list[KeyOut]


ADMIN = {"scope": "admin"}


@get("/keys", sync_to_thread=True, opt=ADMIN, tags=["keys"])
def list_api_keys(services: ServicesDep, caller: CallerDep) -> KeyPage:
    """Keys of the organization: prefixes, scopes, creation and last use (never the secret)."""
    return KeyPage(
        items=[
            KeyOut(
                id=k.id,
                prefix=k.prefix,
                scope=k.scope,
                name=k.name,
                created_at=to_rfc3339(k.created_at) or "",
                last_used_at=to_rfc3339(k.last_used_at),
                revoked_at=to_rfc3339(k.revoked_at),
            )
            for k in list_keys(services.db, caller.org_id)
        ]
    )


@post("/keys", status_code=201, sync_to_thread=True, opt=ADMIN, tags=["keys"])
def create_api_key(
    data: JSONBody[KeyCreate], services: ServicesDep, caller: CallerDep
) -> KeyCreated:
    """Create a key; the response is the only time the key is shown."""
    created = create_key(services.db, caller.org_id, data.scope, data.name, actor=caller.actor)
    return KeyCreated(
        id=created.key_id,
        key=created.plaintext,
        prefix=created.prefix,
        scope=created.scope,
        name=data.name,
    )


@delete("/keys/{key_id:str}", status_code=204, sync_to_thread=True, opt=ADMIN, tags=["keys"])
def revoke_api_key(key_id: FromPath[str], services: ServicesDep, caller: CallerDep) -> None:
    """Revoke a key: requests with it fail at once."""
    revoke_key(services.db, caller.org_id, key_id, caller.actor)


@get("/audit", sync_to_thread=True, opt=ADMIN, tags=["audit"])
def audit_log(
    services: ServicesDep,
    caller: CallerDep,
    resource_type: FromQuery[str | None] = None,
    resource_id: FromQuery[str | None] = None,
    actor: FromQuery[str | None] = None,
    action: FromQuery[str | None] = None,
    since: FromQuery[str | None] = None,
    until: FromQuery[str | None] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: FromQuery[str | None] = None,
) -> AuditPage:
    """Changes with who, when, what, before and after; newest first."""
    filters = AuditFilters(resource_type, resource_id, actor, action, since, until)
    return services.audit.list_page(caller, filters, limit=limit, cursor=cursor)
