"""``GET /metrics``: Prometheus text format (bind or protect it as the operator chooses)."""

from __future__ import annotations

from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from automation_server.api.deps import ServicesDep


@get("/metrics", sync_to_thread=True, tags=["operations"], include_in_schema=False)
def prometheus_metrics(services: ServicesDep) -> Response[bytes]:
    """Runs by status, queue depth, dispatch latency, run duration, sandbox failures."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
