"""The sandbox's prepared /etc: what it holds, that it follows the host, and who owns it."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from automation_server.sandbox import etcdir
from automation_server.sandbox.etcdir import SandboxEtc

ENTRIES = ["/etc/ld.so.conf", "/etc/ssl/certs", "/etc/localtime", "/etc/missing.conf"]


def _files(network: str) -> dict[str, bytes]:
    files = {"/etc/passwd": b"sandbox:x:1000:1000::/tmp:/bin/sh\n"}
    if network == "egress":
        files["/etc/resolv.conf"] = b"nameserver 10.0.2.3\n"
    return files


@pytest.fixture
def host(tmp_path: Path) -> Path:
    etc = tmp_path / "host-etc"
    (etc / "ssl" / "certs").mkdir(parents=True)
    (etc / "ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    (etc / "ssl" / "certs" / "bundle.crt").write_text("CERT A\n")
    os.symlink("bundle.crt", etc / "ssl" / "certs" / "abc.0")
    os.symlink("/usr/share/zoneinfo/Etc/UTC", etc / "localtime")
    (tmp_path / "stub-resolv.conf").write_text("nameserver 192.0.2.53\n")
    os.symlink(tmp_path / "stub-resolv.conf", etc / "resolv.conf")
    (etc / "shadow").write_text("root:secret\n")
    return etc


def _make(tmp_path: Path, host: Path) -> SandboxEtc:
    return SandboxEtc(tmp_path / "state" / "etc", ENTRIES, _files, host_etc=host)


def test_holds_the_named_entries_and_the_synthesised_files_only(tmp_path: Path, host: Path) -> None:
    etc = _make(tmp_path, host)
    made = etc.path("none")
    assert sorted(p.relative_to(made).as_posix() for p in made.rglob("*")) == [
        "ld.so.conf", "localtime", "passwd", "ssl", "ssl/certs",
    ]  # fmt: skip
    assert (made / "passwd").read_text().startswith("sandbox:x:1000")
    assert os.readlink(made / "localtime") == "/usr/share/zoneinfo/Etc/UTC"
    # Directories are the host's own, bound on an empty mount point of the copy.
    assert list((made / "ssl" / "certs").iterdir()) == []
    assert etc.binds("none") == [(str(host / "ssl" / "certs"), "/etc/ssl/certs")]
    # Readable and traversable by the run's uid, writable by nobody but the worker.
    assert stat.S_IMODE(made.stat().st_mode) == 0o755
    assert stat.S_IMODE(made.parent.stat().st_mode) == 0o711
    assert stat.S_IMODE((made / "passwd").stat().st_mode) == 0o644
    assert stat.S_IMODE((made / "ld.so.conf").stat().st_mode) == 0o644
    assert stat.S_IMODE((made / "ssl" / "certs").stat().st_mode) == 0o755


def test_network_modes_get_their_own_resolver(tmp_path: Path, host: Path) -> None:
    etc = _make(tmp_path, host)
    assert not (etc.path("none") / "resolv.conf").exists()
    assert (etc.path("egress") / "resolv.conf").read_text() == "nameserver 10.0.2.3\n"
    host_copy = etc.path("host") / "resolv.conf"
    assert not host_copy.is_symlink(), "the host's resolver is copied as the file it points to"
    assert host_copy.read_text() == "nameserver 192.0.2.53\n"


def test_unchanged_host_reuses_the_copy(tmp_path: Path, host: Path) -> None:
    etc = _make(tmp_path, host)
    assert etc.path("none") == etc.path("none")


def test_a_changed_host_entry_makes_a_fresh_copy_and_keeps_the_old_one_a_while(
    tmp_path: Path, host: Path
) -> None:
    etc = _make(tmp_path, host)
    first = etc.path("none")
    time.sleep(0.01)
    # What a package update does: a new file renamed over the old one.
    (host / "ld.so.conf.new").write_text("include /opt/lib.conf\n")
    (host / "ld.so.conf.new").rename(host / "ld.so.conf")
    second = etc.path("none")
    assert second != first
    assert (second / "ld.so.conf").read_text() == "include /opt/lib.conf\n"
    assert (first / "ld.so.conf").read_text().startswith("include /etc/ld.so.conf.d"), (
        "a run handed the old copy just before may still be binding it"
    )


def test_a_changed_host_resolver_reaches_host_runs(tmp_path: Path, host: Path) -> None:
    etc = _make(tmp_path, host)
    etc.path("host")
    time.sleep(0.01)
    (tmp_path / "stub-resolv.conf").write_text("nameserver 198.51.100.1\n")
    assert (etc.path("host") / "resolv.conf").read_text() == "nameserver 198.51.100.1\n"


def test_superseded_copies_go_after_the_grace_period(
    tmp_path: Path, host: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(etcdir, "SUPERSEDED_KEEP_S", 0.0)
    etc = _make(tmp_path, host)
    first = etc.path("none")
    time.sleep(0.01)
    (host / "ld.so.conf").write_text("changed\n")
    etc.path("none")
    (host / "ld.so.conf").write_text("changed again, longer\n")
    etc.path("none")
    assert not first.exists()


def test_each_process_keeps_its_own_and_dead_owners_are_cleared(tmp_path: Path, host: Path) -> None:
    root = tmp_path / "state" / "etc"
    root.mkdir(parents=True)
    dead = root / "999999999-left"  # no such pid
    dead.mkdir()
    etc = _make(tmp_path, host)
    made = etc.path("none")
    assert not dead.exists()
    assert made.parent.name.startswith(f"{os.getpid()}-")
    other = _make(tmp_path, host)  # another worker of the same process tree
    assert other.path("none").parent != made.parent
    etc.close()
    assert not made.exists() and other.path("none").exists()
