"""Event sources (``/v1/event-sources``) and their signed endpoint (``/v1/events/{id}``)."""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Controller, Request, delete, get, patch, post
from litestar.params import FromPath, JSONBody

from automation_server.api.deps import CallerDep, ServicesDep
from automation_server.events.schemas import (
    EventAnswer,
    EventSourceCreate,
    EventSourceOut,
    EventSourcePage,
    EventSourcePatch,
)

SourceId = FromPath[str]


class EventSourceController(Controller):
    path = "/event-sources"
    tags = ["events"]

    @post("/", status_code=201, sync_to_thread=True)
    def create(
        self, data: JSONBody[EventSourceCreate], services: ServicesDep, caller: CallerDep
    ) -> EventSourceOut:
        """Create a source; its signing `secret` is shown once, in this response."""
        return services.event_sources.create(caller, data)

    @get("/", sync_to_thread=True)
    def list_sources(self, services: ServicesDep, caller: CallerDep) -> EventSourcePage:
        return services.event_sources.list(caller)

    @get("/{source_id:str}", sync_to_thread=True)
    def read(self, source_id: SourceId, services: ServicesDep, caller: CallerDep) -> EventSourceOut:
        return services.event_sources.get(caller, source_id)

    @patch("/{source_id:str}", sync_to_thread=True)
    def update(
        self,
        source_id: SourceId,
        data: JSONBody[EventSourcePatch],
        services: ServicesDep,
        caller: CallerDep,
    ) -> EventSourceOut:
        return services.event_sources.update(caller, source_id, data)

    @delete("/{source_id:str}", status_code=204, sync_to_thread=True)
    def remove(self, source_id: SourceId, services: ServicesDep, caller: CallerDep) -> None:
        """Delete a source (409 while an automation's trigger uses it)."""
        services.event_sources.delete(caller, source_id)

    @post("/{source_id:str}/secret", status_code=200, sync_to_thread=True)
    def rotate_secret(
        self, source_id: SourceId, services: ServicesDep, caller: CallerDep
    ) -> EventSourceOut:
        """A new signing secret, shown once; the old one stops working at once."""
        return services.event_sources.rotate_secret(caller, source_id)


@post("/{source_id:str}", status_code=202, tags=["events"])
async def receive_event(
    request: Request[Any, Any, Any], source_id: SourceId, services: ServicesDep
) -> EventAnswer:
    """Queue one run per matching enabled automation, in one transaction.

    Signed with the source's signature header: `sha256=<hex HMAC-SHA256 of the raw body>`
    keyed with its secret. A repeated delivery id gets the first answer again.
    """
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    return await anyio.to_thread.run_sync(services.events.receive, source_id, headers, body)
