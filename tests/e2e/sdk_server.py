"""A real ``automation-server serve`` process for the SDK and CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import free_port, package_env

SERVER_CLI = str(Path(sys.executable).with_name("automation-server"))
AUTOMATION_CLI = str(Path(sys.executable).with_name("automation"))
ROOT = Path(__file__).resolve().parents[2]


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATION_")}
    env.update(
        {
            "AUTOMATION_DATA_DIR": str(data_dir),
            "AUTOMATION_SANDBOX": "none",
            "AUTOMATION_LOG_LEVEL": "warning",
            "AUTOMATION_POLL_S": "0.2",
            "AUTOMATION_HEARTBEAT_S": "0.5",
            "AUTOMATION_KILL_GRACE_S": "0.5",
            **package_env(),
            **extra,
        }
    )
    return env


@dataclass
class Served:
    base_url: str
    data_dir: Path
    env: dict[str, str]
    log_path: Path

    def new_key(self, org: str = "acme", scope: str = "admin") -> str:
        """A key made the way a user makes one: the last line of ``create-key``."""
        out = subprocess.run(
            [SERVER_CLI, "create-key", "--org", org, "--scope", scope],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def serve(root: Path, **env: str) -> Iterator[Served]:
    """Start ``automation-server serve`` on a free port; stop it on exit."""
    data_dir = root / "var"
    full_env = server_env(data_dir, **env)
    port = free_port()
    log_path = root / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [SERVER_CLI, "serve", "--port", str(port)],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", data_dir, full_env, log_path)
    try:
        _wait_ready(served, proc)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(served: Served, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{served.base_url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {served.log()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not start: {served.log()}")
        time.sleep(0.1)
