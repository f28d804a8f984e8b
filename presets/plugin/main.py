"""Plugin preset: run the variant's plugins in order and report what each returned.

``preset.json`` next to this file lists the plugins as
``{"model": ..., "plugins": [{"name", "key", "config"}, ...]}``; each plugin's
code is ``plugins/<name>/plugin.py`` and exposes ``run(context, config)``
returning ``{"outputs": {...}, "metrics": {...}}`` (both optional).

Outputs and metrics are recorded as ``<key>.<name>``; ``key`` is the plugin's
name, or ``<name>-2``, ``<name>-3``, ... when the same plugin appears again.
The first plugin that raises stops the run: its key is in the error, which is
printed on stderr and recorded as the output ``error`` (``failed_plugin`` names
it), and the run exits 1. See ``presets/README.md`` for the interface.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # the tarball directory is the run's, keep it clean

import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

from _preset import llm, templating  # noqa: E402
from _preset.outcome import fail  # noqa: E402
from automation_sdk import report  # noqa: E402

ROOT = Path(__file__).resolve().parent
CONFIG = ROOT / "preset.json"


class PluginFailed(Exception):
    """Raise from a plugin to fail the run with a message (any exception does too)."""


class PluginContext:
    """What a plugin gets besides its config (documented in presets/README.md)."""

    Failed = PluginFailed  # ``raise context.Failed("why")``: fails the run without a traceback

    def __init__(
        self,
        key: str,
        name: str,
        model: str,
        values: dict[str, Any],
        results: dict[str, dict[str, Any]],
    ) -> None:
        self.key = key
        self.name = name
        self.model = model
        self.payload: dict[str, Any] = values["payload"]
        self.run: dict[str, Any] = values["run"]
        self.results = results
        self.directory = ROOT / "plugins" / name
        self._values = values

    def render(self, template: str, what: str = "template") -> str:
        """Render a sandboxed Jinja2 template with payload, run, model and earlier results."""
        values = {**self._values, "results": self.results, "model": self.model}
        try:
            return templating.render(template, values, what)
        except templating.RenderError as exc:
            raise PluginFailed(str(exc)) from None

    def chat(self, prompt: str, **options: Any) -> llm.Completion:
        """One chat completion (``model`` defaults to the variant's; see _preset/llm.py)."""
        model = options.pop("model", None) or self.model
        try:
            return llm.chat(model, prompt, **options)
        except llm.LlmError as exc:
            raise PluginFailed(str(exc)) from None

    def output(self, key: str, value: Any) -> None:
        """Record an output now, as ``<plugin key>.<key>`` (kept even if the plugin fails later)."""
        report.output(f"{self.key}.{key}", value)

    def metric(self, name: str, value: float) -> None:
        """Record a metric now, as ``<plugin key>.<name>``."""
        report.metric(f"{self.key}.{name}", value)

    def log(self, message: str) -> None:
        print(f"[{self.key}] {message}", file=sys.stderr, flush=True)


def load(name: str, index: int) -> ModuleType:
    path = ROOT / "plugins" / name / "plugin.py"
    spec = importlib.util.spec_from_file_location(f"preset_plugin_{index}_{name}", path)
    if spec is None or spec.loader is None:
        raise PluginFailed(f"cannot load {path.relative_to(ROOT)}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise PluginFailed("plugin.py has no run(context, config) function")
    return module


def checked(result: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """(outputs, metrics) of a plugin's return value, refused when malformed."""
    if result is None:
        return {}, {}
    if not isinstance(result, Mapping):
        raise PluginFailed(f"run() returned {type(result).__name__}, not a dict")
    unknown = set(result) - {"outputs", "metrics"}
    if unknown:
        raise PluginFailed(f"run() returned unknown keys {sorted(unknown)}")
    outputs = dict(result.get("outputs") or {})
    metrics = dict(result.get("metrics") or {})
    for name, value in metrics.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise PluginFailed(f"metric {name!r} is {value!r}, not a finite number")
    try:
        json.dumps(outputs, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PluginFailed(f"outputs are not JSON: {exc}") from None
    return outputs, metrics


def run_plugin(
    index: int, entry: dict[str, Any], model: str, values: dict[str, Any], results: dict[str, Any]
) -> None:
    key, name = entry["key"], entry["name"]
    context = PluginContext(key, name, model, values, results)
    started = time.monotonic()
    outputs, metrics = checked(load(name, index).run(context, entry["config"]))
    for out_key, value in outputs.items():
        context.output(str(out_key), value)
    for metric_name, number in metrics.items():
        context.metric(str(metric_name), number)
    results[key] = {"outputs": outputs, "metrics": metrics}
    print(f"plugin {key}: ok in {(time.monotonic() - started) * 1000:.0f} ms", flush=True)


def main() -> int:
    config = json.loads(CONFIG.read_text(encoding="utf-8"))
    values = templating.variables()
    results: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(config["plugins"]):
        try:
            run_plugin(index, entry, config["model"], values, results)
        except (Exception, SystemExit) as exc:
            # Everything a plugin raises (even sys.exit) fails the run, naming the plugin.
            if not isinstance(exc, PluginFailed):
                traceback.print_exc()
            if isinstance(exc, SystemExit):
                detail = f"called sys.exit({exc.code!r})"
            else:
                detail = str(exc) or type(exc).__name__
            return fail(f"plugin '{entry['key']}' failed: {detail}", failed_plugin=entry["key"])
    report.output("plugins", [entry["key"] for entry in config["plugins"]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
