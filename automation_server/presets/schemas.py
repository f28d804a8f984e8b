"""Request and response shapes of the preset API (DESIGN section 6, "Preset bodies").

A preset body has every field of the automation create body except
``variants``, ``tarball`` and ``entrypoint`` (the server renders the tarball
and knows its entry point), plus ``variants`` holding each variant's preset
fields. One variant may be given without ``variants``: its preset fields sit
at the top level and it is named ``default``. Unknown fields answer 400.

Rules that need more than types (a model given, a non-empty prompt, template
syntax, plugin names and configs) are checked by the preset modules and
answer 422 naming the variant and field, e.g. ``variants[1].prompt``.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta, Struct, field

from automation_server.automations.schemas import (
    AutomationSettings,
    EnvMap,
    Network,
    Strict,
    VariantName,
    Weight,
)

PLUGIN_NAME = r"^[a-z][a-z0-9_]{0,39}$"

Model = Annotated[str, Meta(max_length=200)]
Template = Annotated[str, Meta(max_length=100_000)]
Temperature = Annotated[float, Meta(ge=0, le=2)]
MaxTokens = Annotated[int, Meta(ge=1, le=100_000)]
Description = Annotated[str, Meta(max_length=10_000)]
PluginName = Annotated[str, Meta(pattern=PLUGIN_NAME)]


class PresetCommon(AutomationSettings):
    """The automation fields a preset body shares with ``POST /v1/automations``.

    Presets default to ``egress`` network: a model or a URL is what they call.
    """

    network: Network = "egress"


# Fields every preset variant has; ``env`` and ``description`` as in a plain variant.
class PresetVariantBase(Strict):
    name: VariantName
    weight: Weight = 1
    env: EnvMap = field(default_factory=dict)
    description: Description = ""


# ---- prompt preset -------------------------------------------------------------


class PromptVariant(PresetVariantBase):
    # Optional in the schema so a missing one is a 422 naming the variant's field.
    model: Model | None = None
    prompt: Template | None = None
    system_prompt: Template | None = None
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None


class PromptPresetCreate(PresetCommon):
    variants: Annotated[list[PromptVariant], Meta(min_length=1, max_length=20)] | None = None
    model: Model | None = None
    prompt: Template | None = None
    system_prompt: Template | None = None
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None


PROMPT_FIELDS = ("model", "prompt", "system_prompt", "temperature", "max_tokens")


# ---- plugin preset -------------------------------------------------------------


class PluginRef(Strict):
    """A built-in plugin by ``name``, or the caller's own from an uploaded ``tarball``."""

    name: PluginName
    config: dict[str, Any] = field(default_factory=dict)
    tarball: Annotated[str, Meta(min_length=1, max_length=2048)] | None = None


Plugins = Annotated[list[PluginRef], Meta(min_length=1, max_length=20)]


class PluginVariant(PresetVariantBase):
    model: Model | None = None
    plugins: Plugins | None = None


class PluginPresetCreate(PresetCommon):
    variants: Annotated[list[PluginVariant], Meta(min_length=1, max_length=20)] | None = None
    model: Model | None = None
    plugins: Plugins | None = None


PLUGIN_FIELDS = ("model", "plugins")


# ---- responses -------------------------------------------------------------------


class PluginInfo(Struct):
    name: str
    description: str
    config_schema: dict[str, Any]


class PluginList(Struct):
    items: list[PluginInfo]
