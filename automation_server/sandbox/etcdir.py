"""The sandbox's ``/etc``: one prepared directory, bound read-only, and a few binds on it.

A program needs a handful of host ``/etc`` entries (the loader's cache, time
zone, CA certificates, protocol tables) and a user database of its own. Binding
each entry and feeding each synthesised file through a pipe cost bubblewrap
about 20 mounts per run, ~1.7 ms of a trivial run's 15 ms here. Instead the
executor keeps a copy of the file and symlink entries plus the synthesised
files in a directory of its own process under the sandbox's state (owned by
the worker, 0755, never writable by a run), one per network mode, and binds
that directory as ``/etc``. Directory entries (``ssl/certs``, ``alternatives``,
``ld.so.conf.d``: hundreds of links, slow to copy) are bound on top of it, so
they stay exactly the host's.

The copy follows the host: before each run the entries are ``lstat``-ed (a
few dozen microseconds) and a changed entry (a new ``resolv.conf`` for
``host`` runs, an updated loader cache) makes a fresh copy under a new name.
Older copies are removed a minute after they were superseded, long after any
run that was handed one has mounted it.
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
from collections.abc import Callable, Sequence
from pathlib import Path

from automation_server.errors import SandboxError
from automation_server.sandbox.owned_dirs import process_dir

# How long a superseded copy is kept for runs that were handed it just before.
SUPERSEDED_KEEP_S = 60.0

RESOLV = "/etc/resolv.conf"
Files = Callable[[str], dict[str, bytes]]  # network mode -> synthesised /etc files


class SandboxEtc:
    """Prepared ``/etc`` directories under ``root``, one per network mode."""

    def __init__(
        self, root: Path, entries: Sequence[str], files: Files, host_etc: Path = Path("/etc")
    ) -> None:
        # Entries are named as the sandbox sees them ("/etc/..."), read from host_etc.
        self._host_etc = host_etc
        self._entries = tuple(entries)
        self._files = files
        self._lock = threading.Lock()
        self._current: dict[str, tuple[str, Path]] = {}  # mode -> (signature, dir)
        self._superseded: list[tuple[float, Path]] = []
        self._source_lists: dict[str, list[tuple[str, str]]] = {}
        self._synthesised: dict[str, dict[str, bytes]] = {}
        self._dir = process_dir(root)
        self._dir.chmod(0o711)  # the run's uid binds from here: it must traverse

    def path(self, network: str) -> Path:
        """The directory to bind as the sandbox's ``/etc`` for a run with this network."""
        sources = self._sources(network)
        signature = _signature(sources, self._synthesised_files(network))
        with self._lock:
            found = self._current.get(network)
            if found is not None and found[0] == signature:
                return found[1]
            built = self._build(network, signature, sources)
            if found is not None and found[1] != built:
                self._superseded.append((time.monotonic(), found[1]))
            self._current[network] = (signature, built)
            self._drop_superseded()
            return built

    def _sources(self, network: str) -> list[tuple[str, str]]:
        """(host path, name inside) of each entry; a ``host`` run resolves names as the
        host does, so it gets the host's resolv.conf (followed). Worked out once per mode."""
        found = self._source_lists.get(network)
        if found is None:
            names = [*self._entries, RESOLV] if network == "host" else list(self._entries)
            found = [(str(self._host_etc / Path(n).relative_to("/etc")), n) for n in names]
            self._source_lists[network] = found
        return found

    def binds(self, network: str) -> list[tuple[str, str]]:
        """(host directory, path inside) to bind read-only on top of :meth:`path`'s
        directory, which holds an empty mount point for each."""
        return [
            (source, name)
            for source, name in self._sources(network)
            if os.path.isdir(source) and not os.path.islink(source)
        ]

    def _synthesised_files(self, network: str) -> dict[str, bytes]:
        found = self._synthesised.get(network)
        if found is None:
            found = self._synthesised[network] = self._files(network)
        return found

    def _build(self, network: str, signature: str, sources: list[tuple[str, str]]) -> Path:
        target = self._dir / f"{network}-{signature[:16]}"
        if target.is_dir():
            return target  # the host went back to an earlier content
        staging = Path(tempfile.mkdtemp(prefix=".etc-", dir=self._dir))
        try:
            for source, name in sources:
                _copy_entry(source, staging / Path(name).relative_to("/etc"), name == RESOLV)
            for name, content in self._synthesised_files(network).items():
                dest = staging / Path(name).relative_to("/etc")
                dest.write_bytes(content)
                dest.chmod(0o644)
            staging.chmod(0o755)
            staging.rename(target)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise SandboxError(f"cannot prepare the sandbox's /etc in {self._dir}: {exc}") from exc
        return target

    def _drop_superseded(self) -> None:
        now = time.monotonic()
        keep = []
        for since, path in self._superseded:
            if now - since < SUPERSEDED_KEEP_S:
                keep.append((since, path))
            else:
                shutil.rmtree(path, ignore_errors=True)
        self._superseded = keep

    def close(self) -> None:
        """Remove this process's copies (other workers of the host keep their own)."""
        with self._lock:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._current.clear()
            self._superseded.clear()


def _signature(sources: list[tuple[str, str]], files: dict[str, bytes]) -> str:
    """What the copy depends on: each entry's identity and times, and the synthesised text."""
    parts: list[object] = []
    for source, _ in sources:
        try:
            st = os.lstat(source)
        except OSError:
            parts.append(None)
            continue
        parts += [st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns]
        if stat.S_ISLNK(st.st_mode):
            # The target's times too: resolv.conf is often a link to a changing file.
            with contextlib.suppress(OSError):
                target = os.stat(source)
                parts += [target.st_ino, target.st_mtime_ns]
    parts.append(sorted(files.items()))
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _copy_entry(source: str, dest: Path, followed: bool) -> None:
    """Copy one host entry (a file or a symlink; a directory becomes an empty mount
    point) if it exists; ``followed``: a symlink is copied as the file it points to."""
    if not (os.path.exists(source) if followed else os.path.lexists(source)):
        return
    dest.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if followed:
        shutil.copyfile(source, dest)
    elif os.path.islink(source):
        os.symlink(os.readlink(source), dest)
    elif os.path.isdir(source):
        dest.mkdir(mode=0o755)  # a mount point: the host's directory is bound here
        dest.chmod(0o755)
    else:
        shutil.copyfile(source, dest)
        dest.chmod(0o644)
