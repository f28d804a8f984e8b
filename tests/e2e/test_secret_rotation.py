"""``automation-server rotate-secret-key`` re-encrypts every secret under a new key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from automation_server.security.crypto import SecretBox, SecretKeyError
from automation_server.services import build_services
from tests.e2e.processes import CLI, process_env
from tests.support import live_server, settings_for, targz


def test_rotation_reencrypts_secrets_and_webhook_secrets(tmp_path: Path, sqlite_url: str) -> None:
    data_dir = tmp_path / "var"
    services = build_services(settings_for(data_dir, sqlite_url))
    with live_server(services) as server:
        http = server.client(server.new_key())
        ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
        hook = http.post(
            "/v1/automations",
            json={
                "name": "h",
                "tarball": ref,
                "trigger": {"type": "webhook"},
                "secrets": {"TOKEN": "tok-value-1"},
            },
        ).json()
    services.close()
    old_key = (data_dir / "secret.key").read_text().strip()
    out = subprocess.run(
        [CLI, "rotate-secret-key"],
        env=process_env(data_dir, sqlite_url),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "re-encrypted 1 secrets and 1 webhook secrets" in out.stdout
    new_key = (data_dir / "secret.key").read_text().strip()
    assert new_key != old_key and (data_dir / "secret.key").stat().st_mode & 0o777 == 0o600
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        token = conn.execute(sa.text("SELECT ciphertext FROM automation_secrets")).scalar_one()
        webhook = conn.execute(sa.text("SELECT webhook_secret FROM automations")).scalar_one()
    engine.dispose()
    assert SecretBox(new_key).decrypt(token) == "tok-value-1"
    assert SecretBox(new_key).decrypt(webhook) == hook["webhook_secret"]
    with pytest.raises(SecretKeyError):
        SecretBox(old_key).decrypt(token)
