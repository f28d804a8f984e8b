"""The run's writable space: working directory and output directory, size-capped.

Two strategies, chosen by what the worker may do:

* ``tmpfs`` (worker is root): a tmpfs of ``workdir_mb`` per run slot, mounted
  by the worker on the host; the extracted tarball, the payload and an empty
  output directory are copied in and bound into the sandbox. The kernel
  enforces the cap (writes fail with ENOSPC), the host disk is never touched,
  and files written count against the run's memory cgroup too. Cost measured
  on the development machine: mount + copy of a five-file tarball + umount
  under 1 ms. After the run the output's regular files are copied out (so a
  symlink planted in the output can never make the worker read a host file).
* ``monitor`` (unprivileged worker, or mounting not permitted): the caller's
  directories are bound as they are; ``RLIMIT_FSIZE`` caps any single file
  and :meth:`RunFs.check`, polled by the supervisor, fails the run when the
  directories together exceed the cap. Not a hard cap: a fast writer can
  overshoot by what it writes between two polls. After the run, anything in
  the output that is not a regular file or directory is deleted.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
from pathlib import Path
from typing import Literal, Protocol

from automation_server.errors import SandboxError
from automation_server.sandbox.base import RunSpec
from automation_server.sandbox.runenv import RunInputError
from automation_server.sandbox.uids import Identity

MIB = 1 << 20
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2
_MAX_SCAN_ENTRIES = 200_000

WorkdirMode = Literal["tmpfs", "monitor"]

_libc = ctypes.CDLL(None, use_errno=True)


class RunFs(Protocol):
    kind: WorkdirMode
    work: Path
    output: Path
    payload: Path
    state: Path | None

    def check(self) -> str | None:
        """An error when the run is over its disk budget, else None."""
        ...

    def collect_output(self, dest: Path) -> None:
        """Leave only regular files and directories of the output in ``dest``."""
        ...

    def cleanup(self) -> None: ...


def mount_tmpfs(target: Path, size_bytes: int, uid: int, gid: int) -> None:
    options = f"size={size_bytes},mode=0700,uid={uid},gid={gid}".encode()
    if _libc.mount(b"tmpfs", bytes(target), b"tmpfs", MS_NOSUID | MS_NODEV, options) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {target}: {os.strerror(err)}")
    # Keep the mount out of other mount namespaces' view (no propagation).
    _libc.mount(None, bytes(target), None, MS_PRIVATE, None)


def unmount(target: Path) -> None:
    if _libc.umount2(bytes(target), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # not mounted: nothing to do
            raise OSError(err, f"umount {target}: {os.strerror(err)}")


def can_mount() -> bool:
    """Whether this process may mount (root with CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/status") as fh:
            caps = next(line for line in fh if line.startswith("CapEff:"))
    except (OSError, StopIteration):
        return False
    return bool(int(caps.split()[1], 16) & (1 << 21))  # CAP_SYS_ADMIN


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, name), uid, gid)


class TmpfsRunFs:
    kind: WorkdirMode = "tmpfs"

    def __init__(self, mountpoint: Path) -> None:
        self.mountpoint = mountpoint
        self.work = mountpoint / "work"
        self.output = mountpoint / "output"
        self.payload = mountpoint / "payload.json"
        self.state: Path | None = None

    @classmethod
    def create(cls, mountpoint: Path, spec: RunSpec, ident: Identity) -> TmpfsRunFs:
        mountpoint.mkdir(mode=0o711, parents=True, exist_ok=True)
        unmount(mountpoint)  # a crashed holder of this slot may have left one
        fs = cls(mountpoint)
        try:
            mount_tmpfs(mountpoint, spec.limits.workdir_mb * MIB, ident.uid, ident.gid)
        except OSError as exc:
            raise SandboxError(f"cannot mount the run's tmpfs: {exc}") from exc
        try:
            fs._fill(spec, ident)
        except BaseException:
            fs.cleanup()
            raise
        return fs

    def _fill(self, spec: RunSpec, ident: Identity) -> None:
        try:
            shutil.copytree(spec.workdir, self.work, symlinks=True)
            shutil.copyfile(spec.payload_file, self.payload)
            if spec.state_file is not None:
                self.state = self.mountpoint / "state.json"
                shutil.copyfile(spec.state_file, self.state)
                self.state.chmod(0o444)
        except OSError as exc:
            if _is_enospc(exc):
                raise RunInputError(
                    f"the extracted tarball does not fit in workdir_mb "
                    f"({spec.limits.workdir_mb} MB)"
                ) from exc
            raise SandboxError(f"cannot copy the run's files: {exc}") from exc
        _chown_tree(self.work, ident.uid, ident.gid)
        self.work.chmod(0o755)
        self.payload.chmod(0o444)
        self.output.mkdir(mode=0o755)
        os.chown(self.output, ident.uid, ident.gid)

    def check(self) -> str | None:
        return None

    def collect_output(self, dest: Path) -> None:
        copy_regular_files(self.output, dest)

    def cleanup(self) -> None:
        # The empty mount point stays for the slot's next run: one directory fewer
        # created and removed on the host disk per run.
        unmount(self.mountpoint)


