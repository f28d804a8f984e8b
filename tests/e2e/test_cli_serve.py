"""The real CLI: create-key, migrate and serve as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import free_port, targz

CLI = str(Path(sys.executable).with_name("automation-server"))


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATION_")}
    env.update({"AUTOMATION_DATA_DIR": str(data_dir), "AUTOMATION_SANDBOX": "none", **extra})
    return env


def test_create_key_prints_the_key_alone_on_the_last_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [CLI, "create-key", "--org", "acme", "--scope", "write"],
        env=_env(tmp_path / "var"),
        capture_output=True,
        text=True,
        check=True,
    )
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("ak_") and " " not in last
    assert (tmp_path / "var" / "automation.db").exists()


def test_migrate_reports_the_revision(tmp_path: Path) -> None:
    out = subprocess.run(
        [CLI, "migrate"], env=_env(tmp_path / "var"), capture_output=True, text=True, check=True
    )
    assert "database at revision" in out.stdout


def test_bad_setting_is_a_clear_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [CLI, "migrate"],
        env=_env(tmp_path / "var", AUTOMATION_PORT="eighty"),
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "AUTOMATION_PORT" in out.stderr


def test_serve_on_the_embedded_default(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = _env(data_dir)
    key = (
        subprocess.run(
            [CLI, "create-key", "--org", "acme"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    port = free_port()
    proc = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        assert httpx.get(f"{base}/ready").status_code == 200
        headers = {"Authorization": f"Bearer {key}"}
        up = httpx.post(
            f"{base}/v1/uploads", content=targz({"main.py": "print(1)"}), headers=headers
        )
        assert up.status_code == 201
        made = httpx.post(
            f"{base}/v1/automations",
            headers=headers,
            json={"name": "hello", "tarball": up.json()["ref"]},
        )
        assert made.status_code == 201, made.text
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    # The resolved data directory is logged at start, as JSON lines.
    starts = [
        json.loads(line)
        for line in stderr.splitlines()
        if line.startswith("{") and "process.starting" in line
    ]
    assert starts and starts[0]["data_dir"] == str(data_dir.resolve())
    assert (data_dir / "automation.db").exists() and (data_dir / "blobs").is_dir()
