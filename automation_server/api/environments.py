"""``GET /v1/environments/{digest}``: the lock of a variant's Python environment."""

from __future__ import annotations

from litestar import MediaType, get
from litestar.params import FromPath

from automation_server.api.deps import CallerDep, ServicesDep
from automation_server.environments.service import check_digest


@get(
    "/environments/{digest:str}",
    sync_to_thread=True,
    media_type=MediaType.TEXT,
    tags=["environments"],
)
def environment_lock(digest: FromPath[str], services: ServicesDep, caller: CallerDep) -> str:
    """The canonical lock (one `name==version --hash=...` line per package, then the
    Python version); its sha256 is the digest. 404 for an environment this
    organization never saved."""
    return services.environments.lock_text(caller.org_id, check_digest(digest))
