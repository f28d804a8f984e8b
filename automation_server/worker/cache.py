"""A local, size-bounded cache of tarballs, verified by digest.

Workers run the same variants over and over; fetching each tarball once from
the object store and keeping it on local disk takes the object store off the
hot path. Files are named by digest and checked against it when fetched;
least recently used ones are evicted past the size limit.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from automation_server.errors import DigestMismatch
from automation_server.storage.blobs import blob_key
from automation_server.storage.blobstore import BlobStore


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class TarballCache:
    def __init__(self, root: Path, store: BlobStore, max_bytes: int) -> None:
        self._root = root
        self._store = store
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def get(self, digest: str) -> Path:
        """A local path holding the verified bytes of ``digest``."""
        path = self._root / digest.replace(":", "-")
        with self._lock:
            if path.exists():
                os.utime(path)  # mark as recently used
                return path
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        try:
            self._store.get_to_file(blob_key(digest), tmp)
            actual = file_digest(tmp)
            if actual != digest:
                raise DigestMismatch(
                    f"tarball {digest} is corrupt in the object store (its bytes hash to {actual})"
                )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self._evict(keep=path)
        return path

    def _evict(self, keep: Path) -> None:
        with self._lock:
            files = [p for p in self._root.iterdir() if p.is_file() and p.suffix != ".tmp"]
            total = sum(p.stat().st_size for p in files)
            for p in sorted(files, key=lambda f: f.stat().st_mtime):
                if total <= self._max_bytes:
                    break
                if p != keep:
                    total -= p.stat().st_size
                    p.unlink(missing_ok=True)
