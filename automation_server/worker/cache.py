"""A local, size-bounded cache of tarballs, verified by digest.

Workers run the same variants over and over; fetching each tarball once from
the object store and keeping it on local disk takes the object store off the
hot path. Files are named by digest and checked against it when fetched;
least recently used ones are evicted past the size limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from automation_server.errors import DigestMismatch
from automation_server.sandbox.owned_dirs import process_dir
from automation_server.storage.archive import ArchiveLimits, safe_extract
from automation_server.storage.blobs import blob_key
from automation_server.storage.blobstore import BlobStore


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


# A tarball handed out this recently may still be on its way into a run's
# workdir (get() returns a path, not an open file): eviction leaves it, even if
# the cache is over its size for that long.
IN_USE_S = 60.0


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
            cached = self._cached_files()
            total = sum(size for _, size, _ in cached)
            now = time.time()
            for path, size, used in sorted(cached, key=lambda entry: entry[2]):
                if total <= self._max_bytes:
                    break
                if path != keep and now - used >= IN_USE_S:
                    total -= size
                    path.unlink(missing_ok=True)

    def _cached_files(self) -> list[tuple[Path, int, float]]:
        """(path, size, mtime) of the finished tarballs; other threads' downloads in
        progress (``*.tmp`` and the store's ``*.part`` beside them) are not cache
        entries, and may be renamed or removed while this looks."""
        cached = []
        for path in self._root.iterdir():
            if ".tmp" in path.name or path.name.endswith(".part"):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                cached.append((path, st.st_size, st.st_mtime))
        return cached


class ExtractedTrees:
    """Extracted tarballs kept for executors that copy the workdir into each run.

    An executor that copies the working directory into the run's own space
    (bubblewrap with a per-run tmpfs) never exposes the source directory to
    the run, so a verified extraction can serve every run of a variant
    instead of one ``safe_extract`` per run. Trees live under a directory of
    this process (0700), are read only by the worker, are replaced atomically
    and are dropped least recently used beyond ``keep`` once no run uses them.
    """

    def __init__(self, root: Path, limits: ArchiveLimits, keep: int = 32) -> None:
        self._limits = limits
        self._keep = keep
        self._lock = threading.Lock()
        self._trees: OrderedDict[str, Path] = OrderedDict()
        self._users: dict[str, int] = {}
        self._extracting: dict[str, threading.Lock] = {}
        self._root = process_dir(root)

    @contextlib.contextmanager
    def use(self, digest: str, tarball: Path) -> Iterator[Path]:
        """The extracted tree of ``tarball`` (verified as ``digest``), for reading only."""
        path = self._acquire(digest, tarball)
        try:
            yield path
        finally:
            self._release(digest)

    def _acquire(self, digest: str, tarball: Path) -> Path:
        with self._lock:
            self._users[digest] = self._users.get(digest, 0) + 1
            gate = self._extracting.setdefault(digest, threading.Lock())
        try:
            with gate:
                with self._lock:
                    found = self._trees.get(digest)
                    if found is not None:
                        self._trees.move_to_end(digest)
                        return found
                target = self._root / digest.replace(":", "-")
                shutil.rmtree(target, ignore_errors=True)
                staging = Path(tempfile.mkdtemp(prefix=".x-", dir=self._root))
                try:
                    safe_extract(tarball, staging / "tree", self._limits)
                    (staging / "tree").rename(target)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
                with self._lock:
                    self._trees[digest] = target
                return target
        except BaseException:
            self._release(digest)
            raise

    def _release(self, digest: str) -> None:
        doomed: list[Path] = []
        with self._lock:
            self._users[digest] -= 1
            if self._users[digest] <= 0:
                del self._users[digest]
                self._extracting.pop(digest, None)
            unused = [d for d in self._trees if d not in self._users]
            while len(self._trees) > self._keep and unused:
                doomed.append(self._trees.pop(unused.pop(0)))
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)
