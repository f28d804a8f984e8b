"""Extracted tarballs shared by runs whose executor copies the workdir (worker/cache.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from automation_server.errors import InvalidArchive
from automation_server.storage.archive import DEFAULT_LIMITS
from automation_server.worker.cache import ExtractedTrees
from tests.unit.archive_builders import file, symlink, targz


def _tarball(tmp_path: Path, name: str, entries: list[object]) -> Path:
    path = tmp_path / f"{name}.tar.gz"
    path.write_bytes(targz(entries))  # type: ignore[arg-type]
    return path


def test_one_extraction_serves_every_run_of_a_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from automation_server.worker import cache

    calls: list[Path] = []
    real = cache.safe_extract

    def counting(source: Path, dest: Path, limits: object) -> object:
        calls.append(dest)
        return real(source, dest, limits)  # type: ignore[arg-type]

    monkeypatch.setattr(cache, "safe_extract", counting)
    trees = ExtractedTrees(tmp_path / "trees", DEFAULT_LIMITS)
    tarball = _tarball(tmp_path, "a", [file("main.py", b"print('ok')\n")])
    with trees.use("sha256:a", tarball) as first, trees.use("sha256:a", tarball) as second:
        assert first == second
        assert (first / "main.py").read_bytes() == b"print('ok')\n"
    with trees.use("sha256:a", tarball) as again:
        assert again == first
    assert len(calls) == 1
    root = next((tmp_path / "trees").iterdir())
    assert root.stat().st_mode & 0o777 == 0o700  # nobody else reads the shared trees
    trees.close()
    assert not root.exists()


def test_unused_trees_beyond_the_limit_are_dropped_oldest_first(tmp_path: Path) -> None:
    trees = ExtractedTrees(tmp_path / "trees", DEFAULT_LIMITS, keep=1)
    a = _tarball(tmp_path, "a", [file("a.py", b"a")])
    b = _tarball(tmp_path, "b", [file("b.py", b"b")])
    with trees.use("sha256:a", a) as tree_a:
        with trees.use("sha256:b", b) as tree_b:
            assert tree_a.exists() and tree_b.exists()  # both in use: both kept
        assert tree_a.exists() and not tree_b.exists()  # one allowed: the unused one went
    assert tree_a.exists()  # within the limit
    with trees.use("sha256:b", b) as tree:
        assert (tree / "b.py").read_bytes() == b"b"  # extracted again
    assert not tree_a.exists() and tree.exists()  # the least recently used went


def test_a_refused_archive_is_refused_every_time_and_leaves_nothing(tmp_path: Path) -> None:
    trees = ExtractedTrees(tmp_path / "trees", DEFAULT_LIMITS)
    bad = _tarball(tmp_path, "bad", [symlink("escape", "../../etc/passwd")])
    for _ in range(2):
        with pytest.raises(InvalidArchive), trees.use("sha256:bad", bad):
            pass
    root = next((tmp_path / "trees").iterdir())
    assert list(root.iterdir()) == []


def test_concurrent_first_uses_extract_once(tmp_path: Path) -> None:
    trees = ExtractedTrees(tmp_path / "trees", DEFAULT_LIMITS)
    tarball = _tarball(tmp_path, "c", [file(f"f{i}.py", b"x" * 1000) for i in range(50)])
    seen: list[Path] = []
    barrier = threading.Barrier(4)

    def one() -> None:
        barrier.wait()
        with trees.use("sha256:c", tarball) as tree:
            seen.append(tree)
            assert len(list(tree.iterdir())) == 50

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1 and len(seen) == 4


def test_trees_of_dead_worker_processes_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "trees"
    stale = root / "999999999-old"
    stale.mkdir(parents=True)
    (stale / "x").write_text("left behind")
    ExtractedTrees(root, DEFAULT_LIMITS)
    assert not stale.exists()
