"""What isolation this host can give: checked once at start-up, logged in one line.

``probe_bwrap`` starts a throw-away sandbox with the same namespaces a run
gets, as the same kind of user (a root worker checks as its first run uid),
so a host where user namespaces are disabled is found at start-up with the
reason, not at the first run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

_PROBE_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class BwrapProbe:
    path: str | None
    version: str | None
    works: bool
    error: str | None


def probe_bwrap(bwrap_path: str | None = None, uid: int | None = None) -> BwrapProbe:
    """Whether bubblewrap exists and can create the run's namespaces as ``uid``."""
    path = bwrap_path or shutil.which("bwrap")
    if path is None or not os.access(path, os.X_OK):
        return BwrapProbe(None, None, False, "bubblewrap (bwrap) is not installed")
    try:
        version = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, env={}
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return BwrapProbe(path, None, False, f"cannot run {path}: {exc}")
    argv = [
        path, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
        "--uid", "1000", "--gid", "1000", "--ro-bind", "/usr", "/usr",
        *_lib_links(), "--proc", "/proc", "--dev", "/dev", "--", "/usr/bin/true",
    ]  # fmt: skip
    setpriv = shutil.which("setpriv")
    if uid is not None and os.geteuid() == 0 and uid != 0:
        if setpriv is None:
            return BwrapProbe(path, version, False, "setpriv (util-linux) is not installed")
        argv = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *argv]
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, env={}
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return BwrapProbe(path, version, False, str(exc))
    if result.returncode != 0:
        message = result.stderr.strip() or f"exit code {result.returncode}"
        return BwrapProbe(path, version, False, message)
    return BwrapProbe(path, version, True, None)


def _lib_links() -> list[str]:
    args: list[str] = []
    for top in ("/bin", "/lib", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    return args


def sandbox_help(problem: str) -> str:
    """The error an operator sees when the sandbox cannot work here, with the ways out."""
    return (
        f"cannot run code in the bubblewrap sandbox: {problem}. Install it with "
        "'apt-get install bubblewrap' (and allow unprivileged user namespaces: "
        "sysctl user.max_user_namespaces=15000, and on Debian/Ubuntu "
        "kernel.unprivileged_userns_clone=1 / kernel.apparmor_restrict_unprivileged_userns=0), "
        "or set AUTOMATION_SANDBOX=none to run code without isolation"
    )
