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
import io
import math
import os
import shutil
import tarfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import BinaryIO, Final

from automation_server.errors import InvalidArchive, SandboxError, TooLarge

__all__ = ["ArchiveInfo", "ArchiveLimits", "safe_extract", "validate_archive"]

KiB: Final = 1024
MiB: Final = 1024 * KiB

# A pax or GNU long-name header holds a few names and attributes. Anything
# larger is an attempt to make tarfile read a huge block into memory at once.
_MAX_EXTENDED_HEADER_BYTES: Final = 1 * MiB
# Global pax headers accumulate for the whole archive; real ones (git archive)
# hold one short comment.
_MAX_GLOBAL_HEADER_BYTES: Final = 1 * MiB
# Real archives chain at most global pax + pax + long name + long link.
_MAX_HEADER_CHAIN: Final = 8
# Like the kernel's ELOOP limit on symbolic link resolution.
_MAX_LINK_HOPS: Final = 40
# Total path components walked while resolving symbolic links, all links
# together: keeps a maze of long link targets from costing minutes of CPU.
_MAX_LINK_STEPS: Final = 1_000_000
_CHUNK: Final = 64 * KiB
_GZIP_MAGIC: Final = b"\x1f\x8b"
# tarfile's extended header types (pax, pax global, Solaris pax, GNU long name/link).
_EXTENDED_TYPES: Final = frozenset(
    {
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    }
)
_FILE_TYPES: Final = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE})
_REFUSED_TYPES: Final = {
    tarfile.LNKTYPE: "hard links are not allowed",
    tarfile.CHRTYPE: "character devices are not allowed",
    tarfile.BLKTYPE: "block devices are not allowed",
    tarfile.FIFOTYPE: "FIFOs are not allowed",
    tarfile.CONTTYPE: "contiguous files are not supported",
    tarfile.GNUTYPE_SPARSE: "sparse files are not supported",
}
# Errors the parser raises on malformed input that are not tarfile.TarError:
# all of them mean "this is not a readable tar archive", never a server bug
# worth a 500. OSError is deliberately absent (it is the disk, not the data).
_MALFORMED_ERRORS: Final = (
    tarfile.TarError,
    ValueError,
    OverflowError,
    EOFError,
    zlib.error,
    RecursionError,
)
# Latest modification time kept on extraction (year 2242); later or
# non-finite times from a crafted header would make os.utime fail.
_MAX_MTIME: Final = 2**33 - 1


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what an archive may contain or cost to read.

    ``max_ratio`` is uncompressed bytes over compressed bytes read so far. It
    only applies once more than ``ratio_floor_bytes`` have been decompressed,
    so that small, very compressible archives (a few KB of source, a file of
    zeros) are fine while a gzip bomb is stopped after ``ratio_floor_bytes``
    of work instead of ``max_uncompressed_bytes``. It is checked continuously
    on the stream, so it bounds every prefix of the archive, not only the
    whole.

    ``max_members`` bounds the entries the archive creates: members, and
    directories that member paths imply without listing them.

    ``max_uncompressed_bytes`` bounds the whole decompressed tar stream
    (headers, data, padding, and anything after the end of the archive).
    """

    max_compressed_bytes: int = 50 * MiB
    max_uncompressed_bytes: int = 512 * MiB
    max_members: int = 10_000
    max_ratio: float = 200.0
    ratio_floor_bytes: int = 16 * MiB
    max_name_bytes: int = 255
    max_path_bytes: int = 4096

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if not value > 0:
                raise ValueError(f"ArchiveLimits.{spec.name} must be positive, got {value!r}")


@dataclass(frozen=True)
class ArchiveInfo:
    """What a valid archive holds: regular files and their total size in bytes."""

    files: int
    size: int


def validate_archive(
    source: bytes | BinaryIO, limits: ArchiveLimits = ArchiveLimits()
) -> ArchiveInfo:
    """Check a ``.tar.gz`` without writing anything to disk.

    Reads ``source`` (bytes, or a binary stream from its current position) to
    the end. Raises :class:`InvalidArchive` with the reason if the archive is
    malformed or unsafe, :class:`TooLarge` if it has more compressed bytes
    than ``limits.max_compressed_bytes``.
    """
    with _opened(source) as stream:
        return _scan(stream, _Tree(limits), on_member=None)


def safe_extract(
    source: bytes | BinaryIO | Path, dest: Path, limits: ArchiveLimits = ArchiveLimits()
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
        tree = _Tree(limits)
        with _opened(source) as stream:
            info = _scan(stream, tree, on_member=_extractor(dest))
        _normalise_directories(dest, tree)
    except BaseException:
        _remove_partial(dest, created)
        raise
    return info


# --- the byte streams -------------------------------------------------------


@contextmanager
def _opened(source: bytes | BinaryIO | Path) -> Iterator[BinaryIO]:
    if isinstance(source, Path):
        with source.open("rb") as handle:
            yield handle
    elif isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(source)
    else:
        yield source


class _CompressedCounter:
    """The source as gzip reads it: counted, capped, with the magic peeked."""

    def __init__(self, source: BinaryIO, limit: int) -> None:
        self._source = source
        self._limit = limit
        self._pending = b""
        self.count = 0

    def peek_magic(self) -> bytes:
        # Read exactly the magic (short reads are legal for streams), then
        # hand it back to gzip on its first read.
        while len(self._pending) < len(_GZIP_MAGIC):
            data = self._read_source(len(_GZIP_MAGIC) - len(self._pending))
            if not data:
                break
            self._pending += data
        return self._pending

    def read(self, size: int = -1) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        return self._read_source(size if size >= 0 else _CHUNK)

    def seek(self, offset: int, whence: int = 0) -> int:
        raise io.UnsupportedOperation("the archive is read as a stream")

    def _read_source(self, size: int) -> bytes:
        # Never ask for more than one byte past the limit, so an endless
        # stream costs at most the limit.
        data = self._source.read(min(size, self._limit - self.count + 1))
        self.count += len(data)
        if self.count > self._limit:
            raise TooLarge(f"archive is larger than {_human(self._limit)} compressed")
        return data


class _ExpandedCounter:
    """The decompressed tar stream: counted against the size and ratio limits."""

    def __init__(
        self, gz: gzip.GzipFile, compressed: _CompressedCounter, limits: ArchiveLimits
    ) -> None:
        self._gz = gz
        self._compressed = compressed
        self._limits = limits
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._gz.read(size if size >= 0 else _CHUNK)
        except EOFError:
            raise InvalidArchive("truncated gzip data: the compressed stream ends early") from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise InvalidArchive(f"corrupt gzip data: {exc}") from None
        self.count += len(data)
        self._check_limits()
        return data

    # tarfile's stream mode wants a file object; only read() is ever used.
    def write(self, data: bytes) -> int:
        raise io.UnsupportedOperation("read only")

    def tell(self) -> int:
        return self.count

    def seek(self, offset: int, whence: int = 0) -> int:
        raise io.UnsupportedOperation("the archive is read as a stream")

    def close(self) -> None:
        """The gzip reader and the source are closed by their owners."""

    def _check_limits(self) -> None:
        limits = self._limits
        if self.count > limits.max_uncompressed_bytes:
            raise InvalidArchive(
                f"archive expands to more than {_human(limits.max_uncompressed_bytes)}"
            )
        compressed = max(self._compressed.count, 1)
        if self.count > limits.ratio_floor_bytes and self.count > limits.max_ratio * compressed:
            raise InvalidArchive(
                f"archive compression ratio is over {limits.max_ratio:g}:1"
                f" ({_human(self.count)} from {_human(compressed)}): refusing a likely gzip bomb"
            )


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
                f" {_human(_MAX_EXTENDED_HEADER_BYTES)}"
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


def _scan(stream: BinaryIO, tree: _Tree, on_member: _MemberHook | None) -> ArchiveInfo:
    limits = tree.limits
    compressed = _CompressedCounter(stream, limits.max_compressed_bytes)
    magic = compressed.peek_magic()
    if not magic:
        raise InvalidArchive("the archive is empty (0 bytes)")
    if magic != _GZIP_MAGIC:
        raise InvalidArchive("not a gzip-compressed file (a .tar.gz is expected)")
    with gzip.GzipFile(fileobj=compressed, mode="rb") as gz:
        expanded = _ExpandedCounter(gz, compressed, limits)
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


class _Kind(Enum):
    FILE = "file"
    DIR = "directory"
    IMPLIED_DIR = "implied directory"
    SYMLINK = "symbolic link"


class _Node:
    """One path of the archive's tree; children by name for directories."""

    __slots__ = ("children", "kind", "target")

    def __init__(self, kind: _Kind, target: str | None = None) -> None:
        self.kind = kind
        self.target = target
        self.children: dict[str, _Node] = {}


