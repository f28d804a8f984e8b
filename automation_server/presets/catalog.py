"""Plugins a plugin preset can name: the built-ins in ``presets/plugins/`` and uploaded ones.

A plugin is a directory (built-in) or a ``.tar.gz`` (uploaded) with
``plugin.py`` at its root exposing ``run(context, config)``, an optional
``schema.json`` (JSON Schema of its config; its ``description`` describes the
plugin) and an optional ``README.md``. Only those three files go into a
preset tarball, under ``plugins/<name>/``.
"""

from __future__ import annotations

import ast
import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automation_server.errors import Invalid
from automation_server.presets.checks import check_schema
from automation_server.presets.schemas import PLUGIN_NAME

PLUGIN_FILES = ("plugin.py", "schema.json", "README.md")
MAX_PLUGIN_FILE_BYTES = 1_048_576
_NAME = re.compile(PLUGIN_NAME)


@dataclass(frozen=True)
class PluginSource:
    name: str
    description: str
    schema: dict[str, Any] | None
    files: dict[str, bytes]  # file name (one of PLUGIN_FILES) -> content


def load_builtins(plugins_dir: Path) -> dict[str, PluginSource]:
    """Every built-in plugin by name; a broken one is a deployment bug and stops the server."""
    builtins: dict[str, PluginSource] = {}
    for directory in sorted(p for p in plugins_dir.iterdir() if p.is_dir()):
        if directory.name.startswith(("_", ".")):
            continue
        if not _NAME.match(directory.name):
            raise RuntimeError(f"{directory}: plugin directory names must match {PLUGIN_NAME}")
        files = {n: (directory / n).read_bytes() for n in PLUGIN_FILES if (directory / n).is_file()}
        try:
            builtins[directory.name] = _plugin(directory.name, files, str(directory))
        except Invalid as exc:
            raise RuntimeError(f"built-in plugin {directory.name}: {exc.detail}") from None
    return builtins


def read_uploaded(name: str, tarball: bytes, field: str) -> PluginSource:
    """The plugin in an uploaded tarball (already validated as a safe archive at upload)."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for member in tar:
            member_name = member.name.removeprefix("./")
            if member_name not in PLUGIN_FILES or not member.isreg():
                continue
            if member.size > MAX_PLUGIN_FILE_BYTES:
                raise Invalid(
                    f"{field}: {member_name} is larger than {MAX_PLUGIN_FILE_BYTES} bytes",
                    field=field,
                    code="invalid_plugin",
                )
            extracted = tar.extractfile(member)
            if extracted is not None:
                files[member_name] = extracted.read()
    return _plugin(name, files, field)


def _plugin(name: str, files: dict[str, bytes], field: str) -> PluginSource:
    if "plugin.py" not in files:
        raise Invalid(
            f"{field}: no plugin.py at the root of the plugin",
            field=field,
            code="invalid_plugin",
        )
    _check_module(files["plugin.py"], field)
    schema = _schema(files.get("schema.json"), field)
    return PluginSource(name, _description(schema, files.get("README.md")), schema, files)


def _check_module(source: bytes, field: str) -> None:
    """plugin.py must parse and define ``run`` at the top level."""
    try:
        tree = ast.parse(source, filename="plugin.py")
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        raise Invalid(
            f"{field}: plugin.py does not parse (line {line}): {exc}",
            field=field,
            code="invalid_plugin",
        ) from None
    # Plain def: the runner calls run() synchronously.
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    if "run" not in defined:
        raise Invalid(
            f"{field}: plugin.py defines no top-level run(context, config) function",
            field=field,
            code="invalid_plugin",
        )


def _schema(raw: bytes | None, field: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        schema = json.loads(raw)
    except ValueError as exc:
        raise Invalid(
            f"{field}: schema.json is not JSON: {exc}", field=field, code="invalid_plugin"
        ) from None
    if not isinstance(schema, dict):
        raise Invalid(
            f"{field}: schema.json must be a JSON object", field=field, code="invalid_plugin"
        )
    check_schema(schema, field)
    return schema


def _description(schema: dict[str, Any] | None, readme: bytes | None) -> str:
    """The schema's ``description``, else the README's first line that is not a heading."""
    if schema and isinstance(schema.get("description"), str):
        return str(schema["description"])
    for line in (readme or b"").decode("utf-8", "replace").splitlines():
        if line.strip() and not line.startswith("#"):
            return line.strip()
    return ""
