"""The plugin preset: a variant is a model and an ordered list of plugins.

Each plugin is a built-in (``presets/plugins/<name>/``) or the caller's own,
uploaded as a tarball and referenced by blob ref; its config is validated
against its ``schema.json`` now, so a bad config is a 422 naming the field
(``variants[1].plugins[0].config.url``) instead of a failed run later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from automation_server.errors import Invalid
from automation_server.presets.catalog import PluginSource, read_uploaded
from automation_server.presets.checks import validate_config
from automation_server.presets.prompt import at, check_model
from automation_server.presets.schemas import PluginRef
from automation_server.presets.sources import PresetSources
from automation_server.storage.blobs import BlobService


@dataclass(frozen=True)
class PluginVariantConfig:
    source_config: dict[str, Any]  # recorded as the variant's source (user tarballs pinned)
    files: dict[str, bytes]  # the tarball's files


@dataclass
class PluginLookup:
    """Resolves plugin references for one request (an uploaded plugin is read once)."""

    builtins: Mapping[str, PluginSource]
    blobs: BlobService
    org_id: str
    _uploaded: dict[str, PluginSource] = field(default_factory=dict)

    def resolve(self, ref: PluginRef, where: str) -> tuple[PluginSource, str | None]:
        """The plugin and, for an uploaded one, its pinned ``blob:`` ref."""
        if ref.tarball is None:
            if ref.name not in self.builtins:
                known = ", ".join(sorted(self.builtins))
                raise Invalid(
                    f"{where}.name: unknown plugin '{ref.name}' (built-ins: {known}; "
                    "for your own, add 'tarball': 'blob:sha256:...')",
                    field=f"{where}.name",
                    code="unknown_plugin",
                )
            return self.builtins[ref.name], None
        if ref.name in self.builtins:
            raise Invalid(
                f"{where}.name: '{ref.name}' is a built-in plugin; give yours another name",
                field=f"{where}.name",
                code="plugin_name_taken",
            )
        digest = self.blobs.resolve(self.org_id, ref.tarball, field=f"{where}.tarball")
        if digest not in self._uploaded:
            data = self.blobs.read(digest)
            self._uploaded[digest] = read_uploaded(ref.name, data, f"{where}.tarball")
        # One tarball may be used under several names; the name is the reference's.
        return replace(self._uploaded[digest], name=ref.name), f"blob:{digest}"


def plugin_variant(
    lookup: PluginLookup, sources: PresetSources, values: Mapping[str, Any], where: str
) -> PluginVariantConfig:
    """Validate one variant's plugins and gather its tarball's files; 422 when unusable."""
    model = check_model(values.get("model"), where)
    refs: Sequence[PluginRef] | None = values.get("plugins")
    if not refs:
        raise Invalid(
            f"{at(where, 'plugins')}: list at least one plugin",
            field=at(where, "plugins"),
            code="missing_plugins",
        )
    chosen: dict[str, tuple[PluginSource, str | None]] = {}
    steps: list[dict[str, Any]] = []
    recorded: list[dict[str, Any]] = []
    for j, ref in enumerate(refs):
        ref_at = f"{at(where, 'plugins')}[{j}]"
        plugin, pinned = lookup.resolve(ref, ref_at)
        if ref.name in chosen and chosen[ref.name][1] != pinned:
            raise Invalid(
                f"{ref_at}.name: '{ref.name}' names two different plugins in this variant",
                field=f"{ref_at}.name",
                code="duplicate_plugin_name",
            )
        chosen[ref.name] = (plugin, pinned)
        if plugin.schema is not None:
            validate_config(plugin.schema, ref.config, f"{ref_at}.config")
        steps.append({"name": ref.name, "key": _key(ref.name, steps), "config": ref.config})
        recorded.append(
            {"name": ref.name, "config": ref.config} | ({"tarball": pinned} if pinned else {})
        )
    files = sources.base("plugin", {"model": model, "plugins": steps})
    for name, (plugin, _) in chosen.items():
        files.update({f"plugins/{name}/{file}": data for file, data in plugin.files.items()})
    return PluginVariantConfig({"model": model, "plugins": recorded}, files)


def _key(name: str, earlier: Sequence[Mapping[str, Any]]) -> str:
    """The plugin's name, or ``name-2``, ``name-3``... when it ran before in this variant."""
    count = sum(1 for step in earlier if step["name"] == name)
    return name if count == 0 else f"{name}-{count + 1}"
