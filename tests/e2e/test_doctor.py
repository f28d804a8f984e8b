"""``automation-server doctor`` and the log format an operator sees, from the real CLI."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from automation_server.db.engine import Database
from automation_server.security.keycheck import verify_key
from tests.e2e.conftest import require_bwrap
from tests.e2e.processes import CLI, process_env
from tests.support import free_port


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "doctor", *args], env=env, capture_output=True, text=True, timeout=120
    )


def lines_of(out: str, mark: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(mark)]


def test_doctor_on_a_fresh_data_dir_says_to_migrate_then_passes(tmp_path: Path) -> None:
    require_bwrap()
    data_dir = tmp_path / "var"
    env = process_env(data_dir, f"sqlite:///{data_dir}/automation.db")
    first = doctor(env)
    assert first.returncode == 1, first.stdout
    assert "FAIL  database       no database at" in first.stdout
    assert "-> run: automation-server migrate" in first.stdout
    subprocess.run([CLI, "migrate"], env=env, check=True, capture_output=True)
    second = doctor(env)
    assert second.returncode == 0, second.stdout
    for name in ("database", "object store", "sandbox", "run python", "uv"):
        assert any(line[6:].startswith(name) for line in lines_of(second.stdout, "ok  ")), name
    assert "reachable, at migration" in second.stdout and "(the latest)" in second.stdout
    assert "works: bubblewrap" in second.stdout
    assert not list((data_dir / "blobs").rglob("*doctor*")), "the probe object is deleted"
    assert not (data_dir / "secret.key").exists(), "doctor creates no key"


def test_doctor_refuses_a_key_that_is_not_the_deployments(tmp_path: Path, pg_url: str) -> None:
    deployment, other = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    db = Database(pg_url, pool_size=1)
    verify_key(db, [deployment], "AUTOMATION_SECRET_KEY")
    db.dispose()
    env = process_env(tmp_path / "var", pg_url, AUTOMATION_SECRET_KEY=other)
    out = doctor(env, "--role", "scheduler")
    assert out.returncode == 1
    assert "FAIL  secret key" in out.stdout and "not this deployment's key" in out.stdout
    assert other not in out.stdout and deployment not in out.stdout
    # Settings that keep a PostgreSQL deployment on one host are pointed out.
    assert "warn  several hosts  the object store is files under" in out.stdout
    checked = [
        line[6:].split("  ")[0]
        for line in out.stdout.splitlines()
        if line.startswith(("ok  ", "warn", "FAIL"))
    ]
    assert "sandbox" not in checked and "uv" not in checked, "a scheduler needs neither"

    good = doctor({**env, "AUTOMATION_SECRET_KEY": f"{other},{deployment}"}, "--json")
    body = json.loads(good.stdout)
    checks = {c["name"]: c for c in body["checks"]}
    assert checks["secret key"]["outcome"] == "ok", checks["secret key"]
    assert "an older key" in checks["secret key"]["detail"]
    assert body["settings"]["database"].startswith("postgresql")
    assert body["role"] == "serve" and "sandbox" in checks


def test_doctor_reports_an_unreachable_database_with_what_to_check(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    out = doctor(process_env(tmp_path / "var", url), "--role", "api")
    assert out.returncode == 1
    assert "FAIL  database" in out.stdout
    assert "-> check AUTOMATION_DATABASE_URL and that the database server is up" in out.stdout


def _stderr_of_create_key(tmp_path: Path, *, terminal: bool, **env: str) -> str:
    data_dir = tmp_path / f"var-{terminal}-{len(env)}"
    environ = process_env(data_dir, f"sqlite:///{data_dir}/automation.db", **env)
    environ.pop("AUTOMATION_LOG_FORMAT", None)
    environ.update(env)
    if not terminal:
        done = subprocess.run(
            [CLI, "create-key", "--org", "x"], env=environ, capture_output=True, text=True
        )
        return done.stderr
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [CLI, "create-key", "--org", "x"],
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=follower,
            timeout=120,
        )
        assert done.returncode == 0
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal has no writer left
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")
    finally:
        os.close(leader)


@pytest.mark.parametrize(
    ("terminal", "env", "json_lines"),
    [
        (True, {}, False),
        (False, {}, True),
        (True, {"AUTOMATION_LOG_FORMAT": "json"}, True),
        (False, {"AUTOMATION_LOG_FORMAT": "console"}, False),
    ],
)
def test_logs_are_readable_at_a_terminal_and_json_otherwise(
    tmp_path: Path, terminal: bool, env: dict[str, str], json_lines: bool
) -> None:
    stderr = _stderr_of_create_key(tmp_path, terminal=terminal, **env)
    line = next(line for line in stderr.splitlines() if "db.migrating" in line)
    if json_lines:
        assert json.loads(line)["event"] == "db.migrating"
    else:
        assert not line.lstrip().startswith("{") and "component=cli" in line
