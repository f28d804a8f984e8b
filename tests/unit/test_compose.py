"""``deploy/compose.yaml`` cannot run here (no Docker): check what can be checked.

Its services, their order, health checks and the settings each server process
gets, read by the server's own settings parser, so a renamed variable or a
wrong value fails here rather than on an operator's first ``docker compose up``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from automation_server.cli import doctor
from automation_server.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVERS = ("migrate", "api", "worker", "scheduler")


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / "automation.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME:?message}`` and ``${NAME}``."""
    return re.sub(r"\$\{(\w+)(?::\?[^}]*)?\}", lambda m: env[m.group(1)], value)


def test_the_topology_is_postgres_minio_one_api_two_workers_one_scheduler() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "minio", "bucket", *SERVERS}
    assert services["worker"]["deploy"]["replicas"] == 2
    for name in SERVERS:
        service = services[name]
        assert service["build"] == {"context": "..", "dockerfile": "Dockerfile"}
        assert service["env_file"] == "automation.env"
        assert service["command"][:2] == ["automation-server", name]
    for name in ("api", "worker", "scheduler"):
        assert "healthcheck" in services[name], name
        after = services[name]["depends_on"]
        assert after["migrate"]["condition"] == "service_completed_successfully"
        assert after["bucket"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert (DEPLOY / ".." / "Dockerfile").resolve().is_file()


def test_every_server_process_gets_settings_the_server_accepts() -> None:
    shared = env_example()
    assert "AUTOMATION_SECRET_KEY" in shared, "the key comes from the env file"
    for name in SERVERS:
        environment = compose()["services"][name]["environment"]
        env = {**shared, **{k: interpolate(str(v), shared) for k, v in environment.items()}}
        env["AUTOMATION_SECRET_KEY"] = "set-by-the-operator"
        settings = load_settings(env)
        assert settings.database_url.startswith("postgresql+psycopg://automation:")
        assert settings.blob_url == "s3://automation/prod"
        assert settings.s3_endpoint_url == "http://minio:9000"
        assert settings.log_format == "json"


def test_health_checks_call_commands_that_exist() -> None:
    services = compose()["services"]
    roles = next(p for p in doctor.params if p.name == "role").type.choices  # type: ignore[attr-defined]
    for name in ("worker", "scheduler"):
        test = services[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "automation-server", "doctor"]
        assert test[test.index("--role") + 1] == name and name in roles
    assert "/ready" in " ".join(services["api"]["healthcheck"]["test"])


def test_the_dockerfile_copies_what_exists() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
