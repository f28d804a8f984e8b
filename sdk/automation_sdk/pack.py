"""Pack a directory into a reproducible ``.tar.gz``: the same files give the same bytes.

So the same code always has the same digest, and ``automation deploy`` can
skip uploads (and revisions) when nothing changed. What makes the bytes
reproducible:

- members sorted by path (directories before their contents), names relative
  to the directory without a ``./`` prefix, PAX format;
- every mtime is :data:`MTIME` (2023-11-14T22:13:20Z; a fixed date rather than
  0, which some tools warn about as "implausibly old");
- owner uid/gid 0 with empty user and group names;
- modes normalised: directories and files with any execute bit 0o755, other
  files 0o644 (symbolic links 0o777);
- gzip at level 9 with header mtime 0, no file name, OS byte "unknown".

Skipped: ``.git/``, ``__pycache__/`` and ``*.pyc`` always, and whatever the
directory's ``.automationignore`` excludes (gitignore syntax, read with
``pathspec``; only the file at the top of the directory is read). A directory
an ignore pattern matches is not entered, as in git.

Symbolic links that stay inside the directory are packed as links (the
server accepts them and the run sees the same layout); a link whose target
leaves the directory, or an absolute link, is refused with :class:`PackError`,
as are sockets, FIFOs and device files. Regular files with several hard links
are packed as separate regular files.

Byte-for-byte equality holds on one Python and zlib build; another zlib
(e.g. zlib-ng) may compress differently, which changes the digest once.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pathspec

from automation_sdk.errors import PackError

MTIME = 1_700_000_000
IGNORE_FILE = ".automationignore"
ALWAYS_SKIPPED = (".git/", "__pycache__/", "*.pyc")
_ALWAYS = pathspec.GitIgnoreSpec.from_lines(ALWAYS_SKIPPED)


@dataclass(frozen=True)
class Entry:
    """One member to pack: ``name`` is the POSIX path inside the archive."""

    name: str
    path: Path
    kind: str  # "dir", "file" or "symlink"
    link_target: str = ""


def digest_of(data: bytes) -> str:
    """``sha256:<hex>``, the digest the server gives the same bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def entries(directory: Path) -> list[Entry]:
    """What :func:`pack` would put in the archive, in archive order."""
    root = Path(directory)
    if not root.is_dir():
        raise PackError(f"{root}: not a directory")
    spec = _ignore_spec(root)
    return sorted(_walk(root, root.resolve(), spec), key=lambda e: PurePosixPath(e.name).parts)


def pack(directory: Path, *, on_entry: Callable[[Entry], None] | None = None) -> bytes:
    """The reproducible ``.tar.gz`` of ``directory``; ``on_entry`` sees each member added."""
    members = entries(directory)
    raw = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for entry in members:
            _add(tar, entry)
            if on_entry is not None:
                on_entry(entry)
    return raw.getvalue()


def _ignore_spec(root: Path) -> pathspec.GitIgnoreSpec | None:
    ignore = root / IGNORE_FILE
    if not ignore.is_file():
        return None
    lines = ignore.read_text(encoding="utf-8").splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _skipped(rel: str, is_dir: bool, spec: pathspec.GitIgnoreSpec | None) -> bool:
    # Directories are matched with a trailing slash so "build/" patterns apply.
    candidate = rel + "/" if is_dir else rel
    if _ALWAYS.match_file(candidate):
        return True
    return spec is not None and spec.match_file(candidate)


def _walk(root: Path, real_root: Path, spec: pathspec.GitIgnoreSpec | None) -> Iterator[Entry]:
    for current, dirnames, filenames in os.walk(root):
        base = Path(current)
        kept_dirs = []
        for name in sorted(dirnames):
            path = base / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                # os.walk lists links to directories here; pack them as links.
                if not _skipped(rel, False, spec):
                    yield _symlink(path, rel, real_root)
            elif not _skipped(rel, True, spec):
                kept_dirs.append(name)
                yield Entry(rel, path, "dir")
        dirnames[:] = kept_dirs  # not entering ignored directories, as git does
        for name in sorted(filenames):
            path = base / name
            rel = path.relative_to(root).as_posix()
            if _skipped(rel, False, spec):
                continue
            yield _file_entry(path, rel, real_root)


def _file_entry(path: Path, rel: str, real_root: Path) -> Entry:
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return _symlink(path, rel, real_root)
    if stat.S_ISREG(mode):
        return Entry(rel, path, "file")
    raise PackError(f"{rel}: not a regular file, directory or symbolic link (cannot pack it)")


def _symlink(path: Path, rel: str, real_root: Path) -> Entry:
    target = os.readlink(path)
    if os.path.isabs(target):
        raise PackError(f"{rel}: symbolic link to an absolute path {target!r}; use a relative link")
    # The server checks the target as written; the real path also catches chains of links.
    lexical = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    real = Path(os.path.realpath(path))
    if lexical == ".." or lexical.startswith("../") or not real.is_relative_to(real_root):
        raise PackError(f"{rel}: symbolic link {target!r} points outside the directory")
    return Entry(rel, path, "symlink", target)


def _add(tar: tarfile.TarFile, entry: Entry) -> None:
    info = tarfile.TarInfo(entry.name)
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    elif entry.kind == "symlink":
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.link_target
        tar.addfile(info)
    else:
        st = entry.path.stat()
        info.size = st.st_size
        info.mode = 0o755 if st.st_mode & 0o111 else 0o644
        with entry.path.open("rb") as fh:
            tar.addfile(info, fh)
