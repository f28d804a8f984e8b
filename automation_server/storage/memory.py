"""In-memory object store for unit tests (thread-safe, nothing persisted)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from automation_server.errors import BlobMissing
from automation_server.storage.blobstore import atomic_output, validate_key, validate_prefix


class MemoryBlobStore:
    """Blobs in a dict guarded by a lock; bytes objects are immutable, so
    readers always get a whole object."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return "in-memory blob store"

    def ping(self) -> None:
        return None

    def put(self, key: str, data: bytes) -> None:
        validate_key(key)
        blob = bytes(data)  # copy, so later changes to a bytearray do not leak in
        with self._lock:
            self._objects[key] = blob

    def put_file(self, key: str, path: Path) -> None:
        validate_key(key)
        self.put(key, Path(path).read_bytes())

    def get(self, key: str) -> bytes:
        validate_key(key)
        with self._lock:
            blob = self._objects.get(key)
        if blob is None:
            raise BlobMissing(f"no blob stored under {key!r}")
        return blob

    def get_to_file(self, key: str, path: Path) -> None:
        blob = self.get(key)
        with atomic_output(path) as out:
            out.write(blob)

    def exists(self, key: str) -> bool:
        validate_key(key)
        with self._lock:
            return key in self._objects

    def size(self, key: str) -> int:
        return len(self.get(key))

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        return iter(keys)
