"""The object store interface: where tarballs and run logs live.

Every backend (filesystem, S3, memory) implements :class:`BlobStore` with the
same behaviour, checked by ``tests/integration/test_blobstore_conformance.py``.
Keys are validated here, once, so a key that works on one backend works on all.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

# S3 allows 1024 UTF-8 bytes per key, and the S3 store adds its own prefix in
# front; 512 leaves room for that while being far above any key we build.
MAX_KEY_BYTES = 512
# Most file systems cap a single name at 255 bytes.
MAX_SEGMENT_BYTES = 255


@runtime_checkable
class BlobStore(Protocol):
    """A flat store of immutable-ish byte objects under slash-separated keys.

    Keys look like ``blobs/sha256/ab/abcdef...`` or ``logs/<run-id>/log``. No
    key may also be a directory of another key (``a`` and ``a/b``): the
    filesystem backend cannot hold both, and our key layouts never need it.
    """

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically, replacing any old object."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Stream the local file ``path`` into ``key`` atomically."""
        ...

    def get(self, key: str) -> bytes:
        """Return the object's bytes; raise ``BlobMissing`` if there is none."""
        ...

    def get_to_file(self, key: str, path: Path) -> None:
        """Stream the object to ``path``, which appears whole or not at all."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    def size(self, key: str) -> int:
        """The object's size in bytes; raise ``BlobMissing`` if there is none."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix`` (a plain string prefix), sorted."""
        ...

    def ping(self) -> None:
        """Raise ``Unavailable`` if the backing store cannot be reached."""
        ...

    def describe(self) -> str:
        """A one-line description for start-up logs, never with credentials."""
        ...


def validate_key(key: str) -> str:
    """Return ``key`` if it is a well-formed relative key, else raise ``ValueError``.

    Keys come from our own code (digests, run ids), never straight from users,
    so a bad key is a programming error rather than a client error.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"blob key must be a non-empty string, got {key!r}")
    _check_chars(key, what="blob key")
    if key.startswith("/"):
        raise ValueError(f"blob key must be relative, got {key!r}")
    for segment in key.split("/"):
        _check_segment(segment, key)
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can start a valid key, else raise ``ValueError``.

    The empty prefix (everything) and a trailing slash (``logs/``) are allowed;
    otherwise the same rules as :func:`validate_key` apply.
    """
    if not isinstance(prefix, str):
        raise ValueError(f"blob prefix must be a string, got {prefix!r}")
    if prefix:
        validate_key(prefix.removesuffix("/"))
    return prefix


def _check_chars(key: str, *, what: str) -> None:
    if len(key.encode("utf-8", errors="surrogatepass")) > MAX_KEY_BYTES:
        raise ValueError(f"{what} is longer than {MAX_KEY_BYTES} bytes: {key[:40]!r}...")
    if "\\" in key:
        raise ValueError(f"{what} must not contain a backslash: {key!r}")
    # NUL and other control characters break file names, logs and S3 listings.
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        raise ValueError(f"{what} must not contain control characters: {key!r}")


def _check_segment(segment: str, key: str) -> None:
    if segment in ("", ".", ".."):
        raise ValueError(f"blob key has an empty, '.' or '..' segment: {key!r}")
    if len(segment.encode("utf-8", errors="surrogatepass")) > MAX_SEGMENT_BYTES:
        raise ValueError(f"blob key segment is longer than {MAX_SEGMENT_BYTES} bytes: {key!r}")


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """Yield a file that becomes ``path`` only if the block finishes.

    Writes go to a temporary file in the same directory (so ``os.replace`` is
    atomic), which is fsynced and renamed on success and removed on failure.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
