"""``POST /v1/uploads``: a tarball in, a content-addressed ref out."""

from __future__ import annotations

from typing import Any

import anyio
from litestar import Request, post
from msgspec import Struct

from automation_server.api.deps import CallerDep, ServicesDep
from automation_server.errors import BadRequest


class UploadOut(Struct):
    ref: str
    digest: str
    size: int
    files: int


@post("/", status_code=201, tags=["uploads"])
async def upload(
    request: Request[Any, Any, Any], services: ServicesDep, caller: CallerDep
) -> UploadOut:
    """Upload a `.tar.gz` (raw bytes as the body, any content type).

    The same bytes give the same ref. An unsafe or invalid archive answers 422
    with the reason; a body over the upload limit answers 413.
    """
    body = await request.body()
    if not body:
        raise BadRequest(
            "body: empty upload; send the .tar.gz bytes as the request body", code="empty_upload"
        )
    stored = await anyio.to_thread.run_sync(services.blobs.upload, caller.org_id, body)
    return UploadOut(ref=stored.ref, digest=stored.digest, size=stored.size, files=stored.files)
