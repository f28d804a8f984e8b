"""The worker's local tarball cache (worker/cache.py): verified, bounded, and safe
while other threads download into the same directory."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from automation_server.errors import DigestMismatch
from automation_server.storage.blobs import blob_key
from automation_server.storage.memory import MemoryBlobStore
from automation_server.worker.cache import IN_USE_S, TarballCache


def _put(store: MemoryBlobStore, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    store.put(blob_key(digest), data)
    return digest


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_tarball_is_fetched_once_and_served_from_disk(tmp_path: Path) -> None:
    store = MemoryBlobStore()
    digest = _put(store, b"x" * 100)
    cache = TarballCache(tmp_path / "cache", store, max_bytes=10_000)
    first = cache.get(digest)
    store.delete(blob_key(digest))  # a second get must not need the store
    assert cache.get(digest) == first
    assert first.read_bytes() == b"x" * 100


def test_corrupt_bytes_in_the_store_are_refused_and_not_kept(tmp_path: Path) -> None:
    store = MemoryBlobStore()
    digest = "sha256:" + hashlib.sha256(b"real").hexdigest()
    store.put(blob_key(digest), b"tampered")
    cache = TarballCache(tmp_path / "cache", store, max_bytes=10_000)
    with pytest.raises(DigestMismatch, match="corrupt"):
        cache.get(digest)
    assert list((tmp_path / "cache").iterdir()) == []


def test_least_recently_used_tarballs_go_past_the_size_limit(tmp_path: Path) -> None:
    store = MemoryBlobStore()
    digests = [_put(store, bytes([i]) * 400) for i in range(3)]
    cache = TarballCache(tmp_path / "cache", store, max_bytes=1000)
    first, second = (cache.get(d) for d in digests[:2])
    _age(first, IN_USE_S + 20)
    _age(second, IN_USE_S + 10)
    third = cache.get(digests[2])  # 1200 bytes > 1000: the oldest goes
    assert not first.exists()
    assert second.exists() and third.exists()


def test_a_tarball_handed_out_recently_is_kept_even_over_the_limit(tmp_path: Path) -> None:
    """get() returns a path that the run then extracts: evicting it meanwhile
    would fail a run that had nothing wrong with it."""
    store = MemoryBlobStore()
    digests = [_put(store, bytes([i]) * 600) for i in range(2)]
    cache = TarballCache(tmp_path / "cache", store, max_bytes=1000)
    first = cache.get(digests[0])
    second = cache.get(digests[1])
    assert first.exists() and second.exists()


def test_other_threads_downloads_in_progress_do_not_break_eviction(tmp_path: Path) -> None:
    """A download in progress is a ``.tmp`` file (and the store's ``.part`` beside it)
    that is renamed or removed at any moment: eviction must neither count it nor
    fail when an entry it listed is gone before it looks at it."""
    root = tmp_path / "cache"
    store = MemoryBlobStore()
    digest = _put(store, b"y" * 600)
    cache = TarballCache(root, store, max_bytes=100)
    (root / "sha256-abc.140.tmp").write_bytes(b"z" * 5000)
    (root / "sha256-abc.140.tmp.q1w2e3.part").write_bytes(b"z" * 5000)
    real_iterdir = Path.iterdir

    def listing_a_vanished_entry(self: Path):  # type: ignore[no-untyped-def]
        yield from real_iterdir(self)
        if self == root:  # entries that another thread removes right after they are listed
            for name in ("sha256-evicted-meanwhile", "sha256-renamed-meanwhile.9.tmp.zz.part"):
                (root / name).write_bytes(b"w" * 5000)
                yield root / name
                (root / name).unlink()

    Path.iterdir = listing_a_vanished_entry  # type: ignore[method-assign]
    try:
        path = cache.get(digest)
    finally:
        Path.iterdir = real_iterdir  # type: ignore[method-assign]
    assert path.read_bytes() == b"y" * 600
    assert (root / "sha256-abc.140.tmp").exists()  # not the cache's to evict
    assert (root / "sha256-abc.140.tmp.q1w2e3.part").exists()


def test_concurrent_first_gets_of_many_tarballs_all_succeed(tmp_path: Path) -> None:
    store = MemoryBlobStore()
    digests = [_put(store, bytes([i]) * 300) for i in range(24)]
    cache = TarballCache(tmp_path / "cache", store, max_bytes=1000)
    errors: list[BaseException] = []

    def fetch(part: list[str]) -> None:
        try:
            for d in part:
                assert cache.get(d).read_bytes()[:1] == bytes([digests.index(d)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(digests[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
