"""What an archive may be: the limits, the member types refused, and their reasons."""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass, fields
from typing import Final

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


# --- small helpers ----------------------------------------------------------


def encoded(text: str) -> bytes:
    # tarfile decodes names as UTF-8 with surrogateescape; this gives back
    # the bytes the file system will see.
    return text.encode("utf-8", "surrogateescape")


def human(size: int) -> str:
    for unit, factor in (("GiB", 1024 * MiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor:
            exact = size % factor == 0
            return f"{size // factor} {unit}" if exact else f"{size / factor:.1f} {unit}"
    return f"{size} bytes"
