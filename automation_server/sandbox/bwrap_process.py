"""One started bubblewrap: its pipes, its status records, its PID 1, and how to stop it.

bubblewrap is held at ``--block-fd`` until :meth:`BwrapProcess.release`;
until then only its monitor and the sandbox's PID 1 exist, which is when
slirp4netns is attached and, unless they were born in the run's cgroup
(see :meth:`RunCgroup.spawning`), when they are moved into it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from automation_server.errors import SandboxError
from automation_server.sandbox.cgroups import RunCgroup
from automation_server.sandbox.fdwait import wait_readable
from automation_server.sandbox.launch import Launcher, Rlimit
from automation_server.sandbox.network import Slirp
from automation_server.sandbox.supervise import descendants, parent_map, read_ppid, signal_all
from automation_server.sandbox.uids import Identity

_STATUS_TIMEOUT_S = 10.0
_GONE_TIMEOUT_S = 5.0


@dataclass
class BwrapProcess:
    """One started bubblewrap: its pipes, its PID 1 and how to stop it."""

    proc: subprocess.Popen[bytes]
    started: float
    out_r: int
    status_r: int
    block_w: int
    cgroup: RunCgroup
    init_pid: int | None = None
    init_pidfd: int | None = None
    slirp: Slirp | None = None
    _status_lines: list[bytes] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        bwrap: str,
        args: list[str],
        command: Sequence[str],
        ident: Identity,
        cgroup: RunCgroup,
        rlimits: list[Rlimit],
        launcher: Launcher,
    ) -> BwrapProcess:
        opened: list[int] = []  # every fd made here; the parent keeps only a few

        def pipe() -> tuple[int, int]:
            r, w = os.pipe()
            opened.extend((r, w))
            return r, w

        try:
            args_r, args_w = pipe()
            status_r, status_w = pipe()
            block_r, block_w = pipe()
            out_r, out_w = pipe()
            passed = [args_r, status_w, block_r]
            options = ["--json-status-fd", str(status_w), "--block-fd", str(block_r)]
            argv, extra = launcher.command(
                [bwrap, "--args", str(args_r), "--", *command], ident, rlimits
            )
            started = time.monotonic()
            # Born in the run's cgroup where the manager can arrange it (v1), else
            # moved there below, while bubblewrap waits at --block-fd.
            with cgroup.spawning() as born_inside, launcher.spawning(ident):
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out_w,
                    stderr=out_w,
                    env={},
                    cwd="/",
                    pass_fds=passed,
                    start_new_session=True,
                    **extra,
                )
        except OSError as exc:
            for fd in opened:
                os.close(fd)
            raise SandboxError(f"cannot start bubblewrap: {exc}") from exc
        keep = (out_r, status_r, block_w, args_w)
        for fd in opened:
            if fd not in keep:
                os.close(fd)
        sandbox = cls(proc, started, out_r, status_r, block_w, cgroup)
        try:
            _write_all(args_w, b"".join(a.encode() + b"\0" for a in [*options, *args]))
        finally:
            os.close(args_w)
        try:
            moved = not (born_inside and cgroup.contains(proc.pid))
            if moved:
                # A process migration waits for an RCU grace period (~10 ms):
                # moving the monitor first overlaps that wait with bubblewrap's
                # set-up. PID 1 may be cloned before or after; moving it too
                # (fast now) covers both. It waits at --block-fd, so nothing
                # else exists yet.
                cgroup.attach([proc.pid])
            created = sandbox._read_child_pid()
            if moved and sandbox.init_pid is not None:
                cgroup.attach([sandbox.init_pid])
            if launcher.limits_after_start and created:
                sandbox._limit(launcher, ident, rlimits)
        except BaseException:
            sandbox.close()
            os.close(out_r)  # nobody reads the output yet
            raise
        return sandbox

    def _read_child_pid(self) -> bool:
        """First status record: the sandbox's PID 1, pinned with a pidfd. False when
        bubblewrap failed before creating the sandbox (its message says why)."""
        line = self._read_status_line(_STATUS_TIMEOUT_S)
        if line is None:
            return False
        pid = int(json.loads(line)["child-pid"])
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return True
        # PID 1 waits on --block-fd, so it is alive and is our bubblewrap's child.
        if read_ppid(pid) != self.proc.pid:
            os.close(pidfd)
            return True
        self.init_pid, self.init_pidfd = pid, pidfd
        return True

    def _limit(self, launcher: Launcher, ident: Identity, rlimits: list[Rlimit]) -> None:
        """The run's rlimits on bubblewrap's two processes while PID 1 is held: the
        program, forked by PID 1 once released, inherits them."""
        if self.init_pid is None:
            raise SandboxError("the sandbox's PID 1 vanished before its limits were set")
        launcher.limit_held([self.proc.pid, self.init_pid], ident, rlimits)

    def _read_status_line(self, timeout: float) -> bytes | None:
        buffer = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if not wait_readable(self.status_r, remaining):
                return None
            chunk = os.read(self.status_r, 4096)
            if not chunk:
                return None
            buffer += chunk
        line, _, rest = buffer.partition(b"\n")
        self._status_lines.extend(x for x in rest.split(b"\n") if x.strip())
        return line

    def release(self) -> None:
        """Let the sandbox's PID 1 go on to exec the program."""
        if self.block_w >= 0:
            with contextlib.suppress(BrokenPipeError):
                os.write(self.block_w, b"1")
            os.close(self.block_w)
            self.block_w = -1

    def exit_record(self) -> int | None:
        """The program's exit code as bubblewrap recorded it, or None if it never ran."""
        while True:
            if not wait_readable(self.status_r, 1.0):
                break
            chunk = os.read(self.status_r, 4096)
            if not chunk:
                break
            self._status_lines.extend(chunk.split(b"\n"))
        for line in self._status_lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and "exit-code" in record:
                    return int(record["exit-code"])
        return None

    # -- Terminator -------------------------------------------------------------------

    def _members(self) -> tuple[list[int], Callable[[int], bool]]:
        """Every process of the run except bubblewrap's two, and a membership test."""
        own = {self.proc.pid, self.init_pid}
        if self.cgroup.active:
            return [p for p in self.cgroup.pids() if p not in own], self.cgroup.contains
        if self.init_pid is None:
            return [], lambda _pid: False
        parents = parent_map()
        pids = descendants(self.init_pid, parents)
        return pids, lambda pid: read_ppid(pid) == parents.get(pid)

    def terminate(self) -> None:
        pids, still_ours = self._members()
        signal_all(pids, signal.SIGTERM, still_ours)

    def kill(self) -> None:
        """SIGKILL the sandbox's PID 1: the kernel then kills its whole PID namespace."""
        if self.init_pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.init_pidfd, signal.SIGKILL)
        elif self.proc.returncode is None:
            # Not started far enough to have a PID 1: bubblewrap itself is all there is.
            with contextlib.suppress(OSError):
                self.proc.kill()
        pids, still_ours = self._members()
        signal_all(pids, signal.SIGKILL, still_ours)

    def main_exited(self) -> None:
        return None

    def wait_gone(self) -> None:
        """After bubblewrap exits its PID 1 is killed (--die-with-parent); wait for that."""
        if self.init_pidfd is None:
            return
        if not wait_readable(self.init_pidfd, _GONE_TIMEOUT_S):
            self.kill()
            if not wait_readable(self.init_pidfd, _GONE_TIMEOUT_S):
                raise SandboxError(f"sandbox PID 1 ({self.init_pid}) survived SIGKILL")
        # bubblewrap's monitor exits without reaping PID 1, so PID 1 ends as an
        # orphaned zombie for the host's init (or nearest subreaper) to reap.
        # When that is this process (the worker is PID 1 in a container, or a
        # subreaper), reap it here so zombies do not pile up.
        if self.init_pid is not None and read_ppid(self.init_pid) == os.getpid():
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PIDFD, self.init_pidfd, os.WEXITED)

    def close(self) -> None:
        """Stop what is left (slirp4netns, bubblewrap) and close our descriptors."""
        if self.slirp is not None:
            self.slirp.stop()
            self.slirp = None
        if self.proc.returncode is None:
            self.kill()
            self.proc.wait()
        if self.init_pidfd is not None:
            os.close(self.init_pidfd)
            self.init_pidfd = None
        for name in ("block_w", "status_r"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BrokenPipeError:
            return  # bubblewrap died; its exit status and message tell why
        view = view[written:]
