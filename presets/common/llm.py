"""Chat completions against an OpenAI-compatible endpoint (standard library only).

Runs inside the sandbox, where only the standard library and ``automation_sdk``
exist, so this uses ``urllib`` rather than an HTTP client package. Where to
send the call comes from the run's environment (the automation's ``env`` or
``secrets``):

- ``LLM_BASE_URL`` (required), e.g. ``https://api.openai.com/v1``; the call goes
  to ``{LLM_BASE_URL}/chat/completions``;
- ``LLM_API_KEY`` (optional), sent as ``Authorization: Bearer ...``;
- ``LLM_TIMEOUT_S`` (optional, default 120), the timeout of one call.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TIMEOUT_S = 120.0
MAX_REPLY_BYTES = 16 * 1024 * 1024
ERROR_BODY_CHARS = 500
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


class LlmError(Exception):
    """The model call failed; ``status`` is the upstream HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Completion:
    reply: str
    latency_ms: float
    usage: dict[str, int] = field(default_factory=dict)
    model: str | None = None
    finish_reason: str | None = None


def endpoint() -> tuple[str, str | None, float]:
    """(chat-completions URL, API key or None, timeout) from the environment."""
    base = os.environ.get("LLM_BASE_URL", "").strip()
    if not base:
        raise LlmError(
            "LLM_BASE_URL is not set: add it to the automation's env or secrets "
            "(e.g. https://api.openai.com/v1)"
        )
    key = os.environ.get("LLM_API_KEY") or None
    raw_timeout = os.environ.get("LLM_TIMEOUT_S", "")
    try:
        timeout = float(raw_timeout) if raw_timeout else DEFAULT_TIMEOUT_S
    except ValueError:
        raise LlmError(f"LLM_TIMEOUT_S: {raw_timeout!r} is not a number") from None
    return base.rstrip("/") + "/chat/completions", key, timeout


def messages(prompt: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    result = [{"role": "system", "content": system_prompt}] if system_prompt else []
    result.append({"role": "user", "content": prompt})
    return result


def chat(
    model: str,
    prompt: str,
    *,
    system_prompt: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> Completion:
    """One chat completion; raises :class:`LlmError` with the upstream status on failure."""
    url, key, timeout = endpoint()
    body: dict[str, Any] = {"model": model, "messages": messages(prompt, system_prompt)}
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": "automation-server-preset/1",
    }
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
    )
    started = time.monotonic()
    raw = _send(request, url, timeout)
    latency_ms = round((time.monotonic() - started) * 1000, 3)
    return _completion(raw, url, latency_ms)


def _send(request: urllib.request.Request, url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: bytes = response.read(MAX_REPLY_BYTES)
            return data
    except urllib.error.HTTPError as exc:
        text = _error_text(exc)
        raise LlmError(f"model call failed: HTTP {exc.code} from {url}: {text}", exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LlmError(f"model call failed: cannot reach {url}: {reason}") from None


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(ERROR_BODY_CHARS * 4).decode("utf-8", "replace")
    except OSError:
        text = ""
    text = " ".join(text.split())
    return text[:ERROR_BODY_CHARS] or exc.reason or "(empty body)"


def _completion(raw: bytes, url: str, latency_ms: float) -> Completion:
    try:
        data = json.loads(raw)
        choice = data["choices"][0]
        reply = choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        snippet = raw[:ERROR_BODY_CHARS].decode("utf-8", "replace")
        raise LlmError(
            f"model call failed: {url} did not answer like chat completions "
            f"(no choices[0].message.content): {snippet}"
        ) from None
    usage_in = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    usage = {
        name: value
        for name in USAGE_FIELDS
        if isinstance(value := usage_in.get(name), int) and not isinstance(value, bool)
    }
    return Completion(
        reply=reply if isinstance(reply, str) else json.dumps(reply),
        latency_ms=latency_ms,
        usage=usage,
        model=data.get("model") if isinstance(data.get("model"), str) else None,
        finish_reason=choice.get("finish_reason") if isinstance(choice, dict) else None,
    )
