"""The byte streams of an archive: compressed and expanded bytes counted as they flow."""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from automation_server.errors import InvalidArchive, TooLarge
from automation_server.storage.archive_limits import (
    _CHUNK,
    _GZIP_MAGIC,
    ArchiveLimits,
    human,
)

# --- the byte streams -------------------------------------------------------


@contextmanager
def opened(source: bytes | BinaryIO | Path) -> Iterator[BinaryIO]:
    if isinstance(source, Path):
        with source.open("rb") as handle:
            yield handle
    elif isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(source)
    else:
        yield source


class CompressedCounter:
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
            raise TooLarge(f"archive is larger than {human(self._limit)} compressed")
        return data


class ExpandedCounter:
    """The decompressed tar stream: counted against the size and ratio limits."""

    def __init__(
        self, gz: gzip.GzipFile, compressed: CompressedCounter, limits: ArchiveLimits
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
                f"archive expands to more than {human(limits.max_uncompressed_bytes)}"
            )
        compressed = max(self._compressed.count, 1)
        if self.count > limits.ratio_floor_bytes and self.count > limits.max_ratio * compressed:
            raise InvalidArchive(
                f"archive compression ratio is over {limits.max_ratio:g}:1"
                f" ({human(self.count)} from {human(compressed)}): refusing a likely gzip bomb"
            )
