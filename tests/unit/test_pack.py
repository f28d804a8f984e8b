"""``automation_sdk.pack``: reproducible tarballs that the server accepts."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest
from automation_sdk.errors import PackError
from automation_sdk.pack import MTIME, digest_of, entries, pack

from automation_server.storage.archive import ArchiveLimits, validate_archive


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def _read(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return _tree(
        tmp_path / "proj",
        {"main.py": "print('hi')\n", "lib/util.py": "X = 1\n", "data/in.json": "{}"},
    )


def test_same_directory_gives_the_same_bytes_twice(project: Path) -> None:
    assert pack(project) == pack(project)


def test_digest_ignores_mtimes_owners_and_umask_noise(project: Path) -> None:
    before = digest_of(pack(project))
    for path in project.rglob("*"):
        os.utime(path, (1_000_000, 1_234_567_890))
    (project / "main.py").chmod(0o600)  # no exec bit: still packed as 0o644
    assert digest_of(pack(project)) == before


def test_content_change_changes_the_digest(project: Path) -> None:
    before = digest_of(pack(project))
    (project / "lib" / "util.py").write_text("X = 2\n")
    assert digest_of(pack(project)) != before


def test_same_files_in_another_place_give_the_same_digest(tmp_path: Path) -> None:
    files = {"b.py": "b", "a/z.py": "z", "a/b/c.txt": "c"}
    one = _tree(tmp_path / "one", files)
    two = _tree(tmp_path / "two", dict(reversed(list(files.items()))))
    assert pack(one) == pack(two)


def test_headers_are_normalised(project: Path) -> None:
    (project / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (project / "run.sh").chmod(0o700)
    data = pack(project)
    members = _members(data)
    assert list(members) == sorted(members, key=lambda n: n.split("/"))
    for m in members.values():
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (MTIME, 0, 0, "", "")
        assert not m.name.startswith(("./", "/"))
    assert members["run.sh"].mode == 0o755
    assert members["main.py"].mode == 0o644
    assert members["lib"].isdir() and members["lib"].mode == 0o755
    assert _read(data, "lib/util.py") == b"X = 1\n"


def test_gzip_header_has_no_time_and_no_name(project: Path) -> None:
    data = pack(project)
    assert data[:2] == b"\x1f\x8b"
    assert data[4:8] == b"\0\0\0\0"  # MTIME field
    assert data[3] & 0x08 == 0  # FNAME flag unset
    assert gzip.decompress(data)  # and it is valid gzip


def test_automationignore_is_honoured(project: Path) -> None:
    _tree(
        project,
        {
            ".automationignore": "*.log\nbuild/\nsecrets.env\n!keep.log\n",
            "debug.log": "x",
            "keep.log": "kept",
            "build/out.bin": "x",
            "lib/build/deep.txt": "x",
            "secrets.env": "TOKEN=1",
        },
    )
    names = set(_members(pack(project)))
    assert {"main.py", "lib/util.py", "keep.log", ".automationignore"} <= names
    assert not names & {"debug.log", "build", "build/out.bin", "secrets.env"}
    assert not any(n.startswith("lib/build") for n in names)


def test_git_pycache_and_pyc_are_always_skipped(project: Path) -> None:
    _tree(
        project,
        {
            ".git/config": "[core]",
            "__pycache__/main.cpython-311.pyc": "x",
            "lib/__pycache__/util.cpython-311.pyc": "x",
            "lib/old.pyc": "x",
            ".automationignore": "!*.pyc\n!.git/\n",  # cannot be re-included
        },
    )
    names = set(_members(pack(project)))
    assert not [n for n in names if ".git" in n.split("/") or n.endswith(".pyc")]
    assert not [n for n in names if "__pycache__" in n]


def test_ignored_files_do_not_change_the_digest(project: Path) -> None:
    (project / ".automationignore").write_text("*.tmp\n")
    before = digest_of(pack(project))
    (project / "scratch.tmp").write_text("changes all the time")
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert digest_of(pack(project)) == before


def test_symlink_inside_the_directory_is_packed_as_a_link(project: Path) -> None:
    (project / "current.py").symlink_to("main.py")
    (project / "shared").symlink_to("lib", target_is_directory=True)
    members = _members(pack(project))
    assert members["current.py"].issym() and members["current.py"].linkname == "main.py"
    assert members["shared"].issym() and members["shared"].linkname == "lib"
    assert "shared/util.py" not in members  # the link is not followed


def test_symlink_leaving_the_directory_is_refused(project: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    (project / "lib" / "leak").symlink_to("../../outside.txt")
    with pytest.raises(PackError, match=r"lib/leak.*outside the directory"):
        pack(project)


def test_absolute_symlink_is_refused(project: Path) -> None:
    (project / "abs").symlink_to(project / "main.py")
    with pytest.raises(PackError, match="absolute"):
        pack(project)


def test_chain_of_links_leaving_the_directory_is_refused(project: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (project / "up").symlink_to(tmp_path / "elsewhere")  # absolute: refused on its own
    (project / ".automationignore").write_text("up\n")
    (project / "hop").symlink_to("up")  # relative, but through an (ignored) link that leaves
    with pytest.raises(PackError, match="hop"):
        pack(project)


def test_fifo_is_refused(project: Path) -> None:
    os.mkfifo(project / "pipe")
    with pytest.raises(PackError, match="pipe"):
        pack(project)


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="not a directory"):
        pack(tmp_path / "nope")


def test_entries_lists_what_is_packed_in_order(project: Path) -> None:
    names = [e.name for e in entries(project)]
    assert names == list(_members(pack(project)))


def test_server_accepts_the_archive_including_links(project: Path) -> None:
    (project / "current.py").symlink_to("main.py")
    (project / "lib" / "up.py").symlink_to("../main.py")
    data = pack(project)
    info = validate_archive(io.BytesIO(data), ArchiveLimits())
    assert info.files == 3  # regular files; the two links are accepted too
