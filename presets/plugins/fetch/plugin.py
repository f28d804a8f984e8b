"""fetch: one HTTP request; records status, latency and size, fails on an unexpected status.

Metrics ``status``, ``latency_ms``, ``bytes``; outputs ``status``, ``url``
(after redirects), ``bytes`` and, with ``save_body``, ``body``. Metrics are
recorded before a status check fails, so a failed run still shows them.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

BODY_CHARS = 65_536


def run(context: Any, config: dict[str, Any]) -> dict[str, Any]:
    body = config.get("body")
    request = urllib.request.Request(
        config["url"],
        data=body.encode("utf-8") if body is not None else None,
        headers={"User-Agent": "automation-server-fetch/1", **config.get("headers", {})},
        method=config.get("method", "GET"),
    )
    limit = config.get("max_body_bytes", 1_048_576)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=config.get("timeout_s", 10)) as response:
            status, url, data = response.status, response.url, response.read(limit)
    except urllib.error.HTTPError as exc:  # an answer all the same: 4xx and 5xx
        status, url, data = exc.code, exc.url, exc.read(limit)
    except (urllib.error.URLError, OSError) as exc:
        raise context.Failed(
            f"cannot reach {config['url']}: {getattr(exc, 'reason', exc)}"
        ) from None
    latency_ms = round((time.monotonic() - started) * 1000, 3)
    context.metric("status", status)
    context.metric("latency_ms", latency_ms)
    context.metric("bytes", len(data))
    expected = config.get("expect_status")
    if (status not in expected) if expected else status >= 400:
        raise context.Failed(f"{config['url']} answered HTTP {status}")
    outputs: dict[str, Any] = {"status": status, "url": url, "bytes": len(data)}
    if config.get("save_body"):
        outputs["body"] = data.decode("utf-8", "replace")[:BODY_CHARS]
    return {"outputs": outputs}
