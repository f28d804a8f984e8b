"""Helpers for the preset end-to-end tests: a stub chat-completions server and a stack.

The stub answers like an OpenAI-compatible endpoint and records every request.
Its behaviour depends only on the request, so tests sharing one stub never
interfere: each test uses its own model names and filters by them.

- ``POST /v1/chat/completions``: 200 with ``[<model>] <last user message>`` and
  ``usage`` (prompt tokens = words sent); model ``fail-500...`` answers 500.
- ``GET /ping``: 200 ``pong``; ``GET /status/<n>``: answers status ``n``.

Runs reach it from the sandbox through ``network: "host"``, which the stack
allows (``AUTOMATION_ALLOW_HOST_NETWORK=true``).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Stack, make_stack, require_bwrap
from tests.support import SqliteDatabases, reachable_by_sandbox

COMPLETION_TOKENS = 7


@dataclass
class StubLLM:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(entry)

    def chats(self, model: str) -> list[dict[str, Any]]:
        """The chat requests (JSON bodies with their headers) that named ``model``."""
        with self.lock:
            return [r for r in self.requests if r.get("body", {}).get("model") == model]

    def paths(self) -> list[str]:
        with self.lock:
            return [r["path"] for r in self.requests]


def reply_for(model: str, prompt: str) -> str:
    return f"[{model}] {prompt}"


def _handler(stub: StubLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            stub.record({"path": self.path, "method": "GET"})
            if self.path.startswith("/status/"):
                self._answer(int(self.path.rsplit("/", 1)[1]), {"status": "as asked"})
            else:
                self._answer(200, "pong")

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = json.loads(raw)
            headers = {k.lower(): v for k, v in self.headers.items()}
            stub.record({"path": self.path, "method": "POST", "headers": headers, "body": body})
            model = str(body.get("model"))
            if model.startswith("fail-500"):
                self._answer(500, {"error": {"message": "upstream exploded"}})
                return
            prompt = body["messages"][-1]["content"]
            words = sum(len(m["content"].split()) for m in body["messages"])
            self._answer(
                200,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply_for(model, prompt)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": words,
                        "completion_tokens": COMPLETION_TOKENS,
                        "total_tokens": words + COMPLETION_TOKENS,
                    },
                },
            )

    return Handler


@contextmanager
def running_stub(host: str = "127.0.0.1") -> Iterator[StubLLM]:
    stub = StubLLM("")
    server = ThreadingHTTPServer((host, 0), _handler(stub))
    stub.url = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def preset_stack(
    tmp_path_factory: pytest.TempPathFactory, sqlite_databases: SqliteDatabases
) -> Iterator[Stack]:
    """API + worker with bubblewrap and host networking allowed, on SQLite.

    One stack per test module: presets touch the database only through the
    automation and blob services, which the other suites run on both databases.
    """
    require_bwrap()
    data_dir: Path = tmp_path_factory.mktemp("var")
    reachable_by_sandbox(data_dir)  # the presets' environment is mounted from there
    yield from make_stack(data_dir, sqlite_databases.fresh(), AUTOMATION_ALLOW_HOST_NETWORK="true")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def llm_env(stub: StubLLM) -> dict[str, Any]:
    """The automation fields that point runs at the stub (key as a secret, as users would)."""
    return {
        "network": "host",
        "env": {"LLM_BASE_URL": stub.base_url},
        "secrets": {"LLM_API_KEY": "sk-test-0123456789"},
    }


def create_preset(stack: Stack, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    r = stack.http.post(f"/v1/preset/{kind}", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def run_variant(
    stack: Stack, automation: dict[str, Any], variant: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """Dispatch naming the variant and wait for the run to finish."""
    run = stack.dispatch(automation["id"], variant=variant, payload=payload)
    return stack.wait(run["id"])
