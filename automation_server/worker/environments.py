"""Where a variant's environment is built and kept: once per digest, on the worker's disk.

``use(digest)`` yields the directory of the installed packages, building it
the first time: the lock (from the object store, verified by its sha256) is
installed with uv into a temporary directory (``--require-hashes``,
``--no-deps``, wheels only: no package code runs), a manifest of every
file's sha256 is written, and the directory is renamed into place, so an
incomplete build is never used. An exclusive ``flock`` on ``<digest>.lock``
makes two slots or two worker processes build a digest once; runs hold a
shared lock on it while they use the environment, so eviction (least
recently used first, past ``AUTOMATION_ENV_CACHE_MB``) never removes one in
use. Each process checks an environment against its manifest the first
time it uses it; a damaged one is removed and built again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from automation_server.environments.lock import LockError, parse_lock
from automation_server.environments.resolver import PackageSources, find_uv
from automation_server.errors import AutomationError, DigestMismatch
from automation_server.logging import get_logger
from automation_server.storage.blobs import env_lock_key, verify_digest
from automation_server.storage.blobstore import BlobStore

log = get_logger("environments")

MANIFEST = "manifest.json"
SITE = "site"  # the installed packages, mounted read-only into runs
LAST_USED = "last-used"
OUTPUT_TAIL = 4000


class EnvironmentBuildError(AutomationError):
    """The environment could not be built (the installer's message says why)."""

    code = "environment_build_failed"


class EnvironmentCache:
    def __init__(
        self,
        root: Path,
        store: BlobStore,
        *,
        python: Path,
        sources: PackageSources,
        max_bytes: int,
        timeout_s: float = 600.0,
        uv: str | None = None,
    ) -> None:
        self._root = root
        self._store = store
        self._python = python
        self._sources = sources
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._uv = uv
        self._verified: set[str] = set()
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)  # the sandbox user reads the packages through bind mounts

    def path_of(self, digest: str) -> Path:
        return self._root / digest.removeprefix("sha256:")

    @contextlib.contextmanager
    def use(self, digest: str) -> Iterator[Path]:
        """The installed packages of ``digest``, kept from eviction while in use."""
        entry = self.path_of(digest)
        with open(self._root / f"{entry.name}.lock", "a+") as handle:
            built = False
            for _ in range(5):
                fcntl.flock(handle, fcntl.LOCK_SH)
                if self._ready(digest, entry):
                    break
                fcntl.flock(handle, fcntl.LOCK_UN)
                fcntl.flock(handle, fcntl.LOCK_EX)
                if not self._ready(digest, entry):
                    self._build(digest, entry)
                    built = True
                fcntl.flock(handle, fcntl.LOCK_UN)
            else:
                raise EnvironmentBuildError(f"environment {digest} kept disappearing; retry")
            try:
                (entry / LAST_USED).touch()
                yield entry / SITE
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        if built:
            self._evict(keep=entry)

    # ---- checking ---------------------------------------------------------------

    def _ready(self, digest: str, entry: Path) -> bool:
        """Complete, and checked against its manifest once in this process."""
        if not (entry / MANIFEST).is_file():
            return False
        with self._lock:
            if digest in self._verified:
                return True
        problem = _check_manifest(entry)
        if problem is not None:
            log.warning("environment.damaged", digest=digest, problem=problem)
            shutil.rmtree(entry, ignore_errors=True)
            return False
        with self._lock:
            self._verified.add(digest)
        return True

    # ---- building ---------------------------------------------------------------

    def _build(self, digest: str, entry: Path) -> None:
        started = time.monotonic()
        lock_text = self._lock_text(digest)
        tmp = Path(tempfile.mkdtemp(prefix=f"build-{entry.name[:12]}-", dir=self._root))
        try:
            (tmp / "lock.txt").write_text(lock_text)
            self._install(tmp / "lock.txt", tmp / SITE, digest)
            _write_manifest(tmp, digest)
            _make_readable(tmp)
            shutil.rmtree(entry, ignore_errors=True)
            os.rename(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        with self._lock:
            self._verified.add(digest)
        log.info("environment.built", digest=digest, seconds=round(time.monotonic() - started, 2))

    def _lock_text(self, digest: str) -> str:
        data = self._store.get(env_lock_key(digest))
        try:
            verify_digest(data, digest)
        except DigestMismatch as exc:
            raise EnvironmentBuildError(f"the lock of environment {digest}: {exc.detail}") from exc
        try:
            return parse_lock(data.decode()).install_text()
        except (LockError, UnicodeDecodeError) as exc:
            raise EnvironmentBuildError(
                f"the lock of environment {digest} is invalid: {exc}"
            ) from exc

    def _install(self, lock: Path, target: Path, digest: str) -> None:
        argv = [
            self._uv or find_uv(), "pip", "install", "--target", str(target),
            "--requirement", str(lock), "--require-hashes", "--no-deps",
            "--only-binary", ":all:", "--compile-bytecode", "--no-config", "--quiet",
            "--link-mode", "copy",  # files of its own, never hard links into the uv cache
            "--python", str(self._python),
            "--cache-dir", str(self._root.parent / "uv-cache"), *self._sources.args(),
        ]  # fmt: skip
        env = {"PATH": "/usr/bin:/bin", "HOME": str(lock.parent)}
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR"):
            if name in os.environ:
                env[name] = os.environ[name]
        try:
            done = subprocess.run(
                argv, env=env, cwd=lock.parent, capture_output=True, text=True,
                timeout=self._timeout_s, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise EnvironmentBuildError(
                f"installing environment {digest} took over {self._timeout_s:g} s"
            ) from None
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()[-OUTPUT_TAIL:]
            raise EnvironmentBuildError(
                f"the environment {digest} could not be built; the installer said: {output}"
            )

    # ---- eviction ---------------------------------------------------------------

    def _evict(self, keep: Path) -> None:
        """Least recently used first, past the size bound; never one a run holds."""
        entries = [p for p in self._root.iterdir() if (p / MANIFEST).is_file()]
        sizes = {p: _manifest_bytes(p) for p in entries}
        total = sum(sizes.values())
        for entry in sorted(entries, key=_last_used):
            if total <= self._max_bytes:
                return
            if entry == keep:
                continue
            if self._remove_if_idle(entry):
                total -= sizes[entry]

    def _remove_if_idle(self, entry: Path) -> bool:
        with open(self._root / f"{entry.name}.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a run is using it
            shutil.rmtree(entry, ignore_errors=True)
            with self._lock:
                self._verified.discard(f"sha256:{entry.name}")
            log.info("environment.evicted", digest=f"sha256:{entry.name}")
            return True


def _files(site: Path) -> Iterator[Path]:
    for directory, _dirs, names in os.walk(site):
        for name in names:
            yield Path(directory) / name


def _write_manifest(entry: Path, digest: str) -> None:
    site = entry / SITE
    files = {
        str(p.relative_to(site)): _sha256(p) for p in sorted(_files(site)) if not p.is_symlink()
    }
    size = sum((site / name).stat().st_size for name in files)
    manifest = {"digest": digest, "bytes": size, "files": files}
    (entry / MANIFEST).write_text(json.dumps(manifest, sort_keys=True))


def _check_manifest(entry: Path) -> str | None:
    """Why the installed files differ from the manifest, or None."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        files: dict[str, str] = manifest["files"]
    except (OSError, ValueError, KeyError) as exc:
        return f"unreadable manifest ({exc})"
    site = entry / SITE
    present = {str(p.relative_to(site)) for p in _files(site) if not p.is_symlink()}
    if present != set(files):
        return f"{len(set(files) ^ present)} file(s) added or missing"
    for name, expected in files.items():
        if _sha256(site / name) != expected:
            return f"{name} does not match its sha256"
    return None


def _manifest_bytes(entry: Path) -> int:
    try:
        return int(json.loads((entry / MANIFEST).read_text())["bytes"])
    except (OSError, ValueError, KeyError):
        return 0


def _last_used(entry: Path) -> float:
    with contextlib.suppress(OSError):
        return (entry / LAST_USED).stat().st_mtime
    return 0.0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _make_readable(entry: Path) -> None:
    """Directories 0755, files 0644 (0755 if executable): the sandbox user only reads."""
    for directory, _dirs, names in os.walk(entry):
        os.chmod(directory, 0o755)  # noqa: S103 - read and search only, nobody else writes
        for name in names:
            path = Path(directory) / name
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            path.chmod(0o755 if mode & 0o111 else 0o644)
