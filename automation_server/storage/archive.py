"""Validate and extract uploaded ``.tar.gz`` archives without trusting them.

Threat model: the archive comes from a user and may be crafted to hurt the
server or the next run. It may try to

- write outside the extraction directory (absolute names, ``..``, symbolic
  links that point outside and later members written through them, hard
  links, names the file system treats specially);
- create device files or FIFOs, or setuid/setgid files;
- exhaust memory, disk or CPU: gzip bombs (also hidden after the end of the
  tar data, where a naive reader never looks), millions of members, huge
  pax/GNU extended headers, long chains of headers, symbolic link mazes;
- crash the parser with malformed data, so that the API answers 500.

So the archive is read as a stream, once, with bounded memory: the
compressed bytes, the decompressed bytes and the compression ratio are
counted as they flow (:class:`ArchiveLimits`), member data is skipped or
copied in chunks, and every member is checked before anything is written.
Uploads are validated without touching the disk (:func:`validate_archive`);
runs extract again into a fresh directory with the same checks plus
tarfile's ``data`` filter (:func:`safe_extract`): validation at upload is not
trusted at run time, because blobs may come from elsewhere or an older
server version.

What is refused is refused with a reason a user can act on, e.g.
``member '../x': path leaves the archive root``.
"""

from __future__ import annotations

import errno
import gzip
import math
import os
import shutil
import tarfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from automation_server.errors import InvalidArchive, SandboxError
from automation_server.storage.archive_limits import (
    _CHUNK,
    _EXTENDED_TYPES,
    _GZIP_MAGIC,
    _MALFORMED_ERRORS,
    _MAX_EXTENDED_HEADER_BYTES,
    _MAX_GLOBAL_HEADER_BYTES,
    _MAX_HEADER_CHAIN,
    _MAX_MTIME,
    ArchiveInfo,
    ArchiveLimits,
    human,
)
from automation_server.storage.archive_streams import (
    CompressedCounter,
    ExpandedCounter,
    opened,
)
from automation_server.storage.archive_tree import MemberTree

__all__ = ["ArchiveInfo", "ArchiveLimits", "safe_extract", "validate_archive"]

DEFAULT_LIMITS = ArchiveLimits()


def validate_archive(
    source: bytes | BinaryIO, limits: ArchiveLimits = DEFAULT_LIMITS
) -> ArchiveInfo:
    """Check a ``.tar.gz`` without writing anything to disk.

    Reads ``source`` (bytes, or a binary stream from its current position) to
    the end. Raises :class:`InvalidArchive` with the reason if the archive is
    malformed or unsafe, :class:`TooLarge` if it has more compressed bytes
    than ``limits.max_compressed_bytes``.
    """
    with opened(source) as stream:
        return _scan(stream, MemberTree(limits), on_member=None)


def safe_extract(
    source: bytes | BinaryIO | Path, dest: Path, limits: ArchiveLimits = DEFAULT_LIMITS
) -> ArchiveInfo:
    """Extract a ``.tar.gz`` into ``dest``, checking every member on the way.

    ``dest`` must not exist (it is created) or be an empty directory. Modes
    are normalised (directories 0o755, files 0o644 or 0o755 when any execute
    bit was set; no setuid, setgid or sticky bits) and owners are ignored.
    Raises :class:`InvalidArchive` or :class:`TooLarge` like
    :func:`validate_archive`, and :class:`SandboxError` when the disk fails
    (full, quota); on any failure what was extracted is removed again.
    """
    created = _prepare_destination(dest)
    try:
        tree = MemberTree(limits)
        with opened(source) as stream:
            info = _scan(stream, tree, on_member=_extractor(dest))
        _normalise_directories(dest, tree)
    except BaseException:
        _remove_partial(dest, created)
        raise
    return info


# --- tarfile, guarded ---------------------------------------------------------


class _GuardedTarInfo(tarfile.TarInfo):
    """Refuses, before tarfile reads them, headers that would cost memory.

    tarfile reads a pax or GNU long-name block into memory in one piece, nests
    one call per chained header, and reads sparse maps of any length;
    ``_proc_member`` is tarfile's documented hook for subclasses.
    """

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise InvalidArchive(f"member {self.name!r}: sparse files are not supported")
        if self.type not in _EXTENDED_TYPES:
            return super()._proc_member(archive)  # type: ignore[misc, no-any-return]
        if not 0 <= self.size <= _MAX_EXTENDED_HEADER_BYTES:
            raise InvalidArchive(
                f"extended header of {self.size} bytes is larger than"
                f" {human(_MAX_EXTENDED_HEADER_BYTES)}"
            )
        assert isinstance(archive, _GuardedTarFile)
        if self.type == tarfile.XGLTYPE:
            archive.global_header_bytes += self.size
            if archive.global_header_bytes > _MAX_GLOBAL_HEADER_BYTES:
                raise InvalidArchive("global pax headers are larger than allowed")
        archive.header_depth += 1
        try:
            if archive.header_depth > _MAX_HEADER_CHAIN:
                raise InvalidArchive("too many consecutive extended headers")
            return super()._proc_member(archive)  # type: ignore[misc, no-any-return]
        finally:
            archive.header_depth -= 1

    # GNU sparse files described in pax headers (formats 0.0, 0.1, 1.0).
    def _proc_gnusparse_00(self, next: tarfile.TarInfo, *args: object) -> None:
        raise InvalidArchive(f"member {next.name!r}: sparse files are not supported")

    def _proc_gnusparse_01(self, next: tarfile.TarInfo, *args: object) -> None:
        raise InvalidArchive(f"member {next.name!r}: sparse files are not supported")

    def _proc_gnusparse_10(self, next: tarfile.TarInfo, *args: object) -> None:
        raise InvalidArchive(f"member {next.name!r}: sparse files are not supported")


