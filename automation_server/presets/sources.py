"""The files preset tarballs are made of: templates in ``presets/`` and vendored Jinja2.

Layout of a rendered tarball::

    main.py          the preset's entry script (presets/prompt/ or presets/plugin/)
    preset.json      the variant's configuration, canonical JSON
    _preset/         helpers shared by the entry scripts (presets/common/)
    _vendor/         pure-Python Jinja2 and MarkupSafe with their licences
    plugins/<name>/  plugin preset only: the plugins the variant names

The sandbox's Python has only the standard library, so the template engine
travels in the tarball. Its files are read from the installed, pinned
distributions and checked against their wheel RECORD hashes, so every server
with the same pins renders the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PRESETS_DIR = Path(__file__).resolve().parents[2] / "presets"
VENDORED = ("jinja2", "markupsafe")
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


def vendored_files() -> dict[str, bytes]:
    """``_vendor/<package>/*.py`` of Jinja2 and MarkupSafe, licences, and a version list."""
    files: dict[str, bytes] = {}
    versions = []
    for name in VENDORED:
        dist = metadata.distribution(name)
        versions.append(f"{dist.metadata['Name']}=={dist.version}")
        for entry in dist.files or []:
            parts = entry.parts
            is_module = parts[0] == name and entry.suffix == ".py"
            is_licence = "licenses" in parts or entry.name.upper().startswith("LICENSE")
            if is_module:
                files["_vendor/" + entry.as_posix()] = _verified(entry)
            elif is_licence and parts[0].endswith(".dist-info"):
                files[f"_vendor/LICENSES/{name}-{entry.name}"] = _verified(entry)
    # Pure Python only: MarkupSafe falls back to its _native module without _speedups.
    files["_vendor/VENDORED.txt"] = ("\n".join(versions) + "\n").encode()
    return files


def _verified(entry: metadata.PackagePath) -> bytes:
    data = entry.read_binary()
    if entry.hash is not None and entry.hash.mode == "sha256":
        actual = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if actual != entry.hash.value:
            raise RuntimeError(f"{entry}: installed file differs from its release; reinstall it")
    return data


class PresetSources:
    """Template files read once per process (they only change with a deploy)."""

    def __init__(self, presets_dir: Path = PRESETS_DIR) -> None:
        self.presets_dir = presets_dir
        self._common = read_tree(presets_dir / "common", "_preset")
        self._vendor = vendored_files()
        self._entries = {kind: read_tree(presets_dir / kind, "") for kind in ("prompt", "plugin")}

    def base(self, kind: str, config: Mapping[str, Any]) -> dict[str, bytes]:
        """The files every tarball of preset ``kind`` has, with ``config`` as preset.json."""
        return {
            **self._common,
            **self._vendor,
            **self._entries[kind],
            "preset.json": canonical_json(dict(config)),
        }
