"""``AUTOMATION_SANDBOX=none``: the same contract as the sandbox, with no isolation.

For hosts without bubblewrap, by explicit operator choice. The program runs as
the worker's user, in the caller's directories, with the same environment
(host paths instead of the sandbox's), the same capped log, timeout, grace
period and cancellation, and the rlimits that need no privilege. It gets its
own session, so the whole process group is signalled; a descendant that
calls ``setsid`` itself escapes that (there is no PID namespace here).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from automation_server.sandbox.base import OnOutput, Outcome, RunSpec
from automation_server.sandbox.launch import Launcher, rlimits_for
from automation_server.sandbox.logcap import LogCapture, OutputPump
from automation_server.sandbox.runenv import (
    RunInputError,
    RunPaths,
    build_env,
    failure_error,
    interpreter_dirs,
    make_outcome,
    normalise_returncode,
    resolve_run_entrypoint,
    stopped_outcome,
)
from automation_server.sandbox.supervise import supervise
from automation_server.sandbox.uids import Identity

SANDBOX = "none"


class UnsandboxedExecutor:
    name = "none"

    def __init__(self, grace_s: float = 5.0) -> None:
        self.grace_s = grace_s
        self.launcher = Launcher(None, shutil.which("prlimit"))
        self._self = Identity(0, os.getuid(), os.getgid(), dedicated=False)

    def describe(self) -> str:
        return (
            "NO SANDBOX (AUTOMATION_SANDBOX=none): runs execute as this user with "
            f"rlimits only; grace {self.grace_s:g} s"
        )

    def run(
        self, spec: RunSpec, *, cancel: threading.Event, on_output: OnOutput | None = None
    ) -> Outcome:
        capture = LogCapture(spec.limits.max_log_bytes)
        if cancel.is_set():
            return make_outcome(
                spec, "cancelled", None, "cancelled before it started", 0, capture, SANDBOX
            )
        label = "".join(c for c in spec.run_id if c.isalnum() or c == "-")[:40]
        with tempfile.TemporaryDirectory(prefix=f"automation-run-{label}-") as scratch:
            bin_dir = Path(scratch) / "bin"
            home = Path(scratch) / "home"
            for directory in (bin_dir, home):
                directory.mkdir()
            for name in ("python3", "python"):
                (bin_dir / name).symlink_to(spec.python)
            try:
                entry = resolve_run_entrypoint(spec.argv, spec.workdir)
                env = build_env(spec.env, _host_paths(spec, bin_dir, home))
            except RunInputError as exc:
                return make_outcome(spec, "failed", None, str(exc), 0, capture, SANDBOX)
            env["PWD"] = str(spec.workdir)
            return self._run(spec, list(entry.argv), env, cancel, on_output, capture)

    def _run(
        self,
        spec: RunSpec,
        argv: list[str],
        env: dict[str, str],
        cancel: threading.Event,
        on_output: OnOutput | None,
        capture: LogCapture,
    ) -> Outcome:
        # RLIMIT_NPROC counts every process of the worker's user: not usable here.
        rlimits = rlimits_for(spec.limits, nproc=None, data=True)
        # Both prlimit and Popen look argv[0] up on the run's PATH (env), not ours.
        command, extra = self.launcher.command(argv, self._self, rlimits)
        out_r, out_w = os.pipe()
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=out_w,
                env=env,
                cwd=spec.workdir,
                start_new_session=True,
                **extra,
            )
        except OSError as exc:
            os.close(out_r)
            return make_outcome(
                spec, "failed", None, f"cannot start the entrypoint: {exc}", 0, capture, SANDBOX
            )
        finally:
            os.close(out_w)
        pump = OutputPump(out_r, capture, on_output)
        pump.start()
        group = _ProcessGroup(proc.pid)
        try:
            ending = supervise(
                proc,
                started=started,
                timeout_s=spec.timeout_s,
                grace_s=self.grace_s,
                cancel=cancel,
                terminator=group,
            )
        except BaseException:
            group.kill()
            raise
        finally:
            duration_ms = int((time.monotonic() - started) * 1000)
            pump.finish(timeout=2.0)
        code = normalise_returncode(ending.returncode)
        stopped = stopped_outcome(spec, ending, code, self.grace_s, duration_ms, capture, SANDBOX)
        if stopped is not None:
            return stopped
        if code == 0:
            return make_outcome(spec, "succeeded", 0, None, duration_ms, capture, SANDBOX)
        error = failure_error(code, spec.limits)
        return make_outcome(spec, "failed", code, error, duration_ms, capture, SANDBOX)


def _host_paths(spec: RunSpec, bin_dir: Path, home: Path) -> RunPaths:
    return RunPaths(
        workdir=str(spec.workdir),
        output_dir=str(spec.output_dir),
        payload=str(spec.payload_file),
        state=str(spec.state_file) if spec.state_file is not None else None,
        pythonpath=str(spec.pythonpath_dir) if spec.pythonpath_dir is not None else None,
        bin_dirs=interpreter_dirs(spec.python, str(bin_dir)),
        home=str(home),
        tmpdir=str(home),
        packages=str(spec.environment_dir) if spec.environment_dir is not None else None,
    )


class _ProcessGroup:
    """The run's session leader and its process group (same id: start_new_session)."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def main_exited(self) -> None:
        # The leader is a zombie until reaped, so the group id cannot have been
        # reused: whatever is left in the group belongs to the run.
        self._signal(signal.SIGKILL)
