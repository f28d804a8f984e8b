"""Object store on the local file system: the embedded default.

Every path is walked one directory at a time from an open descriptor of the
root with ``O_NOFOLLOW``, so a symbolic link planted inside the store can
never lead a read or write outside it (the root itself may be a link: that is
the operator's choice). Writes go to a temporary file in the key's directory
and are renamed into place, so readers see the old object or the new one,
never a partial one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from automation_server.errors import BlobMissing, Unavailable
from automation_server.storage.blobstore import atomic_output, validate_key, validate_prefix

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK so that opening a FIFO someone planted cannot hang the server;
# it has no effect on regular files.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Temporary names contain a backslash, which validate_key rejects: a temp file
# can neither collide with a key nor show up in a listing.
_TMP_MARK = "\\tmp-"
_COPY_CHUNK = 1024 * 1024
# "No object here" on read: missing, a file where a directory should be, a
# directory where the object should be, or a link we refuse to follow.
_ABSENT_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP})


class FilesystemBlobStore:
    """Blobs as files under ``root`` (created with mode 0o700)."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root).absolute()
        self._root.mkdir(mode=0o700, parents=True, exist_ok=True)

    @property
    def root(self) -> Path:
        return self._root

    def describe(self) -> str:
        return f"filesystem blob store at {self._root}"

    def ping(self) -> None:
        os.close(self._open_root())
        if not os.access(self._root, os.W_OK | os.X_OK):
            raise Unavailable(f"blob directory {self._root} is not writable; check its permissions")

    # -- writes ---------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        self._write(key, lambda out: out.write(data))

    def put_file(self, key: str, path: Path) -> None:
        # Open the source first: a missing source is the caller's error, not
        # the store's, so it must not turn into Unavailable.
        with open(path, "rb") as src:
            self._write(key, lambda out: shutil.copyfileobj(src, out, _COPY_CHUNK))

    def delete(self, key: str) -> None:
        try:
            with self._errors(key, "delete"), self._parent(key, create=False) as (dfd, name):
                os.unlink(name, dir_fd=dfd)
        except BlobMissing:
            return  # deleting a missing key is not an error
        # Empty directories are left behind on purpose: removing one could race
        # with a concurrent put that already holds it open, losing that write.

    def _write(self, key: str, fill: Callable[[BinaryIO], object]) -> None:
        tmp = f"{_TMP_MARK}{secrets.token_hex(8)}"
        with self._errors(key, "write"), self._parent(key, create=True) as (dfd, name):
            fd = os.open(tmp, _TMP_FLAGS, 0o600, dir_fd=dfd)
            try:
                with os.fdopen(fd, "wb") as out:
                    fill(out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
                raise
            # Persist the rename itself; cheap since the directory is open.
            os.fsync(dfd)

    # -- reads ----------------------------------------------------------------

    def get(self, key: str) -> bytes:
        with self._open_object(key) as src:
            return src.read()

    def get_to_file(self, key: str, path: Path) -> None:
        # Open the object before creating anything at ``path``, so a missing
        # key leaves the destination untouched.
        with self._open_object(key) as src, atomic_output(path) as out:
            shutil.copyfileobj(src, out, _COPY_CHUNK)

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except BlobMissing:
            return False
        return True

    def size(self, key: str) -> int:
        with self._errors(key, "read"), self._parent(key, create=False) as (dfd, name):
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            raise BlobMissing(f"no blob stored under {key!r}")
        return st.st_size

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        start = prefix.rpartition("/")[0]
        try:
            with self._errors(start or ".", "list"), self._directory(start) as fd:
                keys = sorted(_collect(fd, start, prefix))
        except BlobMissing:
            keys = []  # nothing was ever stored under this prefix
        return iter(keys)

    def _open_object(self, key: str) -> BinaryIO:
        with self._errors(key, "read"), self._parent(key, create=False) as (dfd, name):
            fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise BlobMissing(f"no blob stored under {key!r}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    # -- path walking ---------------------------------------------------------

    def _open_root(self) -> int:
        try:
            return os.open(self._root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise Unavailable(
                f"blob directory {self._root} cannot be opened ({exc.strerror}); "
                "check AUTOMATION_DATA_DIR and that the directory exists"
            ) from exc

    @contextlib.contextmanager
    def _parent(self, key: str, *, create: bool) -> Iterator[tuple[int, str]]:
        """Yield an open descriptor of the key's directory and the key's last name."""
        validate_key(key)
        dirs, _, name = key.rpartition("/")
        with self._directory(dirs, create=create) as dfd:
            yield dfd, name

    @contextlib.contextmanager
    def _directory(self, rel: str, *, create: bool = False) -> Iterator[int]:
        """Yield an open descriptor of directory ``rel`` (``""`` is the root)."""
        fd = self._open_root()
        try:
            for name in rel.split("/") if rel else ():
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o700, dir_fd=fd)
                parent, fd = fd, -1
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
                finally:
                    os.close(parent)
            yield fd
        finally:
            if fd >= 0:
                os.close(fd)

    @contextlib.contextmanager
    def _errors(self, key: str, action: str) -> Iterator[None]:
        """Turn OS errors into BlobMissing (reads) or Unavailable (everything else)."""
        try:
            yield
        except OSError as exc:
            if action != "write" and exc.errno in _ABSENT_ERRNOS:
                raise BlobMissing(f"no blob stored under {key!r}") from exc
            raise Unavailable(
                f"blob store at {self._root}: cannot {action} {key!r} ({exc.strerror}); "
                "check free space, permissions, and that no link or directory is in the way"
            ) from exc


def _may_hold(directory: str, prefix: str) -> bool:
    """Whether keys under ``directory/`` can start with ``prefix``."""
    head = directory + "/"
    return head.startswith(prefix) or prefix.startswith(head)


def _collect(dfd: int, rel: str, prefix: str) -> Iterator[str]:
    """Keys starting with ``prefix`` under the open directory ``rel``, without links."""
    with os.scandir(dfd) as entries:
        for entry in entries:
            if _TMP_MARK in entry.name:
                continue
            key = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_file(follow_symlinks=False):
                if key.startswith(prefix):
                    yield key
            elif entry.is_dir(follow_symlinks=False) and _may_hold(key, prefix):
                yield from _collect_subdir(dfd, entry.name, key, prefix)


def _collect_subdir(dfd: int, name: str, key: str, prefix: str) -> Iterator[str]:
    try:
        child = os.open(name, _DIR_FLAGS, dir_fd=dfd)
    except (FileNotFoundError, NotADirectoryError):
        return  # removed (or replaced by a link) since scandir saw it
    try:
        yield from _collect(child, key, prefix)
    finally:
        os.close(child)
