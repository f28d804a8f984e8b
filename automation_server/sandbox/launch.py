"""Starting a sandbox process with its host uid and rlimits, cheaply.

Preferred (a root worker on x86_64 or aarch64): the starting thread switches
itself alone to the run's uid around a plain Popen (see :mod:`.thread_ids`)
and the rlimits are set with ``prlimit(2)`` on bubblewrap's processes while
bubblewrap holds the sandbox at ``--block-fd``, before the program exists:
no extra exec at all.

Otherwise: Popen can only use vfork when it neither switches user nor runs a
``preexec_fn``; otherwise it forks, copying the worker's page tables
(measured: 0.2 ms with vfork against ~17 ms with fork() in a 300 MB worker).
So the uid switch and the rlimits are done by two small util-linux programs
in the exec chain, ``setpriv`` and ``prlimit`` (which lowers its own limits
and so needs no capability; setting another uid's limits with prlimit(2)
would need CAP_SYS_RESOURCE, which root in a container often lacks). When
they are missing, Popen's ``user=`` and a ``preexec_fn`` that only calls
setrlimit do the same: that one runs in the child after the uid switch and
before exec, and takes no locks.
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from automation_server.errors import SandboxError
from automation_server.sandbox.base import Limits
from automation_server.sandbox.thread_ids import ThreadIds
from automation_server.sandbox.uids import Identity

MIB = 1 << 20
Rlimit = tuple[int, int, int]  # (resource, soft, hard)


def rlimits_for(limits: Limits, *, nproc: int | None, data: bool) -> list[Rlimit]:
    """The per-process limits of a run.

    ``RLIMIT_DATA`` (heap and private writable mappings; unlike ``RLIMIT_AS``
    it ignores reserved-but-unused address space such as thread arenas) is
    only for runs without a memory cgroup, which measures the run as a whole.
    """
    result = [
        (resource.RLIMIT_CORE, 0, 0),
        # SIGXCPU at the soft limit, SIGKILL a second later if it is ignored.
        (resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1),
        (resource.RLIMIT_NOFILE, limits.nofile, limits.nofile),
        (resource.RLIMIT_FSIZE, limits.workdir_mb * MIB, limits.workdir_mb * MIB),
    ]
    if nproc is not None:
        result.append((resource.RLIMIT_NPROC, nproc, nproc))
    if data:
        result.append((resource.RLIMIT_DATA, limits.memory_mb * MIB, limits.memory_mb * MIB))
    return result


_PRLIMIT_NAMES = {
    resource.RLIMIT_CORE: "core",
    resource.RLIMIT_CPU: "cpu",
    resource.RLIMIT_NOFILE: "nofile",
    resource.RLIMIT_FSIZE: "fsize",
    resource.RLIMIT_NPROC: "nproc",
    resource.RLIMIT_DATA: "data",
}


@dataclass(frozen=True)
class Launcher:
    """How bubblewrap gets its host uid and rlimits.

    Preferred: exec through util-linux ``setpriv`` (uid, gid, no groups) and
    ``prlimit`` (which lowers its own limits, so it needs no capability).
    Popen then uses vfork: measured 0.2 ms against ~17 ms for the fork()
    that ``Popen(user=..., preexec_fn=...)`` needs in a worker of 300 MB,
    for ~3 ms of extra exec. Without those tools, fall back to Popen's own
    ``user=`` and a ``preexec_fn`` that only calls setrlimit (it runs after
    the uid switch, in the child, before exec).
    """

    setpriv: str | None
    prlimit: str | None
    thread_ids: ThreadIds | None = None  # set: the no-exec way (see the module docstring)

    @property
    def limits_after_start(self) -> bool:
        """Whether :meth:`limit_held` sets the rlimits (the command carries none)."""
        return self.thread_ids is not None

    def spawning(self, ident: Identity) -> AbstractContextManager[None]:
        """Around Popen: the calling thread is the run's user when the command is not."""
        if self.thread_ids is not None and ident.dedicated:
            return self.thread_ids.as_user(ident.uid, ident.gid)
        return contextlib.nullcontext()

    def limit_held(self, pids: Iterable[int], ident: Identity, rlimits: Sequence[Rlimit]) -> None:
        """Set the rlimits of processes started through :meth:`spawning` that have not
        run any of the program yet (prlimit(2) needs the caller's real uid to be theirs)."""
        if self.thread_ids is None:
            return
        with self.spawning(ident):
            for pid in pids:
                for which, soft, hard in rlimits:
                    try:
                        resource.prlimit(pid, which, (soft, hard))
                    except OSError as exc:
                        name = _PRLIMIT_NAMES[which]
                        raise SandboxError(f"cannot set the run's {name} limit: {exc}") from exc

    def command(
        self, argv: list[str], ident: Identity, rlimits: Sequence[Rlimit]
    ) -> tuple[list[str], dict[str, Any]]:
        extra: dict[str, Any] = {}
        if self.thread_ids is not None:
            return argv, extra
        if self.prlimit:
            limits = [f"--{_PRLIMIT_NAMES[r]}={soft}:{hard}" for r, soft, hard in rlimits]
            argv = [self.prlimit, *limits, "--", *argv]
        else:
            extra["preexec_fn"] = _preexec(rlimits)
        if ident.dedicated:
            if self.setpriv:
                ids = [f"--reuid={ident.uid}", f"--regid={ident.gid}", "--clear-groups"]
                argv = [self.setpriv, *ids, "--", *argv]
            else:
                extra.update(user=ident.uid, group=ident.gid, extra_groups=[])
        return argv, extra

    def describe(self, switches_uid: bool) -> str:
        if self.thread_ids is not None:
            return "uid switched by the starting thread alone, rlimits by prlimit(2) (no exec)"
        limits = "prlimit" if self.prlimit else "preexec_fn setrlimit"
        if not switches_uid:
            return f"rlimits via {limits}"
        how = "setpriv" if self.setpriv else "Popen(user=)"
        return f"uid via {how}, rlimits via {limits}"


def _preexec(rlimits: Sequence[Rlimit]) -> Callable[[], None]:
    def child() -> None:
        for which, soft, hard in rlimits:
            resource.setrlimit(which, (soft, hard))

    return child
