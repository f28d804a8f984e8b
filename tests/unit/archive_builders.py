"""Build ``.tar.gz`` archives for tests: ordinary ones and crafted, hostile ones.

Entries are ``tarfile.TarInfo`` headers with their data; ``targz`` writes them
exactly as given (no name cleaning, no type checks), so tests can make what a
careful archiver never would: absolute names, ``..``, devices, duplicate
names, links that leave the root, oversized pax headers.

``GzipStream`` compresses lazily while it is read, so a test can hand a
reader a 600 MiB bomb without ever holding it, and can see afterwards how
much of it the reader actually pulled (``produced``).
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

MiB = 1024 * 1024
TarFormat = Literal[0, 1, 2]  # tarfile.USTAR_FORMAT, GNU_FORMAT, PAX_FORMAT


@dataclass(frozen=True)
class Entry:
    info: tarfile.TarInfo
    data: bytes | None = None


def file(name: str, data: bytes = b"", mode: int = 0o644, **attrs: object) -> Entry:
    info = _info(name, tarfile.REGTYPE, mode=mode, **attrs)
    info.size = len(data)
    return Entry(info, data)


def directory(name: str, mode: int = 0o755) -> Entry:
    return Entry(_info(name, tarfile.DIRTYPE, mode=mode))


def symlink(name: str, target: str) -> Entry:
    return Entry(_info(name, tarfile.SYMTYPE, linkname=target, mode=0o777))


def hardlink(name: str, target: str) -> Entry:
    return Entry(_info(name, tarfile.LNKTYPE, linkname=target))


def special(name: str, kind: bytes, **attrs: object) -> Entry:
    """A member of any type byte (devices, FIFOs, contiguous, ...) with no data."""
    return Entry(_info(name, kind, **attrs))


def char_device(name: str) -> Entry:
    return special(name, tarfile.CHRTYPE, devmajor=1, devminor=3)


def block_device(name: str) -> Entry:
    return special(name, tarfile.BLKTYPE, devmajor=8, devminor=0)


def fifo(name: str) -> Entry:
    return special(name, tarfile.FIFOTYPE)


def with_pax(entry: Entry, **headers: str) -> Entry:
    """The entry with extra pax records (written as given, e.g. a NUL in ``path``)."""
    entry.info.pax_headers = {**entry.info.pax_headers, **headers}
    return entry


def tar_bytes(entries: Iterable[Entry], fmt: TarFormat = tarfile.PAX_FORMAT) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for entry in entries:
            tar.addfile(entry.info, io.BytesIO(entry.data) if entry.data is not None else None)
    return raw.getvalue()


def gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def targz(entries: Iterable[Entry], fmt: TarFormat = tarfile.PAX_FORMAT) -> bytes:
    return gz(tar_bytes(entries, fmt))


def sample_project() -> list[Entry]:
    """A small, valid project: a directory, source files, a script, a safe link."""
    return [
        directory("src"),
        file("src/main.py", b"print('hello')\n"),
        file("src/util.py", b"def add(a, b):\n    return a + b\n" * 20),
        file("run.sh", b"#!/bin/sh\nexec python3 src/main.py\n", mode=0o755),
        directory("lib"),
        symlink("lib/util.py", "../src/util.py"),
    ]


def header_block(info: tarfile.TarInfo, fmt: TarFormat = tarfile.USTAR_FORMAT) -> bytes:
    """Just the header block(s) of a member, e.g. to stream its data separately."""
    return info.tobuf(fmt, "utf-8", "surrogateescape")


def padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


END_OF_ARCHIVE = b"\0" * (2 * tarfile.BLOCKSIZE)


def zeros(total: int, chunk: int = MiB) -> Iterator[bytes]:
    block = bytes(chunk)
    while total > 0:
        yield block[: min(chunk, total)]
        total -= chunk


class GzipStream(io.RawIOBase):
    """A readable .gz of ``chunks``, compressed only as far as it is read."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
        self._buffer = bytearray()
        self._finished = False
        self.produced = 0  # uncompressed bytes generated so far

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        while len(self._buffer) < len(buffer) and not self._finished:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._buffer += self._compressor.flush()
                self._finished = True
            else:
                self.produced += len(chunk)
                self._buffer += self._compressor.compress(chunk)
        size = min(len(buffer), len(self._buffer))
        buffer[:size] = self._buffer[:size]
        del self._buffer[:size]
        return size


def bomb_member(size: int, name: str = "zeros.bin") -> GzipStream:
    """One member declaring ``size`` bytes of zeros, streamed."""
    info = tarfile.TarInfo(name)
    info.size = size
    return GzipStream(
        _chain(
            [header_block(info, tarfile.GNU_FORMAT)], zeros(size), [padding(size), END_OF_ARCHIVE]
        )
    )


def bomb_after_end(size: int) -> GzipStream:
    """A small valid archive, then ``size`` zero bytes after its end marker.

    A reader that stops at the tar end marker never sees them; gzip still has
    to decompress them to check its CRC.
    """
    head = tar_bytes([file("ok.txt", b"fine\n")])
    return GzipStream(_chain([head], zeros(size)))


def bomb_of_small_members(count: int, size: int) -> GzipStream:
    """Many members of zeros, each small enough on its own."""

    def members() -> Iterator[bytes]:
        for index in range(count):
            info = tarfile.TarInfo(f"part{index:05d}.bin")
            info.size = size
            yield header_block(info)
            yield from zeros(size)
            yield padding(size)
        yield END_OF_ARCHIVE

    return GzipStream(members())


def _chain(*parts: Iterable[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield from part


def _info(name: str, kind: bytes, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = 1_700_000_000
    for key, value in attrs.items():
        setattr(info, key, value)
    return info
