"""Prompt preset: render the prompt with the payload, call the model, report the reply.

``preset.json`` next to this file holds the variant's configuration (``model``,
``prompt``, optional ``system_prompt``, ``temperature``, ``max_tokens``). The
reply becomes the output ``reply``; latency and token usage become metrics.
A failed call exits 1 with the upstream HTTP status in the error.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # the tarball directory is the run's, keep it clean

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from _preset import llm, templating  # noqa: E402
from _preset.outcome import fail  # noqa: E402
from automation_sdk import report  # noqa: E402

CONFIG = Path(__file__).with_name("preset.json")


def main() -> int:
    config = json.loads(CONFIG.read_text(encoding="utf-8"))
    values = templating.variables()
    try:
        prompt = templating.render(config["prompt"], values, "prompt")
        system = config.get("system_prompt")
        system = templating.render(system, values, "system_prompt") if system else None
    except templating.RenderError as exc:
        return fail(str(exc))
    try:
        result = llm.chat(
            config["model"],
            prompt,
            system_prompt=system,
            temperature=config.get("temperature"),
            max_tokens=config.get("max_tokens"),
        )
    except llm.LlmError as exc:
        return fail(str(exc), upstream_status=exc.status)
    report.output("reply", result.reply)
    if result.finish_reason:
        report.output("finish_reason", result.finish_reason)
    report.metric("latency_ms", result.latency_ms)
    for name, value in result.usage.items():
        report.metric(name, value)
    print(f"model {config['model']} replied in {result.latency_ms:.0f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
