"""The bubblewrap executor: each run in fresh namespaces, as an unprivileged host user.

How one run goes:

1. A slot is taken (:mod:`.uids`): a root worker runs every concurrent run as
   its own host uid (base + slot), an unprivileged worker runs them as itself.
2. The writable space is prepared (:mod:`.runfs`) and a cgroup is created
   (:mod:`.cgroups`).
3. ``bwrap --args FD -- <entrypoint>`` is started with an **empty
   environment**, as the run's host uid and with its rlimits (the starting
   thread switches itself alone, or ``setpriv`` and ``prlimit`` are in the
   exec chain; see :mod:`.launch`). Every option, including the ``--setenv`` of each
   variable (secrets too), comes through the pipe FD: ``ps`` shows no
   variable, and ``/proc/1/environ`` inside is empty. ``/etc`` is one
   prepared directory, bound read-only (:mod:`.etcdir`).
4. bubblewrap reports the PID of the sandbox's PID 1 on ``--json-status-fd``
   and then holds it at ``--block-fd`` with all mounts done, before the
   program is forked. The worker pins that PID with a pidfd, starts
   slirp4netns for ``egress``, and releases it. bubblewrap is born in the
   run's cgroup (cgroup v1: the starting thread enters the cgroup alone
   around Popen, which still vforks; see :mod:`.cgroup_v1`), so its two
   processes, the program and all its descendants are inside from the
   start. Where that cannot be arranged (cgroup v2, no permission) the two
   processes are moved from the parent while bubblewrap is held, which
   overlaps the RCU grace period that a process migration waits for
   (~10 ms here) with bubblewrap's set-up.
5. The program runs; its stdout and stderr share one pipe, read by a thread.
6. Timeout or cancel: SIGTERM to every process of the run (listed from the
   cgroup, or as the process tree under the sandbox's PID 1), the grace
   period, then SIGKILL to PID 1: the kernel kills everything in a PID
   namespace whose init dies, double-forked daemons included. bubblewrap
   does not forward signals, so it is never the only target.
   ``--die-with-parent`` does the same when bubblewrap or the worker dies,
   and when the program exits, so nothing outlives the run.
7. Exit codes come from bubblewrap's status pipe, which separates "the
   program exited N" (death by signal n is 128+n, as in the shell) from "the
   sandbox could not start" (no exit record: bubblewrap's message is the
   error).
8. The tmpfs, cgroup and slot are released by the :mod:`.janitor` while the
   caller records the result.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from automation_server.errors import SandboxError
from automation_server.sandbox.base import Limits, OnOutput, Outcome, RunSpec
from automation_server.sandbox.bwrap_process import BwrapProcess
from automation_server.sandbox.cgroups import (
    BWRAP_PROCESSES,
    CgroupManager,
    CgroupMode,
    RunCgroup,
    detect_cgroups,
)
from automation_server.sandbox.etcdir import SandboxEtc
from automation_server.sandbox.janitor import Janitor
from automation_server.sandbox.launch import Launcher, Rlimit, rlimits_for
from automation_server.sandbox.logcap import LogCapture, OutputPump
from automation_server.sandbox.network import RESOLV_CONF, Slirp
from automation_server.sandbox.runenv import (
    Entrypoint,
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
from automation_server.sandbox.runfs import (
    MIB,
    InPlaceRunFs,
    RunFs,
    TmpfsRunFs,
    can_mount,
    unreachable_by,
)
from automation_server.sandbox.scratch import memory_scratch
from automation_server.sandbox.supervise import (
    Ending,
    supervise,
)
from automation_server.sandbox.thread_ids import ThreadIds
from automation_server.sandbox.uids import Identity, SlotPool

# Where things are inside the sandbox.
WORKDIR = "/work"
RUN_DIR = "/run/automation"
OUTPUT_DIR = f"{RUN_DIR}/output"
PAYLOAD = f"{RUN_DIR}/payload.json"
STATE = f"{RUN_DIR}/state.json"
SDK_DIR = f"{RUN_DIR}/sdk"
ENV_DIR = f"{RUN_DIR}/env"  # the variant's packages, read-only
BIN_DIR = f"{RUN_DIR}/bin"
HOME = "/tmp"  # noqa: S108 - the sandbox's own size-capped tmpfs
SANDBOX_UID = 1000
HOSTNAME = "sandbox"

# Top-level system directories bound read-only (or recreated as the symlinks they are).
SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The few host /etc entries a program needs; never shadow, never the whole of /etc.
ETC_ENTRIES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/pki/tls/certs",
    "/etc/pki/ca-trust/extracted",
    "/etc/ca-certificates.conf",
    "/etc/mime.types",
    "/etc/protocols",
    "/etc/services",
    "/etc/host.conf",
    "/etc/gai.conf",
)


WorkdirSetting = Literal["auto", "tmpfs", "monitor"]


@dataclass(frozen=True)
class BwrapSettings:
    """Operator settings of the bubblewrap executor (all have sound defaults)."""

    bwrap_path: str | None = None  # default: `bwrap` on PATH
    slirp_path: str | None = None  # default: `slirp4netns` on PATH
    grace_s: float = 5.0  # between SIGTERM and SIGKILL
    uid_base: int = 200_000  # first host uid for runs (root worker only)
    uid_count: int = 1024  # concurrent runs per host at most
    state_dir: Path | None = None  # locks and tmpfs mount points
    cgroup: CgroupMode = "auto"
    cgroup_parent: str = "automation-sandbox"
    workdir: WorkdirSetting = "auto"


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/run/automation-sandbox")
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"  # noqa: S108
    return Path(base) / f"automation-sandbox-{os.getuid()}"


class BwrapExecutor:
    name = "bwrap"

    def __init__(self, settings: BwrapSettings | None = None) -> None:
        self.settings = settings or BwrapSettings()
        self.bwrap = self.settings.bwrap_path or shutil.which("bwrap") or "/usr/bin/bwrap"
        self.slirp = self.settings.slirp_path or shutil.which("slirp4netns")
        self.privileged = os.geteuid() == 0
        self.launcher = Launcher(
            shutil.which("setpriv"),
            shutil.which("prlimit"),
            ThreadIds.probe(self.settings.uid_base, self.settings.uid_base)
            if self.privileged
            else None,
        )
        state = self.settings.state_dir or default_state_dir()
        state.mkdir(mode=0o711, parents=True, exist_ok=True)
        self.slots = SlotPool(
            state / "locks",
            self.settings.uid_count if self.privileged else 64,
            self.settings.uid_base if self.privileged else None,
        )
        self.mounts_dir = state / "mounts"
        self.etc = SandboxEtc(state / "etc", ETC_ENTRIES, _etc_files)
        self.etc.path("none")  # prepared now, not on the first run's path
        self.cgroups: CgroupManager = detect_cgroups(
            self.settings.cgroup, self.settings.cgroup_parent
        )
        self.workdir_mode = self._pick_workdir_mode()
        # Where a caller keeps a run's host files (payload, state, collected output):
        # in memory when runs get a tmpfs, so a run touches no disk (see .scratch).
        self.scratch_dir = memory_scratch(state) if self.workdir_mode == "tmpfs" else None
        self.janitor = Janitor()
        self._pythons: dict[Path, tuple[Path, ...]] = {}
        self._pythons_lock = threading.Lock()

    def _pick_workdir_mode(self) -> Literal["tmpfs", "monitor"]:
        wanted = self.settings.workdir
        if wanted == "monitor":
            return "monitor"
        if can_mount():
            self.mounts_dir.mkdir(mode=0o711, exist_ok=True)
            return "tmpfs"
        if wanted == "tmpfs":
            raise SandboxError("workdir=tmpfs needs a root worker with CAP_SYS_ADMIN")
        return "monitor"

    @property
    def copies_workdir(self) -> bool:
        """Whether each run gets a copy of ``spec.workdir`` (never the directory itself),
        so one extracted tarball may serve several runs."""
        return self.workdir_mode == "tmpfs"

    def wait_cleaned(self, timeout_s: float = 10.0) -> bool:
        """Wait until every finished run's mount, cgroup and slot are released."""
        return self.janitor.wait_idle(timeout_s)

    def describe(self) -> str:
        network = f"egress via {self.slirp}" if self.slirp else "egress unavailable"
        workdir = (
            "size-capped tmpfs"
            if self.workdir_mode == "tmpfs"
            else "caller's directory with RLIMIT_FSIZE and a size monitor"
        )
        return (
            f"bubblewrap {self.bwrap}; {self.slots.describe()}; "
            f"{self.launcher.describe(self.privileged)}; "
            f"{self.cgroups.describe()}; "
            f"workdir: {workdir}; {network}; grace {self.settings.grace_s:g} s"
        )

    # -- running ------------------------------------------------------------------

    def run(
        self, spec: RunSpec, *, cancel: threading.Event, on_output: OnOutput | None = None
    ) -> Outcome:
        capture = LogCapture(spec.limits.max_log_bytes)
        if cancel.is_set():
            return make_outcome(spec, "cancelled", None, "cancelled before it started", 0, capture)
        if spec.network == "egress" and not self.slirp:
            raise SandboxError("network 'egress' needs slirp4netns: apt-get install slirp4netns")
        try:
            entry = resolve_run_entrypoint(spec.argv, spec.workdir)
            env = build_env(spec.env, _sandbox_paths(spec))
        except RunInputError as exc:
            return make_outcome(spec, "failed", None, str(exc), 0, capture)
        python_binds = self._python_binds(spec.python)
        with contextlib.ExitStack() as held:  # undone last to first: cgroup, fs, slot
            ident = held.enter_context(self.slots.acquire())
            self._check_reachable(spec, python_binds, ident)
            try:
                fs = self._prepare_fs(spec, ident)
            except RunInputError as exc:
                return make_outcome(spec, "failed", None, str(exc), 0, capture)
            held.callback(fs.cleanup)
            outcome = self._run_prepared(
                spec, ident, entry, env, fs, python_binds, cancel, on_output, capture, held
            )
            if fs.kind == "tmpfs":
                # Nothing of the run is left but its own mount and cgroup: those go
                # while the caller records the result (see .janitor).
                self.janitor.later(held.pop_all().close)
            return outcome

    def _run_prepared(
        self,
        spec: RunSpec,
        ident: Identity,
        entry: Entrypoint,
        env: dict[str, str],
        fs: RunFs,
        python_binds: tuple[Path, ...],
        cancel: threading.Event,
        on_output: OnOutput | None,
        capture: LogCapture,
        held: contextlib.ExitStack,
    ) -> Outcome:
        cgroup = self.cgroups.create(ident.name, spec.limits)
        held.callback(cgroup.remove)
        sandbox: BwrapProcess | None = None
        try:
            args = self._bwrap_args(spec, env, fs, python_binds)
            sandbox = BwrapProcess.start(
                self.bwrap, args, entry.argv, ident, cgroup,
                self._rlimits(spec.limits, ident, cgroup), self.launcher,
            )  # fmt: skip
            pump = OutputPump(sandbox.out_r, capture, on_output)
            pump.start()
            try:
                if spec.network == "egress" and sandbox.init_pid is not None:
                    assert self.slirp is not None
                    sandbox.slirp = Slirp.start(self.slirp, sandbox.init_pid)
                sandbox.release()
                ending = supervise(
                    sandbox.proc,
                    started=sandbox.started,
                    timeout_s=spec.timeout_s,
                    grace_s=self.settings.grace_s,
                    cancel=cancel,
                    terminator=sandbox,
                    check=fs.check if fs.kind == "monitor" else None,
                )
                duration_ms = int((time.monotonic() - sandbox.started) * 1000)
                sandbox.wait_gone()
            except BaseException:
                sandbox.kill()
                raise
            finally:
                pump.finish(timeout=2.0)
            status_code = sandbox.exit_record()
        finally:
            if sandbox is not None:
                sandbox.close()
        fs.collect_output(spec.output_dir)
        # The cgroup is removed after this returns (``held``), so its OOM counter can
        # be read here, and only for a failure that it may explain.
        return self._conclude(spec, ending, status_code, cgroup.oom_killed, duration_ms, capture)

    def _conclude(
        self,
        spec: RunSpec,
        ending: Ending,
        status_code: int | None,
        oom_killed: Callable[[], bool],
        duration_ms: int,
        capture: LogCapture,
    ) -> Outcome:
        code = status_code if status_code is not None else normalise_returncode(ending.returncode)
        stopped = stopped_outcome(
            spec, ending, code, self.settings.grace_s, duration_ms, capture, self.name
        )
        if stopped is not None:
            return stopped
        if status_code is None:
            # bubblewrap exited without the program having run: its message says why.
            # An entrypoint that cannot be executed is the program's failure; any other
            # set-up failure is the platform's (SandboxError: retried elsewhere).
            problem, of_program = _setup_error(capture)
            if not of_program:
                raise SandboxError(problem)
            return make_outcome(spec, "failed", None, problem, duration_ms, capture)
        if code == 0:
            return make_outcome(spec, "succeeded", 0, None, duration_ms, capture)
        error = failure_error(code, spec.limits, oom_killed=oom_killed())
        return make_outcome(spec, "failed", code, error, duration_ms, capture)

    # -- preparation ----------------------------------------------------------------

    def _prepare_fs(self, spec: RunSpec, ident: Identity) -> RunFs:
        if self.workdir_mode == "tmpfs":
            return TmpfsRunFs.create(self.mounts_dir / ident.name, spec, ident)
        return InPlaceRunFs.create(spec, ident)

    def _check_reachable(
        self, spec: RunSpec, python_binds: tuple[Path, ...], ident: Identity
    ) -> None:
        paths = [*python_binds, spec.python]
        if spec.pythonpath_dir is not None:
            paths.append(spec.pythonpath_dir)
        if spec.environment_dir is not None:
            paths.append(spec.environment_dir)
        for path in paths:
            problem = unreachable_by(path, ident.uid, ident.gid)
            if problem:
                raise SandboxError(problem)

    def _python_binds(self, python: Path) -> tuple[Path, ...]:
        """Host directories the interpreter needs that /usr does not already provide."""
        with self._pythons_lock:
            cached = self._pythons.get(python)
        if cached is not None:
            return cached
        binds = _python_dirs(python)
        with self._pythons_lock:
            self._pythons[python] = binds
        return binds

    def _rlimits(self, limits: Limits, ident: Identity, cgroup: RunCgroup) -> list[Rlimit]:
        nproc = limits.pids_max + BWRAP_PROCESSES
        if not ident.dedicated:
            # The count is per uid, and the worker shares it: leave room for its tasks.
            nproc += _tasks_of_uid(ident.uid)
        # Without a memory cgroup, cap each process's heap instead.
        return rlimits_for(limits, nproc=nproc, data=not _has_memory_controller(cgroup))

    def _bwrap_args(
        self,
        spec: RunSpec,
        env: dict[str, str],
        fs: RunFs,
        python_binds: tuple[Path, ...],
    ) -> list[str]:
        # An unprivileged slirp4netns must enter the user namespace that owns
        # the network namespace; --disable-userns would nest the program one
        # level deeper, out of its reach. A root slirp4netns enters directly.
        disable_userns = not (spec.network == "egress" and not self.privileged)
        args = ["--unshare-all", "--unshare-user"]
        if disable_userns:
            args.append("--disable-userns")
        if spec.network == "host":
            args.append("--share-net")
        args += [
            "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", HOSTNAME,
            "--ro-bind", "/usr", "/usr",
        ]  # fmt: skip
        args += _mirror_entries(SYSTEM_DIRS)
        tmp_bytes = str(spec.limits.tmp_mb * MIB)
        args += [
            "--proc", "/proc",
            "--dev", "/dev",
            # The sandbox's own size-capped tmpfs mounts, not the host's /tmp.
            "--perms", "01777", "--size", tmp_bytes, "--tmpfs", "/tmp",  # noqa: S108
            "--perms", "01777", "--size", tmp_bytes, "--tmpfs", "/dev/shm",  # noqa: S108
            "--ro-bind", str(self.etc.path(spec.network)), "/etc",
            *(a for src, name in self.etc.binds(spec.network) for a in ("--ro-bind", src, name)),
            "--perms", "0755", "--dir", "/run",
            "--perms", "0755", "--dir", RUN_DIR,
            "--perms", "0755", "--dir", BIN_DIR,
        ]  # fmt: skip
        for directory in python_binds:
            args += ["--ro-bind", str(directory), str(directory)]
        args += [
            "--bind", str(fs.work), WORKDIR,
            "--bind", str(fs.output), OUTPUT_DIR,
            "--ro-bind", str(fs.payload), PAYLOAD,
        ]  # fmt: skip
        if fs.state is not None:
            args += ["--ro-bind", str(fs.state), STATE]
        if spec.pythonpath_dir is not None:
            args += ["--ro-bind", str(spec.pythonpath_dir), SDK_DIR]
        if spec.environment_dir is not None:
            args += ["--ro-bind", str(spec.environment_dir), ENV_DIR]
        for name in ("python3", "python"):
            args += ["--symlink", str(spec.python), f"{BIN_DIR}/{name}"]
        args += ["--remount-ro", "/", "--chdir", WORKDIR]
        for key, value in env.items():
            args += ["--setenv", key, value]
        return args


