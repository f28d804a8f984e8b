"""What the program sees: its environment, its entrypoint, and how its end is described.

Shared by every executor so a run behaves the same with or without a sandbox.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from automation_server.sandbox.base import Limits, Outcome, RunSpec, RunStatus
from automation_server.sandbox.logcap import LogCapture
from automation_server.sandbox.supervise import Ending

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PYTHON_NAME = re.compile(r"^python(3(\.\d+)?)?$")

# Names the executor sets; DESIGN section 5 lists them as the run environment.
EXECUTOR_VARS = ("PATH", "HOME", "TMPDIR", "LANG", "PYTHONPATH")
DEFAULT_PATH_DIRS = ("/usr/local/bin", "/usr/bin", "/bin")
PROVIDED = ("python3", "python")  # in the run's own bin directory, first on PATH


class RunInputError(Exception):
    """The run cannot start because of what it asked for (reported as a failed run)."""


@dataclass(frozen=True)
class RunPaths:
    """Where things are, as the program sees them."""

    workdir: str
    output_dir: str
    payload: str
    pythonpath: str | None
    bin_dirs: tuple[str, ...]  # where `python3` is the run's interpreter; first on PATH
    home: str
    tmpdir: str
    # The variant's installed packages (importable after the SDK) and their scripts.
    packages: str | None = None
    state: str | None = None  # the automation's state as of the run's start (read-only)

    def package_bin(self) -> tuple[str, ...]:
        return (f"{self.packages}/bin",) if self.packages else ()


def build_env(env: Mapping[str, str], paths: RunPaths) -> dict[str, str]:
    """The program's whole environment: the caller's variables plus ours, nothing else.

    User values for PATH, HOME, TMPDIR and LANG win (they are deliberate); a
    user PYTHONPATH is appended after the SDK's directory so the SDK imports.
    """
    check_env(env)
    result = {
        "PATH": ":".join((*paths.bin_dirs, *paths.package_bin(), *DEFAULT_PATH_DIRS)),
        "HOME": paths.home,
        "TMPDIR": paths.tmpdir,
        "LANG": "C.UTF-8",
    }
    result.update(env)
    user_pythonpath = env.get("PYTHONPATH")
    # The SDK first, so an environment can never shadow automation_sdk.
    parts = [p for p in (paths.pythonpath, paths.packages, user_pythonpath) if p]
    if parts:
        result["PYTHONPATH"] = ":".join(parts)
    else:
        result.pop("PYTHONPATH", None)
    result["AUTOMATION_PAYLOAD"] = paths.payload
    result["AUTOMATION_OUTPUT_DIR"] = paths.output_dir
    if paths.state is not None:
        result["AUTOMATION_STATE"] = paths.state
    return result


def check_env(env: Mapping[str, str]) -> None:
    """Refuse names and values that cannot be an environment (and could smuggle options)."""
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise RunInputError(f"invalid environment variable name {name!r}")
        if "\0" in value:
            raise RunInputError(f"environment variable {name} contains a NUL byte")


def check_argv(argv: Sequence[str]) -> None:
    if not argv or not argv[0]:
        raise RunInputError("the entrypoint is empty")
    for arg in argv:
        if "\0" in arg:
            raise RunInputError("the entrypoint contains a NUL byte")
    first = PurePosixPath(argv[0])
    if first.is_absolute() or ".." in first.parts:
        raise RunInputError(f"entrypoint {argv[0]!r} must be relative to the tarball root")


@dataclass(frozen=True)
class Entrypoint:
    """argv with argv[0] rewritten to what exec needs (``./x`` for files in the tarball)."""

    argv: tuple[str, ...]
    in_workdir: bool


def resolve_entrypoint(
    argv: Sequence[str], workdir: Path, path_dirs: Sequence[Path], bin_names: Sequence[str]
) -> Entrypoint:
    """Resolve argv[0] before anything starts so a typo gets a clear error.

    A name with a slash is a path in the tarball. A bare name is a command on
    the sandbox PATH (``bin_names`` are the ones the executor provides itself,
    ``path_dirs`` the host directories that are the rest of PATH), else a file
    at the tarball root. For ``python3 script.py`` the script must exist too.
    """
    check_argv(argv)
    name = argv[0]
    resolved: tuple[str, ...]
    if "/" not in name and (name in bin_names or _on_path(name, path_dirs)):
        resolved = tuple(argv)
        in_workdir = False
    elif _is_file(workdir, name):
        resolved = (name if name.startswith("./") else "./" + name, *argv[1:])
        in_workdir = True
    else:
        where = "" if "/" in name else " (nor on the sandbox PATH)"
        raise RunInputError(f"entrypoint {name!r} not found in the tarball{where}")
    if _PYTHON_NAME.match(PurePosixPath(name).name) and len(argv) > 1:
        script = argv[1]
        relative = not script.startswith(("-", "/")) and ".." not in PurePosixPath(script).parts
        if relative and script.endswith(".py") and not _is_file(workdir, script):
            raise RunInputError(f"entrypoint {script!r} not found in the tarball")
    return Entrypoint(argv=resolved, in_workdir=in_workdir)


def resolve_run_entrypoint(argv: Sequence[str], workdir: Path) -> Entrypoint:
    """:func:`resolve_entrypoint` with the PATH every executor gives a run."""
    return resolve_entrypoint(argv, workdir, [Path(d) for d in DEFAULT_PATH_DIRS], PROVIDED)


def interpreter_dirs(python: Path, bin_dir: str) -> tuple[str, ...]:
    """PATH entries that make ``python3`` the run's interpreter.

    ``bin_dir`` holds ``python3``/``python`` symlinks to it. A virtualenv's
    interpreter must be started by its own path, though (Python finds
    ``pyvenv.cfg`` next to the path it was started as, not through a
    symlink), so a virtualenv's ``bin`` comes first.
    """
    if (python.parent.parent / "pyvenv.cfg").is_file():
        return (str(python.parent), bin_dir)
    return (bin_dir,)


def _on_path(name: str, path_dirs: Sequence[Path]) -> bool:
    return any(os.access(d / name, os.X_OK) and (d / name).is_file() for d in path_dirs)


def _is_file(workdir: Path, relative: str) -> bool:
    """True for a regular file inside workdir (symlinks allowed if they stay inside)."""
    candidate = workdir / relative
    if "/" not in relative:  # a file at the root: one lstat, no path resolution
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(candidate).st_mode):
                return True
    try:
        real = candidate.resolve(strict=True)
        root = workdir.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return real.is_relative_to(root) and real.is_file()


def describe_exit(code: int) -> str | None:
    """Error text for a program's exit status (None for success).

    Death by signal ``n`` is reported as ``128 + n``, the shell convention that
    bubblewrap itself uses; ``Popen``'s negative codes are converted first.
    """
    if code == 0:
        return None
    if 128 < code <= 128 + 64:
        sig = code - 128
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by signal {name} (exit code {code})"
    return f"exit code {code}"


def normalise_returncode(returncode: int) -> int:
    """``Popen.returncode`` -n (killed by signal n) becomes 128+n."""
    return 128 - returncode if returncode < 0 else returncode


def make_outcome(
    spec: RunSpec,
    status: RunStatus,
    exit_code: int | None,
    error: str | None,
    duration_ms: int,
    capture: LogCapture,
    sandbox: str = "bwrap",
) -> Outcome:
    return Outcome(
        status=status,
        exit_code=exit_code,
        error=error,
        duration_ms=duration_ms,
        log=capture.result(),
        log_bytes=capture.total,
        log_truncated=capture.truncated,
        sandbox=sandbox,
        limits=spec.limits,
    )


def stopped_outcome(
    spec: RunSpec,
    ending: Ending,
    code: int,
    grace_s: float,
    duration_ms: int,
    capture: LogCapture,
    sandbox: str,
) -> Outcome | None:
    """The outcome of a run the executor stopped; None when it ended by itself."""
    if ending.reason == "timed_out":
        error = f"timed out after {spec.timeout_s:g} s"
        if ending.killed_after_grace:
            error += f"; killed {grace_s:g} s after SIGTERM"
        return make_outcome(spec, "timed_out", code, error, duration_ms, capture, sandbox)
    if ending.reason == "cancelled":
        return make_outcome(spec, "cancelled", code, "cancelled", duration_ms, capture, sandbox)
    if ending.reason == "limit":
        return make_outcome(spec, "failed", code, ending.detail, duration_ms, capture, sandbox)
    return None


def failure_error(code: int, limits: Limits, *, oom_killed: bool = False) -> str | None:
    """Error text for a program that exited by itself with ``code``."""
    if oom_killed:
        return f"memory limit of {limits.memory_mb} MB exceeded (exit code {code})"
    if code == 128 + signal.SIGXCPU:
        return f"CPU time limit of {limits.cpu_seconds} s exceeded (exit code {code})"
    return describe_exit(code)
