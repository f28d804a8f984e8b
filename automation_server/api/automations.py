"""Automations: CRUD, revisions and webhook-secret rotation."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import msgspec
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from automation_server.api.deps import CallerDep, ServicesDep
from automation_server.automations.schemas import (
    AutomationCreate,
    AutomationOut,
    AutomationPage,
    AutomationPatch,
    RevisionPage,
)
from automation_server.automations.state import StateOut
from automation_server.errors import BadRequest
from automation_server.pagination import DEFAULT_LIMIT

Limit = Annotated[int, QueryParameter(ge=1, le=500, description="page size (1..500)")]
AutomationId = FromPath[str]


class AutomationController(Controller):
    path = "/automations"
    tags = ["automations"]

    @post("/", status_code=201, sync_to_thread=True)
    def create(
        self, data: JSONBody[AutomationCreate], services: ServicesDep, caller: CallerDep
    ) -> AutomationOut:
        """Create an automation (a webhook automation's secret is shown once, here)."""
        return services.automations.create(caller, data)

    @get("/", sync_to_thread=True)
    def list_automations(
        self,
        services: ServicesDep,
        caller: CallerDep,
        name: FromQuery[str | None] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> AutomationPage:
        """Automations of the caller's organization, newest first."""
        return services.automations.list_page(caller, name=name, limit=limit, cursor=cursor)

    @get("/{automation_id:str}", sync_to_thread=True)
    def read(
        self, automation_id: AutomationId, services: ServicesDep, caller: CallerDep
    ) -> AutomationOut:
        return services.automations.get(caller, automation_id)

    @patch("/{automation_id:str}", sync_to_thread=True)
    def update(
        self,
        automation_id: AutomationId,
        data: JSONBody[AutomationPatch],
        services: ServicesDep,
        caller: CallerDep,
    ) -> AutomationOut:
        """Partial update; changing variants, weights, champion or experiment makes a revision."""
        return services.automations.update(caller, automation_id, data)

    @delete("/{automation_id:str}", status_code=204, sync_to_thread=True)
    def remove(self, automation_id: AutomationId, services: ServicesDep, caller: CallerDep) -> None:
        """Delete an automation; its runs stay queryable."""
        services.automations.delete(caller, automation_id)

    @get("/{automation_id:str}/revisions", sync_to_thread=True)
    def revisions(
        self, automation_id: AutomationId, services: ServicesDep, caller: CallerDep
    ) -> RevisionPage:
        """Past revisions with their weights, newest first."""
        return services.automations.revisions(caller, automation_id)

    @post("/{automation_id:str}/webhook-secret", status_code=200, sync_to_thread=True)
    def rotate_webhook_secret(
        self, automation_id: AutomationId, services: ServicesDep, caller: CallerDep
    ) -> AutomationOut:
        """Rotate the webhook secret; the new one is shown once in the response."""
        return services.automations.rotate_webhook_secret(caller, automation_id)

    @get("/{automation_id:str}/state", sync_to_thread=True)
    def read_state(
        self, automation_id: AutomationId, services: ServicesDep, caller: CallerDep
    ) -> StateOut:
        """The state runs carry between them: `{}` and version 0 until one is stored."""
        return services.states.get(caller, automation_id)

    @put("/{automation_id:str}/state")
    async def replace_state(
        self,
        automation_id: AutomationId,
        request: Request[Any, Any, Any],
        services: ServicesDep,
        caller: CallerDep,
    ) -> StateOut:
        """Replace the state: a body `{"state": {...}}` (the GET shape) or the object itself."""
        raw = await request.body()
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"body is not valid JSON: {exc}", code="malformed_json") from None
        return await anyio.to_thread.run_sync(services.states.put, caller, automation_id, body)