def _sandbox_paths(spec: RunSpec) -> RunPaths:
    return RunPaths(
        workdir=WORKDIR,
        output_dir=OUTPUT_DIR,
        payload=PAYLOAD,
        state=STATE if spec.state_file is not None else None,
        pythonpath=SDK_DIR if spec.pythonpath_dir is not None else None,
        bin_dirs=interpreter_dirs(spec.python, BIN_DIR),
        home=HOME,
        tmpdir="/tmp",  # noqa: S108
        packages=ENV_DIR if spec.environment_dir is not None else None,
    )


def _mirror_entries(paths: Sequence[str]) -> list[str]:
    """Recreate host symlinks as symlinks, bind the rest read-only; skip what is absent."""
    args: list[str] = []
    for path in paths:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


def _etc_files(network: str) -> dict[str, bytes]:
    """Files synthesised for the sandbox: its own user database, hosts and resolver."""
    files = {
        "/etc/passwd": (
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:{HOME}:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "/etc/group": f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\nnogroup:x:65534:\n",
        "/etc/hosts": (
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
        ),
        "/etc/nsswitch.conf": (
            "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
            "networks: files\nprotocols: files\nservices: files\n"
        ),
    }
    if network == "egress":
        files["/etc/resolv.conf"] = RESOLV_CONF
    return {path: text.encode() for path, text in files.items()}


def _python_dirs(python: Path) -> tuple[Path, ...]:
    """Ask the interpreter where it lives; bind the prefixes outside /usr."""
    if not os.access(python, os.X_OK):
        raise SandboxError(f"the run interpreter {python} does not exist or is not executable")
    code = (
        "import sys, json; print(json.dumps([sys.prefix, sys.base_prefix, "
        "sys.exec_prefix, sys.base_exec_prefix, sys.executable]))"
    )
    try:
        result = subprocess.run(
            [str(python), "-I", "-c", code], env={}, capture_output=True, timeout=30, check=True
        )
        found = [Path(p) for p in json.loads(result.stdout)]
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise SandboxError(f"cannot query the run interpreter {python}: {exc}") from exc
    candidates = {*found[:4], python.parent, python.resolve().parent, found[4].parent}
    dirs = sorted({p.resolve() for p in candidates if str(p)})
    outside = [d for d in dirs if not _under(d, Path("/usr")) and d != Path("/")]
    # Keep only outermost directories: binding a parent already covers its children.
    return tuple(d for d in outside if not any(o != d and _under(d, o) for o in outside))


def _under(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _has_memory_controller(cgroup: RunCgroup) -> bool:
    return cgroup.active and cgroup.limits_memory


def _tasks_of_uid(uid: int) -> int:
    count = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1 0").split()[0]) == uid:
            count += int(fields.get("Threads", "1").strip())
    return count


def _setup_error(capture: LogCapture) -> tuple[str, bool]:
    """bubblewrap's message, and whether it is about the program (its entrypoint)."""
    lines = [ln for ln in capture.result().decode(errors="replace").splitlines() if ln]
    message = next((ln for ln in reversed(lines) if ln.startswith("bwrap:")), None)
    if message and "execvp" in message:
        return f"cannot execute the entrypoint ({message})", True
    return f"the sandbox failed to start ({message or 'no message'})", False
