"""Dispatch, run history, logs and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from litestar import Controller, MediaType, Response, get, post
from litestar.params import (
    FromPath,
    FromQuery,
    HeaderParameter,
    JSONBody,
    QueryParameter,
)
from litestar.response import Stream

from automation_server.api.deps import CallerDep, ServicesDep
from automation_server.pagination import DEFAULT_LIMIT
from automation_server.runs.schemas import DispatchRequest, RunOut, RunPage
from automation_server.runs.service import RunFilters
from automation_server.security.accounts import Caller
from automation_server.services import Services

Limit = Annotated[int, QueryParameter(ge=1, le=500, description="page size (1..500)")]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        max_length=200,
        description="repeat a dispatch safely: the same key within 24 h returns the run it created",
    ),
]
FOLLOW_POLL_S = 0.5


@post(
    "/automations/{automation_id:str}/dispatch", status_code=202, sync_to_thread=True, tags=["runs"]
)
def dispatch(
    automation_id: FromPath[str],
    services: ServicesDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
    data: JSONBody[DispatchRequest | None] = None,
) -> RunOut:
    """Queue a run now; the server chooses the variant and records it on the run."""
    return services.dispatcher.dispatch(
        caller, automation_id, data or DispatchRequest(), idempotency_key
    )


class RunController(Controller):
    path = "/runs"
    tags = ["runs"]

    @get("/", sync_to_thread=True)
    def list_runs(
        self,
        services: ServicesDep,
        caller: CallerDep,
        automation_id: FromQuery[str | None] = None,
        experiment_id: FromQuery[str | None] = None,
        variant: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        trigger: FromQuery[str | None] = None,
        since: FromQuery[str | None] = None,
        until: FromQuery[str | None] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> RunPage:
        """Runs, newest first; `since` inclusive and `until` exclusive on created_at."""
        filters = RunFilters(automation_id, experiment_id, variant, status, trigger, since, until)
        return services.runs.list_page(caller, filters, limit=limit, cursor=cursor)

    @get("/{run_id:str}", sync_to_thread=True)
    def read(self, run_id: FromPath[str], services: ServicesDep, caller: CallerDep) -> RunOut:
        return services.runs.get(caller, run_id)

    @post("/{run_id:str}/cancel", status_code=202, sync_to_thread=True)
    def cancel(self, run_id: FromPath[str], services: ServicesDep, caller: CallerDep) -> RunOut:
        """Cancel a queued or running run (409 once it has finished)."""
        return services.runs.cancel(caller, run_id)

    @get("/{run_id:str}/logs", media_type=MediaType.TEXT)
    async def logs(
        self,
        run_id: FromPath[str],
        services: ServicesDep,
        caller: CallerDep,
        follow: FromQuery[bool] = False,
    ) -> Response[bytes] | Stream:
        """stdout and stderr of the run (head and tail past the cap); `follow=true` streams
        until the run ends."""
        data, finished = await anyio.to_thread.run_sync(services.runs.log, caller, run_id)
        if not follow or finished:
            return Response(data, media_type=MediaType.TEXT)
        return Stream(_follow(services, caller, run_id, data), media_type=MediaType.TEXT)


async def _follow(
    services: Services, caller: Caller, run_id: str, first: bytes
) -> AsyncIterator[bytes]:
    """Send what is new in the stored log until the run has finished."""
    sent = first
    if first:
        yield first
    while True:
        await asyncio.sleep(FOLLOW_POLL_S)
        data, finished = await anyio.to_thread.run_sync(services.runs.log, caller, run_id)
        common = _common_prefix(sent, data)
        if common < len(sent):  # the capped log dropped its middle: mark the gap
            yield b"\n[... log truncated while following ...]\n"
        if len(data) > common:
            yield data[common:]
        sent = data
        if finished:
            return


def _common_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    return next(i for i in range(n) if a[i] != b[i])
