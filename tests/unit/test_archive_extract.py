"""safe_extract: what lands on disk, with which modes, and what never does."""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import subprocess
import tarfile
import uuid

import pytest

from automation_server.errors import InvalidArchive, SandboxError
from automation_server.storage.archive import ArchiveLimits, safe_extract, validate_archive
from tests.support import skip_or_fail
from tests.unit.archive_builders import (
    END_OF_ARCHIVE,
    MiB,
    char_device,
    directory,
    fifo,
    file,
    gz,
    hardlink,
    header_block,
    sample_project,
    symlink,
    tar_bytes,
    targz,
)


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def snapshot(root):
    """Every path under root with its type and content or link target."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            found[rel] = ("dir", None)
        else:
            found[rel] = ("file", path.read_bytes())
    return found


@pytest.fixture
def box(tmp_path):
    """A directory holding a sentinel tree next to where archives get extracted."""
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_bytes(b"untouched")
    return tmp_path


# --- what is extracted ------------------------------------------------------------


def test_extracts_files_links_and_directories(tmp_path):
    data = targz(sample_project())
    dest = tmp_path / "work"

    info = safe_extract(data, dest)

    assert info == validate_archive(data)
    assert snapshot(dest) == {
        "lib": ("dir", None),
        "lib/util.py": ("link", "../src/util.py"),
        "run.sh": ("file", b"#!/bin/sh\nexec python3 src/main.py\n"),
        "src": ("dir", None),
        "src/main.py": ("file", b"print('hello')\n"),
        "src/util.py": ("file", b"def add(a, b):\n    return a + b\n" * 20),
    }
    assert (dest / "lib" / "util.py").read_bytes() == (dest / "src" / "util.py").read_bytes()


@pytest.mark.parametrize("kind", ["bytes", "stream", "path"])
def test_accepts_bytes_streams_and_paths(tmp_path, kind):
    data = targz([file("a/b.txt", b"content")])
    archive = tmp_path / "code.tar.gz"
    archive.write_bytes(data)
    source = {"bytes": data, "stream": io.BytesIO(data), "path": archive}[kind]

    safe_extract(source, tmp_path / "out")

    assert (tmp_path / "out" / "a" / "b.txt").read_bytes() == b"content"


def test_extracts_into_an_existing_empty_directory(tmp_path):
    dest = tmp_path / "empty"
    dest.mkdir()

    safe_extract(targz([file("a.py", b"a")]), dest)

    assert (dest / "a.py").read_bytes() == b"a"


def test_refuses_a_destination_that_is_not_empty(tmp_path):
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")

    with pytest.raises(SandboxError, match="not empty"):
        safe_extract(targz([file("a.py", b"a")]), dest)
    assert snapshot(dest) == {"mine.txt": ("file", b"keep me")}


# --- modes and owners ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("archived", "extracted"),
    [
        (0o4755, 0o755),  # setuid dropped, exec kept
        (0o2711, 0o755),  # setgid dropped
        (0o6777, 0o755),
        (0o644, 0o644),
        (0o600, 0o644),
        (0o010, 0o755),  # any execute bit makes it executable
        (0o1666, 0o644),  # sticky dropped, world-write dropped
        (0o000, 0o644),
    ],
    ids=lambda mode: f"{mode:04o}",
)
def test_normalises_file_modes(tmp_path, archived, extracted):
    safe_extract(targz([file("f", b"x", mode=archived)]), tmp_path / "out")

    assert mode_of(tmp_path / "out" / "f") == extracted


def test_normalises_directory_modes_including_implied_ones(tmp_path):
    old_umask = os.umask(0o077)  # os.makedirs would otherwise make 0o700 directories
    try:
        entries = [directory("sticky", mode=0o1777), directory("locked", mode=0o000)]
        safe_extract(targz([*entries, file("implied/deeper/f", b"x")]), tmp_path / "out")
    finally:
        os.umask(old_umask)
    out = tmp_path / "out"

    for name in ["", "sticky", "locked", "implied", "implied/deeper"]:
        assert mode_of(out / name) == 0o755, name


def test_ignores_owners_in_the_archive(tmp_path):
    entry = file("owned", b"x", uid=4242, gid=4242, uname="nobody-here", gname="root")

    safe_extract(targz([entry]), tmp_path / "out")

    owned = os.lstat(tmp_path / "out" / "owned")
    assert (owned.st_uid, owned.st_gid) == (os.getuid(), os.getgid())


def test_survives_absurd_modification_times(tmp_path):
    entries = [file("future", b"x", mtime=2**40), file("past", b"y", mtime=-(2**40))]

    safe_extract(targz(entries, tarfile.GNU_FORMAT), tmp_path / "out")

    assert (tmp_path / "out" / "future").read_bytes() == b"x"


# --- never outside, nothing left behind ------------------------------------------------

HOSTILE = {
    "absolute": [file("ok", b"1"), file("/tmp/evil-" + uuid.uuid4().hex, b"x")],
    "dotdot": [file("ok", b"1"), file("../sentinel/keep.txt", b"overwritten")],
    "symlink-absolute": [file("ok", b"1"), symlink("s", "/")],
    "symlink-out-then-write": [symlink("s", "../sentinel"), file("s/keep.txt", b"overwritten")],
    "symlink-inside-then-write": [directory("d"), symlink("s", "d"), file("s/x", b"x")],
    "symlink-chain-late": [
        file("ok", b"1"),
        symlink("esc", "sub/up/../sentinel"),
        symlink("sub/up", ".."),
    ],
    "hardlink-out": [file("ok", b"1"), hardlink("h", "../sentinel/keep.txt")],
    "device": [file("ok", b"1"), char_device("null")],
    "fifo": [file("ok", b"1"), fifo("pipe")],
    "duplicate-over-link": [file("ok", b"1"), symlink("x", "ok"), file("x", b"through the link")],
}


@pytest.mark.parametrize("entries", HOSTILE.values(), ids=HOSTILE.keys())
def test_never_writes_outside_destination(box, entries):
    before = snapshot(box)
    dest = box / "dest"

    with pytest.raises(InvalidArchive):
        safe_extract(targz(entries, tarfile.GNU_FORMAT), dest)

    assert not dest.exists()
    assert snapshot(box) == before


def test_removes_partial_extraction_when_a_late_member_is_bad(tmp_path):
    entries = [file(f"pkg/mod{i}.py", b"x = 1\n" * 100) for i in range(50)]
    dest = tmp_path / "out"

    with pytest.raises(InvalidArchive, match=re.escape("member 'zz/../x'")):
        safe_extract(targz([*entries, file("zz/../x", b"")]), dest)

    assert not dest.exists()


def test_empties_but_keeps_a_given_directory_on_failure(tmp_path):
    dest = tmp_path / "given"
    dest.mkdir()

    with pytest.raises(InvalidArchive):
        safe_extract(targz([file("a/b.py", b"b"), file("c.py", b"c"), hardlink("d", "c.py")]), dest)

    assert dest.is_dir() and list(dest.iterdir()) == []


@pytest.mark.parametrize(
    "data",
    [
        gz(tar_bytes([file("a.py", b"a" * 5000)])[:2048]),  # tar data ends mid-member
        targz([file("a.py", b"a" * 5000)])[:-12],  # gzip ends early
        gz(tar_bytes([file("a.py", b"a")]) + b"junk"),  # garbage after the end
    ],
    ids=["truncated-tar", "truncated-gzip", "trailing-junk"],
)
def test_removes_partial_extraction_of_a_broken_archive(tmp_path, data):
    with pytest.raises(InvalidArchive):
        safe_extract(data, tmp_path / "out")

    assert not (tmp_path / "out").exists()


def test_limits_apply_while_extracting(tmp_path):
    data = targz([file("a", b"1"), file("b", b"2"), file("c", b"3")])

    with pytest.raises(InvalidArchive, match="more than 2 entries"):
        safe_extract(data, tmp_path / "out", ArchiveLimits(max_members=2))
    assert not (tmp_path / "out").exists()


def test_path_too_long_for_the_file_system_is_an_invalid_archive(tmp_path):
    name = "/".join(["d" * 254] * 16) + "/f"  # 4081 bytes: allowed, but not below tmp_path
    dest = tmp_path / "out"

    with pytest.raises(InvalidArchive, match="too long for the file system"):
        safe_extract(targz([file(name, b"x")]), dest)
    assert not dest.exists()


# --- full disk ----------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT], ids=["ENOSPC", "EDQUOT"])
def test_full_disk_is_a_sandbox_error_and_is_cleaned_up(tmp_path, monkeypatch, code):
    # Simulated where the bytes hit the disk: tarfile's open() of each member's
    # target file; writes fail once a few KiB are in, as on a full file system.
    real_open = tarfile.bltn_open  # type: ignore[attr-defined]

    class FillingUp(io.FileIO):
        def write(self, data):
            if self.tell() + len(data) > 4096:
                raise OSError(code, os.strerror(code))
            return super().write(data)

    def open_for_write(path, mode="r", *args, **kwargs):
        return FillingUp(path, "wb") if mode == "wb" else real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(tarfile, "bltn_open", open_for_write)
    dest = tmp_path / "out"

    with pytest.raises(SandboxError) as caught:
        safe_extract(targz([file("small", b"s"), file("big.bin", bytes(64 * 1024))]), dest)

    assert str(caught.value) == "no space left on device while extracting the tarball"
    assert not dest.exists()


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 256 KiB tmpfs, when running as root where mount works; else skip."""
    if os.geteuid() != 0:
        skip_or_fail("mounting a tmpfs needs root")
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_full_tmpfs_is_a_sandbox_error_and_is_cleaned_up(tiny_tmpfs):
    noise = os.urandom(MiB)  # incompressible, to be sure it is really written
    dest = tiny_tmpfs / "out"

    with pytest.raises(SandboxError, match="no space left on device"):
        safe_extract(targz([file("a.py", b"a"), file("noise.bin", noise)]), dest)

    assert not dest.exists()
    assert list(tiny_tmpfs.iterdir()) == []


def test_extraction_stops_at_a_declared_size_bigger_than_the_data(tmp_path):
    info = tarfile.TarInfo("liar.bin")
    info.size = 10 * MiB  # the header promises more than the stream holds
    data = gz(header_block(info) + b"short" + END_OF_ARCHIVE)

    with pytest.raises(InvalidArchive):
        safe_extract(data, tmp_path / "out")
    assert not (tmp_path / "out").exists()