def _is_enospc(exc: OSError) -> bool:
    if exc.errno == errno.ENOSPC:
        return True
    # copytree gathers per-file errors into one shutil.Error of (src, dst, why).
    details = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    return any("No space left" in str(item) for item in details)


def copy_regular_files(src: Path, dest: Path) -> None:
    """Copy directories and regular files only; links, FIFOs and devices are dropped."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(src):
        info = entry.stat(follow_symlinks=False)
        target = dest / entry.name
        if stat.S_ISDIR(info.st_mode):
            copy_regular_files(Path(entry.path), target)
        elif stat.S_ISREG(info.st_mode):
            shutil.copyfile(entry.path, target, follow_symlinks=False)


class InPlaceRunFs:
    kind: WorkdirMode = "monitor"

    def __init__(self, spec: RunSpec) -> None:
        self.work = spec.workdir
        self.output = spec.output_dir
        self.payload = spec.payload_file
        self.state = spec.state_file
        self.cap_bytes = spec.limits.workdir_mb * MIB
        self.cap_mb = spec.limits.workdir_mb

    @classmethod
    def create(cls, spec: RunSpec, ident: Identity) -> InPlaceRunFs:
        fs = cls(spec)
        for path in (fs.work, fs.output, fs.payload):
            problem = unreachable_by(path, ident.uid, ident.gid)
            if problem:
                raise SandboxError(problem)
        if ident.dedicated:
            _chown_tree(fs.work, ident.uid, ident.gid)
            _chown_tree(fs.output, ident.uid, ident.gid)
            os.chown(fs.payload, ident.uid, ident.gid)
        if fs.state is not None:
            fs.state.chmod(0o444)  # readable by the run's user, written by nobody
        return fs

    def check(self) -> str | None:
        used = _disk_usage(self.work) + _disk_usage(self.output)
        if used > self.cap_bytes:
            return f"disk limit exceeded: workdir and output use more than {self.cap_mb} MB"
        return None

    def collect_output(self, dest: Path) -> None:
        _remove_special_files(self.output)

    def cleanup(self) -> None:
        return None


def _disk_usage(root: Path) -> int:
    total, seen = 0, 0
    stack = [str(root)]
    while stack and seen < _MAX_SCAN_ENTRIES:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += info.st_blocks * 512
            if stat.S_ISDIR(info.st_mode):
                stack.append(entry.path)
    return total


def _remove_special_files(root: Path) -> None:
    for entry in os.scandir(root):
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            _remove_special_files(Path(entry.path))
        elif not stat.S_ISREG(mode):
            os.unlink(entry.path)


def unreachable_by(path: Path, uid: int, gid: int) -> str | None:
    """Why ``uid`` could not reach ``path`` (bubblewrap binds it as that user), or None."""
    if uid == os.getuid():
        return None
    current = Path(path).absolute()
    for directory in (*reversed(current.parents), current):
        try:
            info = directory.stat()
        except OSError as exc:
            return f"{directory}: {exc.strerror}"
        if not stat.S_ISDIR(info.st_mode) and directory == current:
            break
        if info.st_uid == uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return (
                f"{directory} is not searchable by the sandbox user (uid {uid}); "
                f"make it and its parents world-searchable (chmod o+x) to run {path} in the sandbox"
            )
    return None
