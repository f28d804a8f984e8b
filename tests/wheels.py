"""Small wheels and source distributions written by tests (hermetic package sources).

A wheel is a zip with the package's files, ``METADATA``, ``WHEEL`` and
``RECORD`` (sha256 and size of every file), as PEP 427 describes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    files: Mapping[str, str] | None = None,
    requires: Sequence[str] = (),
) -> Path:
    """A pure-Python ``py3-none-any`` wheel; ``files`` default to a module reporting its version."""
    module = name.replace("-", "_")
    files = dict(files or {f"{module}/__init__.py": f"__version__ = {version!r}\n"})
    dist_info = f"{module}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    wheel = "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    contents = {
        **{path: text.encode() for path, text in files.items()},
        f"{dist_info}/METADATA": metadata.encode(),
        f"{dist_info}/WHEEL": wheel.encode(),
    }
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in contents.items())
    record += f"{dist_info}/RECORD,,\n"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in sorted(contents.items()):
            info = zipfile.ZipInfo(member, date_time=(2026, 1, 1, 0, 0, 0))
            zf.writestr(info, data)
        zf.writestr(zipfile.ZipInfo(f"{dist_info}/RECORD", (2026, 1, 1, 0, 0, 0)), record)
    return path


def make_sdist(directory: Path, name: str, version: str, marker: Path) -> Path:
    """A source distribution whose setup.py would create ``marker`` if it ever ran."""
    module = name.replace("-", "_")
    setup = (
        f"open({str(marker)!r}, 'w').write('setup.py ran')\nfrom setuptools import setup\nsetup()\n"
    )
    pyproject = f'[project]\nname = "{name}"\nversion = "{version}"\n'
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, text in (("setup.py", setup), ("pyproject.toml", pyproject)):
            data = text.encode()
            info = tarfile.TarInfo(f"{module}-{version}/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{module}-{version}.tar.gz"
    path.write_bytes(buf.getvalue())
    return path


def wheel_from_installed(directory: Path, dist_name: str) -> Path:
    """The installed distribution packed back into a wheel (files from its RECORD), so
    tests have real packages (e.g. the presets' Jinja2 and MarkupSafe) without a network."""
    import importlib.metadata as metadata

    dist = metadata.distribution(dist_name)
    wheel_text = dist.read_text("WHEEL") or ""
    tags = [
        line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line.startswith("Tag:")
    ]
    tag = tags[0] if tags else "py3-none-any"
    name = dist.metadata["Name"].replace("-", "_").lower()
    contents: dict[str, bytes] = {}
    for entry in dist.files or []:
        text = entry.as_posix()
        if text.endswith(".pyc") or "__pycache__" in text or text.startswith(".."):
            continue
        if text.endswith("/RECORD") or text.endswith("/INSTALLER") or text.endswith("/REQUESTED"):
            continue
        if "direct_url.json" in text:
            continue
        contents[text] = entry.read_binary()
    dist_info = next(p.split("/")[0] for p in contents if p.split("/")[0].endswith(".dist-info"))
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in sorted(contents.items()))
    record += f"{dist_info}/RECORD,,\n"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{dist.version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in sorted(contents.items()):
            zf.writestr(zipfile.ZipInfo(member, date_time=(2026, 1, 1, 0, 0, 0)), data)
        zf.writestr(zipfile.ZipInfo(f"{dist_info}/RECORD", (2026, 1, 1, 0, 0, 0)), record)
    return path
