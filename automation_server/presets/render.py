"""Reproducible ``.tar.gz`` from files in memory: the same files give the same bytes.

Preset tarballs are rendered per request, and content addressing only stores
one copy when equal configurations render to equal bytes. What fixes the bytes:

- members sorted by path, each directory (made explicit) before its contents,
  names without a ``./`` prefix, PAX format (no extended headers for ASCII);
- every mtime :data:`MTIME` (the date ``automation_sdk.pack`` uses);
- uid and gid 0, empty user and group names;
- modes 0o755 for directories and executables, 0o644 for other files;
- gzip level 9 with header mtime 0, no file name, OS byte "unknown".

Byte equality holds for one Python and zlib build (another zlib may compress
differently, which changes digests once, like a new template would).
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Collection, Mapping
from pathlib import PurePosixPath

MTIME = 1_700_000_000
FILE_MODE = 0o644
EXEC_MODE = 0o755
DIR_MODE = 0o755


def build_tarball(files: Mapping[str, bytes], executable: Collection[str] = ()) -> bytes:
    """The reproducible ``.tar.gz`` of ``files`` (relative POSIX path -> content)."""
    for name in files:
        _check_name(name)
    unknown = set(executable) - set(files)
    if unknown:
        raise ValueError(f"executable names that are not files: {sorted(unknown)}")
    raw = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in member_names(files):
            if name in files:
                mode = EXEC_MODE if name in executable else FILE_MODE
                tar.addfile(
                    _info(name, tarfile.REGTYPE, mode, len(files[name])), io.BytesIO(files[name])
                )
            else:
                tar.addfile(_info(name, tarfile.DIRTYPE, DIR_MODE, 0))
    return raw.getvalue()


def member_names(files: Collection[str]) -> list[str]:
    """Every member in archive order: the files and all their parent directories."""
    directories = {
        str(parent)
        for name in files
        for parent in PurePosixPath(name).parents
        if str(parent) != "."
    }
    clash = directories.intersection(files)
    if clash:
        raise ValueError(f"names used both as a file and as a directory: {sorted(clash)}")
    return sorted(directories.union(files), key=lambda n: PurePosixPath(n).parts)


def _info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _check_name(name: str) -> None:
    """Names are ours (templates and plugin names), so a bad one is a bug, not user input."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or any(p in ("", ".", "..") for p in name.split("/")):
        raise ValueError(f"not a clean relative member name: {name!r}")
