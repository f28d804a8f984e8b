"""Starting real server processes (worker, api, scheduler) for multi-process tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.cluster import json_events
from tests.support import package_env

CLI = str(Path(sys.executable).with_name("automation-server"))


def process_env(data_dir: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATION_")}
    env.update(
        {
            "AUTOMATION_DATA_DIR": str(data_dir),
            "AUTOMATION_DATABASE_URL": database_url,
            "AUTOMATION_LOG_LEVEL": "info",
            **package_env(),
            **extra,
        }
    )
    return env


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log_path: Path
    name: str

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines this process wrote so far."""
        return json_events(self.log_path.read_text(errors="replace"))

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def stop(self, timeout: float = 60) -> int:
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()


def start(command: list[str], env: dict[str, str], log_dir: Path, name: str) -> Proc:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as fh:  # the child keeps its own copy of the descriptor
        popen = subprocess.Popen([CLI, *command], env=env, stdout=fh, stderr=subprocess.STDOUT)
    return Proc(popen, log_path, name)
