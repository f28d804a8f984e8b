"""Variant lifecycle: clone, promote and the decisions record."""

from __future__ import annotations

from litestar import get, post
from litestar.params import FromPath, JSONBody

from automation_server.api.deps import CallerDep, ServicesDep
from automation_server.automations.schemas import (
    AutomationOut,
    CloneRequest,
    DecisionPage,
    PromoteRequest,
)


@post(
    "/automations/{automation_id:str}/variants/{name:str}/clone",
    status_code=201,
    sync_to_thread=True,
    tags=["variants"],
)
def clone_variant(
    automation_id: FromPath[str],
    name: FromPath[str],
    data: JSONBody[CloneRequest],
    services: ServicesDep,
    caller: CallerDep,
) -> AutomationOut:
    """A new variant copied from `name` (overrides replace the copied value whole); new revision."""
    return services.lifecycle.clone(caller, automation_id, name, data)


@post(
    "/automations/{automation_id:str}/promote",
    status_code=200,
    sync_to_thread=True,
    tags=["variants"],
)
def promote(
    automation_id: FromPath[str],
    data: JSONBody[PromoteRequest],
    services: ServicesDep,
    caller: CallerDep,
) -> AutomationOut:
    """The variant becomes the champion with all the weight (new revision, decision recorded)."""
    return services.lifecycle.promote(caller, automation_id, data)


@get("/automations/{automation_id:str}/decisions", sync_to_thread=True, tags=["variants"])
def decisions(
    automation_id: FromPath[str], services: ServicesDep, caller: CallerDep
) -> DecisionPage:
    """Promotions and rollbacks, newest first."""
    return services.lifecycle.decisions(caller, automation_id)
