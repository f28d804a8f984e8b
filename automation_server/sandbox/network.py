"""Outbound network for ``egress`` runs: slirp4netns attached to the sandbox's namespace.

slirp4netns is a user-mode TCP/IP stack: the sandbox gets a ``tap0``
interface (10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3) and every
connection it makes is re-made by slirp4netns as an ordinary socket in the
host's namespace. ``--disable-host-loopback`` refuses the host's 127.0.0.0/8,
so services listening on the host's loopback (the database) stay unreachable.
Services bound to the host's other addresses are reachable like any remote
host; firewall them (slirp4netns runs as the run's uid when the worker is
unprivileged, as root without capabilities otherwise) or bind them to
loopback.

The sandbox waits (bubblewrap ``--block-fd``) until slirp4netns reports the
interface configured, so the program never starts without its network.
slirp4netns exits when the worker closes its ``--exit-fd`` pipe, including
when the worker dies.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from typing import IO

from automation_server.errors import SandboxError
from automation_server.sandbox.fdwait import wait_readable

SLIRP_DNS = "10.0.2.3"
RESOLV_CONF = f"nameserver {SLIRP_DNS}\n"
_READY_TIMEOUT_S = 10.0


class Slirp:
    """A running slirp4netns for one sandbox."""

    def __init__(self, proc: subprocess.Popen[bytes], exit_w: int, stderr: IO[bytes]) -> None:
        self._proc = proc
        self._exit_w = exit_w
        self._stderr = stderr

    @classmethod
    def start(cls, binary: str, target_pid: int) -> Slirp:
        """Start slirp4netns for the network namespace of ``target_pid``; wait until ready.

        Run by a root worker it stays root: it must open ``/dev/net/tun`` (often
        root-only) and enter a namespace owned by a nested user namespace; then
        ``--enable-sandbox`` drops every capability (keeping only
        CAP_NET_BIND_SERVICE) and pivots into an empty root. Run by an
        unprivileged worker it joins the sandbox's user namespace instead.
        """
        if os.geteuid() == 0:
            # Enter the network namespace by path: with a PID, slirp4netns would
            # first join the PID's user namespace, which bubblewrap replaces by a
            # nested one (--disable-userns) that cannot reach the network.
            netns = os.open(f"/proc/{target_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            target = ["--netns-type=path", f"/proc/self/fd/{netns}"]
        else:
            netns = -1
            target = [str(target_pid)]
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        argv = [
            binary,
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--enable-sandbox",
            "--enable-seccomp",
            f"--ready-fd={ready_w}",
            f"--exit-fd={exit_r}",
            *target,
            "tap0",
        ]
        passed = (ready_w, exit_r) if netns < 0 else (ready_w, exit_r, netns)
        try:
            proc = subprocess.Popen(
                argv,
                env={},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                pass_fds=passed,
                start_new_session=True,
            )
        except OSError as exc:
            for fd in (ready_r, exit_w):
                os.close(fd)
            stderr.close()
            raise SandboxError(f"cannot start slirp4netns: {exc}") from exc
        finally:
            for fd in (ready_w, exit_r, netns):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        slirp = cls(proc, exit_w, stderr)
        try:
            slirp._wait_ready(ready_r)
        except BaseException:
            slirp.stop()
            raise
        finally:
            os.close(ready_r)
        return slirp

    def _wait_ready(self, ready_r: int) -> None:
        if wait_readable(ready_r, _READY_TIMEOUT_S) and os.read(ready_r, 1) == b"1":
            return
        self._terminate()
        self._stderr.seek(0)
        text = self._stderr.read(2000).decode(errors="replace").strip()
        text = text or f"exit code {self._proc.returncode}"
        raise SandboxError(f"slirp4netns did not configure the network: {text}")

    def _terminate(self) -> None:
        if self._exit_w >= 0:
            os.close(self._exit_w)  # slirp4netns exits when this pipe closes
            self._exit_w = -1
        try:
            self._proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def stop(self) -> None:
        self._terminate()
        if not self._stderr.closed:
            self._stderr.close()
