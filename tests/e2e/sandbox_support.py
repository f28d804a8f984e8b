"""Helpers for the sandbox end-to-end tests: real bubblewrap, real runs.

Tests skip with the reason when bubblewrap or user namespaces are missing,
except under ``CI=true``, where a missing sandbox is a failure: CI must
exercise it.
"""

from __future__ import annotations

import functools
import os
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from automation_server.sandbox.base import Executor, Limits, Outcome, RunSpec
from automation_server.sandbox.bwrap import BwrapExecutor, BwrapSettings
from automation_server.sandbox.probe import probe_bwrap

REPO = Path(__file__).resolve().parents[2]
SDK_DIR = REPO / "sdk"
SYSTEM_PYTHON = Path("/usr/bin/python3")
GRACE_S = 0.5
SMALL = Limits(memory_mb=256, pids_max=64, tmp_mb=16, workdir_mb=32, cpu_seconds=60)


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true (a CI run must not silently skip the sandbox)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"sandbox unavailable in CI: {reason}")
    pytest.skip(reason)


@functools.cache
def _probe() -> str | None:
    uid = 200_000 if os.geteuid() == 0 else None
    result = probe_bwrap(None, uid)
    return None if result.works else (result.error or "bubblewrap does not work")


@functools.cache
def _executor() -> BwrapExecutor:
    return BwrapExecutor(BwrapSettings(grace_s=GRACE_S))


def bwrap_executor() -> BwrapExecutor:
    problem = _probe()
    if problem is not None:
        unavailable(f"bubblewrap sandbox unavailable: {problem}")
    if not SYSTEM_PYTHON.exists():
        unavailable(f"{SYSTEM_PYTHON} (the in-sandbox python) is missing")
    return _executor()


def require_root(executor: BwrapExecutor) -> None:
    """Some checks only mean something with per-run uids (a root worker); CI runs as root,
    so there a missing root worker fails the test instead of skipping it."""
    if not executor.privileged:
        unavailable("needs a root worker (one host uid per run)")


def make_spec(
    tmp_path: Path,
    files: dict[str, str],
    *,
    argv: tuple[str, ...] = ("python3", "main.py"),
    env: dict[str, str] | None = None,
    timeout_s: float = 20.0,
    limits: Limits = SMALL,
    payload: str = '{"hello": "world"}',
    **overrides: object,
) -> RunSpec:
    """A run of ``files`` (name -> source, dedented) in a fresh workdir under tmp_path."""
    workdir = tmp_path / "work"
    output = tmp_path / "output"
    for directory in (workdir, output):
        directory.mkdir(exist_ok=True)
    for name, source in files.items():
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    payload_file = tmp_path / "payload.json"
    payload_file.write_text(payload)
    spec_args: dict[str, object] = {
        "run_id": f"run-{tmp_path.name}",
        "workdir": workdir,
        "output_dir": output,
        "payload_file": payload_file,
        "argv": argv,
        "env": env if env is not None else {"AUTOMATION_RUN_ID": f"run-{tmp_path.name}"},
        "timeout_s": timeout_s,
        "limits": limits,
        "pythonpath_dir": SDK_DIR,
        "python": SYSTEM_PYTHON,
    }
    spec_args.update(overrides)
    return RunSpec(**spec_args)  # type: ignore[arg-type]


def run(executor: Executor, spec: RunSpec) -> Outcome:
    return executor.run(spec, cancel=threading.Event())


class Background:
    """A run in a thread, with its output as it arrives (to look at it while it runs)."""

    def __init__(self, executor: Executor, spec: RunSpec) -> None:
        self.cancel = threading.Event()
        self.output = bytearray()
        self._lock = threading.Lock()
        self.outcome: Outcome | None = None
        self._thread = threading.Thread(target=self._run, args=(executor, spec), daemon=True)
        self._thread.start()

    def _run(self, executor: Executor, spec: RunSpec) -> None:
        self.outcome = executor.run(spec, cancel=self.cancel, on_output=self._on_output)

    def _on_output(self, chunk: bytes) -> None:
        with self._lock:
            self.output += chunk

    def wait_for_output(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if text.encode() in self.output:
                    return
            if self.outcome is not None:
                break
            time.sleep(0.01)
        raise AssertionError(f"never printed {text!r}; output: {bytes(self.output)!r}")

    def result(self, timeout: float = 30.0) -> Outcome:
        self._thread.join(timeout)
        assert self.outcome is not None, "the run did not finish"
        return self.outcome


def processes_with_uid(uids: range) -> dict[int, int]:
    """pid -> real uid of every live host process whose real uid is in ``uids``.

    Zombies do not count: bubblewrap's PID 1 ends as an orphaned zombie that
    the host's init reaps (at once on usual inits; some VM inits poll).
    """
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            lines = Path(f"/proc/{name}/status").read_text().splitlines()
        except OSError:
            continue
        fields = {ln.split(":", 1)[0]: ln.split(":", 1)[1].split() for ln in lines if ":" in ln}
        uid = int(fields["Uid"][0])
        if uid in uids and fields["State"][0] not in ("Z", "X"):
            found[int(name)] = uid
    return found


def processes_matching(predicate: Callable[[bytes], bool]) -> list[int]:
    """Host PIDs whose command line satisfies ``predicate``."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if predicate(cmdline):
            pids.append(int(name))
    return pids


def run_uids(executor: BwrapExecutor) -> range:
    settings = executor.settings
    return range(settings.uid_base, settings.uid_base + settings.uid_count)


@contextmanager
def tcp_listener(host: str) -> Iterator[int]:
    """A TCP server on host that answers every connection with b'hello'; yields its port."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind((host, 0))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"hello")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def host_address() -> str | None:
    """This host's address on its default route (not loopback), if it has one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent for UDP connect
        address: str = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address
