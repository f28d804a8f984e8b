"""The prompt preset: one chat completion per run, with the prompt as a template."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automation_server.errors import Invalid
from automation_server.presets.checks import check_template
from automation_server.presets.schemas import PROMPT_FIELDS
from automation_server.presets.sources import PresetSources


def at(where: str, name: str) -> str:
    """``variants[1].prompt`` for a variant, ``prompt`` for the top-level shorthand."""
    return f"{where}.{name}" if where else name


def check_model(model: str | None, where: str) -> str:
    if model is None or not model.strip():
        raise Invalid(
            f"{at(where, 'model')}: a model is required (e.g. 'gpt-4o-mini')",
            field=at(where, "model"),
            code="missing_model",
        )
    return model


def prompt_config(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The variant's preset configuration as stored and rendered; 422 when unusable."""
    check_model(values.get("model"), where)
    prompt = values.get("prompt")
    if prompt is None or not prompt.strip():
        raise Invalid(
            f"{at(where, 'prompt')}: "
            + ("a prompt is required" if prompt is None else "the prompt may not be empty"),
            field=at(where, "prompt"),
            code="missing_prompt" if prompt is None else "empty_prompt",
        )
    for name in ("prompt", "system_prompt"):
        if values.get(name):
            check_template(values[name], at(where, name))
    # Unset and empty optional fields are left out, so they give the same tarball.
    return {name: values[name] for name in PROMPT_FIELDS if values.get(name) not in (None, "")}


def prompt_files(sources: PresetSources, config: Mapping[str, Any]) -> dict[str, bytes]:
    return sources.base("prompt", config)
