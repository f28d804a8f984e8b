"""Switching the calling thread alone to a run's host uid, with raw system calls.

Linux keeps credentials per thread; glibc's ``setresuid`` and friends make
every thread of the process follow (they signal each one), the raw system
calls do not. A root worker thread that switches itself to the run's uid,
keeping 0 as its saved uid, can start bubblewrap with a plain vfork (the
child inherits the thread's credentials; ``execve`` then sets the saved uid
to the run's too, so bubblewrap holds no way back to root) and switch back
afterwards. That replaces an exec of ``setpriv`` and one of ``prlimit`` per
run (~1.5 ms of a 15 ms trivial run here): the rlimits are set afterwards with
``prlimit(2)`` on bubblewrap's held processes, which the kernel allows to a
caller whose real uid is theirs.

The other threads of the worker keep root all along. Only x86_64 and aarch64
system call numbers are known; elsewhere, or when the switch is refused, the
executor keeps the ``setpriv``/``prlimit`` exec chain.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import threading
from collections.abc import Iterator

from automation_server.errors import SandboxError

# (setgroups, setresuid, setresgid) per machine.
_NUMBERS = {"x86_64": (116, 117, 119), "aarch64": (159, 147, 149)}
_KEEP = -1  # "leave this id as it is"


class ThreadIds:
    def __init__(self) -> None:
        numbers = _NUMBERS.get(platform.machine())
        if numbers is None:
            raise OSError(f"no system call numbers for {platform.machine()}")
        self._setgroups, self._setresuid, self._setresgid = numbers
        self._libc = ctypes.CDLL(None, use_errno=True)

    @classmethod
    def probe(cls, uid: int, gid: int) -> ThreadIds | None:
        """A working switcher, or None: tried in a throwaway thread, so a failure
        cannot leave a thread of the worker with the wrong identity."""
        try:
            ids = cls()
        except OSError:
            return None
        outcome: list[bool] = []

        def attempt() -> None:
            try:
                with ids.as_user(uid, gid):
                    switched = os.geteuid() == uid
                outcome.append(switched and os.geteuid() == 0)
            except (OSError, SandboxError):
                outcome.append(False)

        thread = threading.Thread(target=attempt, name="thread-ids-probe")
        thread.start()
        thread.join()
        return ids if outcome == [True] else None

    @contextlib.contextmanager
    def as_user(self, uid: int, gid: int) -> Iterator[None]:
        """The calling thread runs as ``uid``/``gid`` with no supplementary groups
        (saved ids stay 0, so it can come back); processes it starts are that user."""
        ruid, euid, suid = os.getresuid()
        rgid, egid, sgid = os.getresgid()
        groups = os.getgroups()
        self._call(self._setgroups, 0, None)
        try:
            self._call(self._setresgid, gid, gid, _KEEP)
            try:
                self._call(self._setresuid, uid, uid, _KEEP)
                try:
                    yield
                finally:
                    self._restore(self._setresuid, ruid, euid, suid)
            finally:
                self._restore(self._setresgid, rgid, egid, sgid)
        finally:
            array = (ctypes.c_uint * len(groups))(*groups)
            self._restore(self._setgroups, len(groups), array)

    def _call(self, number: int, *args: object) -> None:
        # Every argument register as a full long (ids as 32-bit -1 would be fine too).
        wide = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
        if self._libc.syscall(ctypes.c_long(number), *wide) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))

    def _restore(self, number: int, *args: object) -> None:
        """Coming back cannot be allowed to fail: a worker thread stuck as a run's
        user would write the database and logs as that user. Stop the process."""
        try:
            self._call(number, *args)
        except OSError as exc:  # pragma: no cover - the kernel refused a return to root
            os.write(2, f"fatal: cannot restore the worker thread's identity: {exc}\n".encode())
            os._exit(70)
