"""The files preset tarballs are made of (templates in ``presets/``), and their packages.

Layout of a rendered tarball::

    main.py          the preset's entry script (presets/prompt/ or presets/plugin/)
    preset.json      the variant's configuration, canonical JSON
    _preset/         helpers shared by the entry scripts (presets/common/)
    plugins/<name>/  plugin preset only: the plugins the variant names

The template engine is not in the tarball: preset variants declare
:data:`PRESET_REQUIREMENTS` (Jinja2 and MarkupSafe at the server's own
pinned versions), which are locked into an environment like any variant's
requirements, so equal configurations still give equal tarballs and equal
environment digests.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PRESETS_DIR = Path(__file__).resolve().parents[2] / "presets"
PRESET_PACKAGES = ("jinja2", "markupsafe")


def preset_requirements() -> list[str]:
    """The packages preset scripts import, pinned to the versions the server runs."""
    return [f"{name}=={metadata.version(name)}" for name in PRESET_PACKAGES]


_SKIPPED_DIRS = {"__pycache__", ".git"}


def read_tree(directory: Path, prefix: str) -> dict[str, bytes]:
    """Regular files under ``directory`` as ``prefix/relative/path`` (caches skipped)."""
    result: dict[str, bytes] = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if _SKIPPED_DIRS.intersection(relative.parts) or path.suffix == ".pyc":
            continue
        if path.is_symlink():
            raise RuntimeError(f"{path}: preset templates may not contain symbolic links")
        if path.is_file():
            result[f"{prefix}/{relative.as_posix()}".lstrip("/")] = path.read_bytes()
    return result


def canonical_json(value: Any) -> bytes:
    """One byte sequence per JSON value: sorted keys, no spaces, UTF-8."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (text + "\n").encode("utf-8")


class PresetSources:
    """Template files read once per process (they only change with a deploy)."""

    def __init__(self, presets_dir: Path = PRESETS_DIR) -> None:
        self.presets_dir = presets_dir
        self._common = read_tree(presets_dir / "common", "_preset")
        self._entries = {kind: read_tree(presets_dir / kind, "") for kind in ("prompt", "plugin")}

    def base(self, kind: str, config: Mapping[str, Any]) -> dict[str, bytes]:
        """The files every tarball of preset ``kind`` has, with ``config`` as preset.json."""
        return {
            **self._common,
            **self._entries[kind],
            "preset.json": canonical_json(dict(config)),
        }
