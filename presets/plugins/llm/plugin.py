"""llm: one chat completion with a templated prompt.

Outputs ``reply`` (and ``model`` used); metrics ``latency_ms``,
``prompt_tokens``, ``completion_tokens``, ``total_tokens`` (those the endpoint
reports). A failed call (an HTTP error status, an unreachable endpoint) fails
the plugin with the upstream status in the message.
"""

from __future__ import annotations

from typing import Any


def run(context: Any, config: dict[str, Any]) -> dict[str, Any]:
    prompt = context.render(config["prompt"], "prompt")
    system = config.get("system_prompt")
    completion = context.chat(
        prompt,
        model=config.get("model"),
        system_prompt=context.render(system, "system_prompt") if system else None,
        temperature=config.get("temperature"),
        max_tokens=config.get("max_tokens"),
    )
    metrics: dict[str, float] = {"latency_ms": completion.latency_ms, **completion.usage}
    return {
        "outputs": {"reply": completion.reply, "model": config.get("model") or context.model},
        "metrics": metrics,
    }
