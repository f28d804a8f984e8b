"""The executor interface: what a worker hands to a sandbox and what it gets back.

A worker extracts a run's tarball into a fresh host directory, writes the payload
file, builds a :class:`RunSpec` and calls :meth:`Executor.run`. Executors are
interchangeable (bubblewrap, no sandbox, later a cluster engine), so everything
a worker needs to know about a finished run is in :class:`Outcome`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from automation_server.errors import SandboxError

__all__ = [
    "Executor",
    "Limits",
    "NetworkMode",
    "OnOutput",
    "Outcome",
    "RunSpec",
    "RunStatus",
    "SandboxError",
]

NetworkMode = Literal["none", "egress", "host"]
RunStatus = Literal["succeeded", "failed", "timed_out", "cancelled"]
OnOutput = Callable[[bytes], None]


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run (the automation's ``limits`` plus executor extras)."""

    memory_mb: int = 512
    cpu_seconds: int = 600  # CPU time per process (RLIMIT_CPU)
    pids_max: int = 256  # processes and threads of the program
    tmp_mb: int = 256  # size of the /tmp tmpfs
    max_log_bytes: int = 1_048_576
    workdir_mb: int = 1024  # working directory plus output directory
    nofile: int = 1024
    cpus: float = 1.0  # CPU bandwidth in cores (cgroup cpu quota)


@dataclass(frozen=True)
class RunSpec:
    """Everything an executor needs to start one run."""

    run_id: str
    workdir: Path  # host dir holding the extracted tarball
    output_dir: Path  # host dir (exists); gets the run's output files after exit
    payload_file: Path  # host file with the JSON payload
    argv: Sequence[str]  # argv[0]: command on the sandbox PATH or path relative to workdir
    env: Mapping[str, str]  # AUTOMATION_* variables, user env and decrypted secrets
    timeout_s: float
    network: NetworkMode = "none"
    limits: Limits = field(default_factory=Limits)
    pythonpath_dir: Path | None = None  # host dir holding the in-run automation_sdk package
    python: Path = Path("/usr/bin/python3")  # interpreter `python3` resolves to inside
    environment_dir: Path | None = None  # host dir of the variant's installed packages
    state_file: Path | None = None  # host file with the automation's state (JSON), read-only


@dataclass(frozen=True)
class Outcome:
    """How a run ended. ``log`` is stdout and stderr interleaved, capped head + tail."""

    status: RunStatus
    exit_code: int | None  # 128+n when killed by signal n; None if it never started
    error: str | None
    duration_ms: int
    log: bytes
    log_bytes: int  # total bytes the run wrote, including any left out of ``log``
    log_truncated: bool
    sandbox: str  # "bwrap" or "none"
    limits: Limits


class Executor(Protocol):
    """Runs one :class:`RunSpec` to completion; safe to call from several threads."""

    name: str

    def run(
        self,
        spec: RunSpec,
        *,
        cancel: threading.Event,
        on_output: OnOutput | None = None,
    ) -> Outcome:
        """Run ``spec`` and block until every process of it is gone.

        ``cancel`` may be set from any thread; the run then ends ``cancelled``.
        ``on_output`` receives output chunks as they arrive, from another thread.
        Problems of the run itself (missing entrypoint, exit codes, limits) come
        back as a failed :class:`Outcome`; :class:`SandboxError` means the
        sandbox itself could not be set up.
        """
        ...

    def describe(self) -> str:
        """One line for the start-up log: which isolation mechanisms are active."""
        ...