class _GuardedTarFile(tarfile.TarFile):
    tarinfo = _GuardedTarInfo
    members: list[tarfile.TarInfo]
    header_depth = 0
    global_header_bytes = 0

    def next(self) -> tarfile.TarInfo | None:
        member = super().next()
        # Stream mode still keeps every TarInfo it has read; we never look
        # back, so drop them to keep memory flat in the member count.
        self.members.clear()
        return member


# --- the scan shared by validation and extraction ---------------------------

_MemberHook = Callable[[tarfile.TarFile, tarfile.TarInfo], None]


def _scan(stream: BinaryIO, tree: MemberTree, on_member: _MemberHook | None) -> ArchiveInfo:
    limits = tree.limits
    compressed = CompressedCounter(stream, limits.max_compressed_bytes)
    magic = compressed.peek_magic()
    if not magic:
        raise InvalidArchive("the archive is empty (0 bytes)")
    if magic != _GZIP_MAGIC:
        raise InvalidArchive("not a gzip-compressed file (a .tar.gz is expected)")
    with gzip.GzipFile(fileobj=compressed, mode="rb") as gz:
        expanded = ExpandedCounter(gz, compressed, limits)
        try:
            with _GuardedTarFile.open(
                fileobj=expanded, mode="r|", encoding="utf-8", errorlevel=2
            ) as tar:
                while (member := tar.next()) is not None:
                    if tree.add(member) and on_member is not None:
                        on_member(tar, member)
                _check_trailer(tar)
        except _MALFORMED_ERRORS as exc:
            if expanded.count == 0:
                raise InvalidArchive("the archive is empty (no tar data)") from None
            raise InvalidArchive(f"not a valid tar archive: {exc}") from None
    return tree.finish()


def _check_trailer(tar: tarfile.TarFile) -> None:
    """Read the stream to its end: what follows the tar end marker must be zeros.

    Reading to the end also checks the gzip CRC and length, and counts a bomb
    hidden after the end marker against the limits.
    """
    while data := tar.fileobj.read(_CHUNK):
        if data.count(0) != len(data):
            raise InvalidArchive(
                "unexpected data after the end of the tar archive (corrupt header?)"
            )


# --- extraction -------------------------------------------------------------


def _extractor(dest: Path) -> _MemberHook:
    """Extract one checked member at a time with tarfile's ``data`` filter on top."""
    dest_str = str(dest)

    def extract(tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        try:
            tar.extract(member, path=dest_str, filter=_extraction_filter)
        except tarfile.FilterError as exc:
            raise InvalidArchive(f"member {member.name!r}: {exc}") from None
        except tarfile.ExtractError as exc:
            raise SandboxError(f"could not extract member {member.name!r}: {exc}") from None
        except OSError as exc:
            raise _disk_error(member.name, exc) from None

    return extract


def _normalise_directories(dest: Path, tree: MemberTree) -> None:
    # Directories that member paths imply were made by os.makedirs with the
    # process umask: give every directory the same mode. The tree rules out
    # a link anywhere on these paths, so chmod follows none.
    for parts in tree.directories():
        path = dest.joinpath(*parts)
        try:
            os.chmod(path, 0o755)  # noqa: S103 - the sandbox user must read the code
        except OSError as exc:
            raise _disk_error("/".join(parts), exc) from None


def _extraction_filter(member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo:
    """tarfile's ``data`` filter, then our modes and a sane modification time."""
    filtered = tarfile.data_filter(member, dest_path)
    mtime = member.mtime if math.isfinite(member.mtime) else 0
    mtime = min(max(mtime, 0), _MAX_MTIME)
    if member.isdir():
        return filtered.replace(mode=0o755, mtime=mtime, deep=False)
    if member.isreg():
        mode = 0o755 if member.mode & 0o111 else 0o644
        return filtered.replace(mode=mode, mtime=mtime, deep=False)
    return filtered.replace(mtime=mtime, deep=False)


def _disk_error(name: str, exc: OSError) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return SandboxError("no space left on device while extracting the tarball")
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidArchive(f"member {name[:200]!r}: path is too long for the file system")
    return SandboxError(f"could not extract member {name[:200]!r}: {exc.strerror or exc}")


def _prepare_destination(dest: Path) -> bool:
    """Make ``dest`` ready; True when we created it (and so may remove it)."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise SandboxError(f"extraction target {str(dest)!r} is not a directory")
    if dest.exists():
        with os.scandir(dest) as entries:
            if next(entries, None) is not None:
                raise SandboxError(f"extraction directory {str(dest)!r} is not empty")
        return False
    try:
        dest.mkdir(parents=True)
        os.chmod(dest, 0o755)  # noqa: S103 - the sandbox user must read the code
    except OSError as exc:
        raise _disk_error(str(dest), exc) from None
    return True


def _remove_partial(dest: Path, created: bool) -> None:
    # Best effort: the original error is what the caller needs to see.
    if created:
        shutil.rmtree(dest, ignore_errors=True)
        return
    with suppress(OSError), os.scandir(dest) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with suppress(OSError):
                    os.unlink(entry.path)
