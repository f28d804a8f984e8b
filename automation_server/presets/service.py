"""Preset requests: validate, render one tarball per variant, create the automation.

The automation is created through :class:`AutomationService` like any other,
with each variant's ``source`` recording the preset and its configuration, so
dispatch, variant choice, experiments and promotion need nothing preset-aware.
Tarballs are content-addressed: equal configurations give equal bytes and are
stored once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from automation_server.automations import validation as rules
from automation_server.automations.schemas import AutomationCreate, AutomationOut, VariantSpec
from automation_server.automations.service import AutomationService
from automation_server.config import Settings
from automation_server.errors import Invalid
from automation_server.presets.catalog import PluginSource, load_builtins
from automation_server.presets.plugin import PluginLookup, plugin_variant
from automation_server.presets.prompt import prompt_config, prompt_files
from automation_server.presets.render import build_tarball
from automation_server.presets.schemas import (
    PLUGIN_FIELDS,
    PROMPT_FIELDS,
    PluginInfo,
    PluginList,
    PluginPresetCreate,
    PresetCommon,
    PresetVariantBase,
    PromptPresetCreate,
)
from automation_server.presets.sources import PRESETS_DIR, PresetSources, preset_requirements
from automation_server.security.accounts import Caller
from automation_server.storage.blobs import BlobService

ENTRYPOINT = ["python3", "main.py"]
# Preset fields live inside each variant, or at the top level for a single variant.
_NOT_COMMON = {"variants", *PROMPT_FIELDS, *PLUGIN_FIELDS}


@dataclass(frozen=True)
class VariantInput:
    where: str  # "variants[i]", or "" for the top-level shorthand
    name: str
    weight: int
    env: dict[str, str]
    description: str
    values: dict[str, Any]  # the preset's own fields


@dataclass(frozen=True)
class Rendered:
    variant: VariantInput
    config: dict[str, Any]
    files: dict[str, bytes]


class PresetService:
    def __init__(
        self,
        automations: AutomationService,
        blobs: BlobService,
        settings: Settings,
        presets_dir: Path = PRESETS_DIR,
    ) -> None:
        self._automations = automations
        self._blobs = blobs
        self._settings = settings
        self._sources = PresetSources(presets_dir)
        self._builtins = load_builtins(presets_dir / "plugins")

    @property
    def builtins(self) -> Mapping[str, PluginSource]:
        return self._builtins

    def plugins(self) -> PluginList:
        """The built-in plugins with their config schemas."""
        return PluginList(
            items=[
                PluginInfo(name=p.name, description=p.description, config_schema=p.schema or {})
                for p in self._builtins.values()
            ]
        )

    def create_prompt(self, caller: Caller, body: PromptPresetCreate) -> AutomationOut:
        variants = self._inputs(body, body.variants, PROMPT_FIELDS)
        rendered = []
        for v in variants:
            config = prompt_config(v.values, v.where)
            rendered.append(Rendered(v, config, prompt_files(self._sources, config)))
        return self._create(caller, body, "prompt", rendered)

    def create_plugin(self, caller: Caller, body: PluginPresetCreate) -> AutomationOut:
        variants = self._inputs(body, body.variants, PLUGIN_FIELDS)
        lookup = PluginLookup(self._builtins, self._blobs, caller.org_id)
        rendered = []
        for v in variants:
            made = plugin_variant(lookup, self._sources, v.values, v.where)
            rendered.append(Rendered(v, made.source_config, made.files))
        return self._create(caller, body, "plugin", rendered)

    # ---- shared ------------------------------------------------------------------

    def _inputs(
        self,
        body: PresetCommon,
        variants: Sequence[PresetVariantBase] | None,
        fields: Sequence[str],
    ) -> list[VariantInput]:
        """The variants asked for, after the cheap checks that need no rendering."""
        top = {name: getattr(body, name) for name in fields}
        if variants is None:
            inputs = [VariantInput("", "default", 1, {}, "", top)]
        else:
            given = [name for name, value in top.items() if value is not None]
            if given:
                raise Invalid(
                    f"{given[0]}: with 'variants', give the preset fields inside each variant",
                    field=given[0],
                    code="invalid_variants",
                )
            inputs = [
                VariantInput(
                    f"variants[{i}]",
                    v.name,
                    v.weight,
                    dict(v.env),
                    v.description,
                    {name: getattr(v, name) for name in fields},
                )
                for i, v in enumerate(variants)
            ]
        # Checked before rendering so a bad request uploads nothing; create() checks again.
        rules.check_experiment_id(body.experiment_id)
        rules.check_variant_set(
            [v.name for v in inputs], [v.weight for v in inputs], body.experiment_id, "variants"
        )
        rules.check_network(body.network, self._settings.allow_host_network)
        rules.normalise_trigger(body.trigger)
        return inputs

    def _create(
        self, caller: Caller, body: PresetCommon, kind: str, rendered: Sequence[Rendered]
    ) -> AutomationOut:
        upload = _memo(lambda data: self._blobs.upload(caller.org_id, data).ref)
        specs = [
            VariantSpec(
                name=r.variant.name,
                tarball=upload(build_tarball(r.files)),
                weight=r.variant.weight,
                entrypoint=list(ENTRYPOINT),
                env=r.variant.env,
                description=r.variant.description,
                requirements=preset_requirements(),
            )
            for r in rendered
        ]
        sources = [{"kind": "preset", "preset": kind, "config": r.config} for r in rendered]
        common = {
            name: value
            for name, value in msgspec.structs.asdict(body).items()
            if name not in _NOT_COMMON
        }
        create = AutomationCreate(**common, variants=specs)
        return self._automations.create(caller, create, sources=sources)


def _memo(upload: Callable[[bytes], str]) -> Callable[[bytes], str]:
    """Upload each distinct tarball once per request (equal variants share a blob)."""
    refs: dict[bytes, str] = {}

    def once(data: bytes) -> str:
        if data not in refs:
            refs[data] = upload(data)
        return refs[data]

    return once