class _Tree:
    """The archive's paths as a tree, with the per-member rules."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self._root = _Node(_Kind.DIR)
        self._symlinks: list[tuple[str, tuple[str, ...]]] = []
        self._members = 0
        self._entries = 0
        self._link_steps = 0
        self.files = 0
        self.size = 0

    def add(self, member: tarfile.TarInfo) -> bool:
        """Check one member; False for the archive root itself (nothing to extract)."""
        self._members += 1
        if self._members > self.limits.max_members:
            raise InvalidArchive(f"archive has more than {self.limits.max_members} entries")
        name = member.name
        parts = self._check_name(name)
        kind = self._check_type(member)
        if kind is not _Kind.DIR and name.rsplit("/", 1)[-1] in ("", "."):
            # "a/." names the directory a on disk, not a new file or link in it.
            raise InvalidArchive(f"member {name!r}: a {kind.value} name cannot end in '/' or '.'")
        if not parts:
            return False
        if kind is _Kind.FILE:
            self._add_file_size(member)
        elif kind is _Kind.SYMLINK:
            self._check_link_target(member)
        self._insert(name, parts, kind, member.linkname if kind is _Kind.SYMLINK else None)
        if kind is _Kind.SYMLINK:
            self._symlinks.append((name, parts))
            self._check_link_stays_inside(name, parts)
        return True

    def finish(self) -> ArchiveInfo:
        if self.files == 0:
            raise InvalidArchive("the archive contains no regular files")
        # A link checked when it was read may since have gained a route out
        # through a later link (a -> b/.. and then b -> ..): check them all
        # again with the whole tree known.
        for name, parts in self._symlinks:
            self._check_link_stays_inside(name, parts)
        return ArchiveInfo(files=self.files, size=self.size)

    def directories(self) -> Iterator[tuple[str, ...]]:
        """Every directory path, listed or implied, parents first."""
        pending: list[tuple[tuple[str, ...], _Node]] = [((), self._root)]
        while pending:
            path, node = pending.pop()
            for part, child in node.children.items():
                if child.kind in (_Kind.DIR, _Kind.IMPLIED_DIR):
                    yield (*path, part)
                    pending.append(((*path, part), child))

    def _check_name(self, name: str) -> tuple[str, ...]:
        limits = self.limits
        if "\x00" in name:
            raise InvalidArchive(f"member {name!r}: name contains a NUL byte")
        if name.startswith("/"):
            raise InvalidArchive(f"member {name!r}: absolute paths are not allowed")
        if len(_encoded(name)) > limits.max_path_bytes:
            raise InvalidArchive(
                f"member {name[:80]!r}...: path is longer than {limits.max_path_bytes} bytes"
            )
        parts = tuple(part for part in name.split("/") if part not in ("", "."))
        for part in parts:
            if part == "..":
                raise InvalidArchive(f"member {name!r}: path leaves the archive root")
            if len(_encoded(part)) > limits.max_name_bytes:
                raise InvalidArchive(
                    f"member {name[:80]!r}...: a path component is longer than"
                    f" {limits.max_name_bytes} bytes"
                )
        return parts

    @staticmethod
    def _check_type(member: tarfile.TarInfo) -> _Kind:
        if member.type in _REFUSED_TYPES:
            raise InvalidArchive(f"member {member.name!r}: {_REFUSED_TYPES[member.type]}")
        if member.sparse is not None:
            raise InvalidArchive(f"member {member.name!r}: sparse files are not supported")
        if member.type == tarfile.DIRTYPE:
            return _Kind.DIR
        if member.type == tarfile.SYMTYPE:
            return _Kind.SYMLINK
        if member.type in _FILE_TYPES:
            return _Kind.FILE
        raise InvalidArchive(f"member {member.name!r}: unsupported member type {member.type!r}")

    def _add_file_size(self, member: tarfile.TarInfo) -> None:
        if member.size < 0:
            raise InvalidArchive(f"member {member.name!r}: negative size")
        self.files += 1
        self.size += member.size
        # The header announces the size: refuse before reading the data.
        if self.size > self.limits.max_uncompressed_bytes:
            raise InvalidArchive(
                f"member {member.name!r}: files add up to more than"
                f" {_human(self.limits.max_uncompressed_bytes)}"
            )

    def _check_link_target(self, member: tarfile.TarInfo) -> None:
        name, target = member.name, member.linkname
        if not target:
            raise InvalidArchive(f"member {name!r}: symbolic link with an empty target")
        if "\x00" in target:
            raise InvalidArchive(f"member {name!r}: link target contains a NUL byte")
        if len(_encoded(target)) > self.limits.max_path_bytes:
            raise InvalidArchive(
                f"member {name!r}: link target is longer than {self.limits.max_path_bytes} bytes"
            )
        if target.startswith("/"):
            raise InvalidArchive(
                f"member {name!r}: symbolic link to an absolute path {target[:200]!r}"
            )

    def _insert(self, name: str, parts: tuple[str, ...], kind: _Kind, target: str | None) -> None:
        node = self._root
        for depth, part in enumerate(parts[:-1]):
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = self._new_node(_Kind.IMPLIED_DIR)
            elif child.kind in (_Kind.FILE, _Kind.SYMLINK):
                # Writing through a link is how a "safe" link becomes an
                # escape; through a file it cannot work. Refuse both.
                prefix = "/".join(parts[: depth + 1])
                raise InvalidArchive(
                    f"member {name!r}: path goes through the {child.kind.value} {prefix!r}"
                )
            node = child
        last = parts[-1]
        existing = node.children.get(last)
        if existing is None:
            node.children[last] = self._new_node(kind, target)
        elif existing.kind is _Kind.IMPLIED_DIR and kind is _Kind.DIR:
            existing.kind = _Kind.DIR
        elif existing.kind is _Kind.IMPLIED_DIR:
            raise InvalidArchive(
                f"member {name!r}: {kind.value} where earlier members put a directory"
            )
        else:
            raise InvalidArchive(f"member {name!r}: duplicate entry in the archive")

    def _new_node(self, kind: _Kind, target: str | None = None) -> _Node:
        self._entries += 1
        if self._entries > self.limits.max_members:
            raise InvalidArchive(
                f"archive has more than {self.limits.max_members} entries"
                " (directories implied by paths included)"
            )
        return _Node(kind, target)

    def _check_link_stays_inside(self, name: str, parts: tuple[str, ...]) -> None:
        """Resolve the link as the kernel would, following the archive's other links.

        Components the archive does not hold are taken lexically: at run time
        they do not exist, so this errs on the side of refusing.
        """
        node = self._root
        stack: list[_Node | None] = [node]
        for part in parts[:-1]:
            node = node.children[part]
            stack.append(node)
        link = node.children[parts[-1]]
        assert link.target is not None
        pending = list(reversed(link.target.split("/")))
        hops = 0
        while pending:
            self._link_steps += 1
            if self._link_steps > _MAX_LINK_STEPS:
                raise InvalidArchive("symbolic links are too many or too long to check")
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if len(stack) == 1:
                    raise InvalidArchive(
                        f"member {name!r}: symbolic link to {link.target[:200]!r}"
                        " leaves the archive root"
                    )
                stack.pop()
                continue
            parent = stack[-1]
            child = parent.children.get(part) if parent is not None else None
            if child is not None and child.kind is _Kind.SYMLINK:
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    raise InvalidArchive(
                        f"member {name!r}: too many levels of symbolic links (a loop?)"
                    )
                assert child.target is not None
                pending.extend(reversed(child.target.split("/")))
                continue
            stack.append(child)


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


def _normalise_directories(dest: Path, tree: _Tree) -> None:
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


# --- small helpers ----------------------------------------------------------


def _encoded(text: str) -> bytes:
    # tarfile decodes names as UTF-8 with surrogateescape; this gives back
    # the bytes the file system will see.
    return text.encode("utf-8", "surrogateescape")


def _human(size: int) -> str:
    for unit, factor in (("GiB", 1024 * MiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor:
            exact = size % factor == 0
            return f"{size // factor} {unit}" if exact else f"{size / factor:.1f} {unit}"
    return f"{size} bytes"
