"""``POST /v1/hooks/{automation_id}``: signed webhook triggers (no bearer key)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from litestar import Request, post
from litestar.params import FromPath, HeaderParameter

from automation_server.api.deps import ServicesDep
from automation_server.runs.schemas import RunOut

Signature = Annotated[str | None, HeaderParameter(name="X-Signature-256", max_length=200)]
DeliveryId = Annotated[str | None, HeaderParameter(name="X-Delivery-Id", max_length=200)]


@post("/{automation_id:str}", status_code=202, tags=["webhooks"])
async def receive_webhook(
    request: Request[Any, Any, Any],
    automation_id: FromPath[str],
    services: ServicesDep,
    signature: Signature = None,
    delivery_id: DeliveryId = None,
) -> RunOut:
    """Queue a run with the JSON body as its payload.

    Sign with `X-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` keyed with the
    automation's webhook secret. A repeated `X-Delivery-Id` returns the first run.
    """
    body = await request.body()
    return await anyio.to_thread.run_sync(
        services.webhooks.receive, automation_id, body, signature, delivery_id
    )
