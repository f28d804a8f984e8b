"""Settings, parsed once at start from ``AUTOMATION_*`` environment variables.

Each process's ``main()`` calls :func:`load_settings` and passes the frozen result
down; nothing reads the environment at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SandboxMode = Literal["bwrap", "none"]


class SettingsError(ValueError):
    """An ``AUTOMATION_*`` variable has a value the server cannot use."""


@dataclass(frozen=True)
class RunLimits:
    """Per-run resource limits (the ``limits`` object of an automation)."""

    memory_mb: int = 512
    cpu_seconds: int = 600
    pids_max: int = 256
    tmp_mb: int = 256
    max_log_bytes: int = 1_048_576


@dataclass(frozen=True)
class LimitSettings:
    """Server-wide defaults and maximums for what automations may ask for."""

    default: RunLimits = field(default_factory=RunLimits)
    maximum: RunLimits = field(
        default_factory=lambda: RunLimits(
            memory_mb=8192,
            cpu_seconds=86_400,
            pids_max=4096,
            tmp_mb=8192,
            max_log_bytes=64 * 1_048_576,
        )
    )
    default_timeout_s: int = 600
    max_timeout_s: int = 86_400


@dataclass(frozen=True)
class UploadSettings:
    max_upload_bytes: int = 50 * 1_048_576
    max_uncompressed_bytes: int = 512 * 1_048_576
    max_members: int = 10_000
    max_payload_bytes: int = 256 * 1024
    # An automation's state (DESIGN 9.7), as compact JSON.
    max_state_bytes: int = 256 * 1024


@dataclass(frozen=True)
class GuardSettings:
    """Limits that keep one tenant from starving others."""

    rate_limit_per_minute: int = 30_000
    max_queued_runs_per_org: int = 10_000


@dataclass(frozen=True)
class RetentionSettings:
    """How long history is kept (0 keeps it forever)."""

    runs_days: int = 0
    logs_days: int = 0
    blob_grace_days: int = 7
    gc_interval_s: float = 3600.0


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 2
    lease_s: float = 30.0
    heartbeat_s: float = 5.0
    poll_s: float = 1.0
    shutdown_grace_s: float = 30.0
    kill_grace_s: float = 5.0
    cache_mb: int = 1024
    # Platform failures a run may have before it ends failed (origin "infrastructure").
    max_infra_attempts: int = 3


@dataclass(frozen=True)
class PackageSettings:
    """Where variants' Python packages come from, and the workers' environment cache."""

    index_url: str | None = "https://pypi.org/simple"  # None: offline, find_links only
    find_links: Path | None = None
    resolve_timeout_s: float = 120.0
    env_cache_mb: int = 4096


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    blob_url: str | None
    s3_endpoint_url: str | None
    host: str
    port: int
    secret_key: str | None
    sandbox: SandboxMode
    allow_host_network: bool
    run_python: Path
    log_level: str
    log_format: Literal["auto", "json", "console"]
    limits: LimitSettings = field(default_factory=LimitSettings)
    uploads: UploadSettings = field(default_factory=UploadSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    guards: GuardSettings = field(default_factory=GuardSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    packages: PackageSettings = field(default_factory=PackageSettings)
    # Notification URLs may point at loopback, link-local and private addresses.
    notify_allow_private: bool = False

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def describe(self) -> dict[str, object]:
        """What start-up logs may show: no credentials."""
        return {
            "data_dir": str(self.data_dir),
            "database": redact_url(self.database_url),
            "blob_store": self.blob_url or str(self.data_dir / "blobs"),
            "sandbox": self.sandbox,
        }


def redact_url(url: str) -> str:
    """Hide a password in a database URL (``user:***@host``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, hostpart = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostpart}" if ":" in creds else url


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r}: expected true or false")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r}: must be >= {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r}: must be > 0")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name) or default
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return raw


def _worker_settings(env: Mapping[str, str]) -> WorkerSettings:
    return WorkerSettings(
        concurrency=_int(env, "AUTOMATION_WORKER_CONCURRENCY", 2, minimum=1),
        lease_s=_float(env, "AUTOMATION_LEASE_S", 30.0),
        heartbeat_s=_float(env, "AUTOMATION_HEARTBEAT_S", 5.0),
        poll_s=_float(env, "AUTOMATION_POLL_S", 1.0),
        shutdown_grace_s=_float(env, "AUTOMATION_SHUTDOWN_GRACE_S", 30.0),
        kill_grace_s=_float(env, "AUTOMATION_KILL_GRACE_S", 5.0),
        cache_mb=_int(env, "AUTOMATION_CACHE_MB", 1024, minimum=16),
        max_infra_attempts=_int(env, "AUTOMATION_MAX_INFRA_ATTEMPTS", 3, minimum=1),
    )


def _upload_settings(env: Mapping[str, str]) -> UploadSettings:
    return UploadSettings(
        max_upload_bytes=_int(env, "AUTOMATION_MAX_UPLOAD_BYTES", 50 * 1_048_576, minimum=1024),
        max_uncompressed_bytes=_int(
            env, "AUTOMATION_MAX_UNCOMPRESSED_BYTES", 512 * 1_048_576, minimum=1024
        ),
        max_members=_int(env, "AUTOMATION_MAX_ARCHIVE_MEMBERS", 10_000, minimum=1),
        max_payload_bytes=_int(env, "AUTOMATION_MAX_PAYLOAD_BYTES", 256 * 1024, minimum=2),
        max_state_bytes=_int(env, "AUTOMATION_MAX_STATE_BYTES", 256 * 1024, minimum=2),
    )


def _package_settings(env: Mapping[str, str]) -> PackageSettings:
    index = env.get("AUTOMATION_PACKAGE_INDEX_URL") or "https://pypi.org/simple"
    if index.lower() != "none" and not index.startswith(("http://", "https://", "file://")):
        raise SettingsError(
            f"AUTOMATION_PACKAGE_INDEX_URL={index!r}: expected an http(s) URL or 'none'"
        )
    links = env.get("AUTOMATION_PACKAGE_FIND_LINKS") or None
    find_links = Path(links).expanduser().resolve() if links else None
    if find_links is not None and not find_links.is_dir():
        raise SettingsError(f"AUTOMATION_PACKAGE_FIND_LINKS={links!r}: not a directory")
    if index.lower() == "none" and find_links is None:
        raise SettingsError(
            "AUTOMATION_PACKAGE_INDEX_URL=none needs AUTOMATION_PACKAGE_FIND_LINKS "
            "(a directory of wheels)"
        )
    return PackageSettings(
        index_url=None if index.lower() == "none" else index,
        find_links=find_links,
        resolve_timeout_s=_float(env, "AUTOMATION_RESOLVE_TIMEOUT_S", 120.0),
        env_cache_mb=_int(env, "AUTOMATION_ENV_CACHE_MB", 4096, minimum=16),
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read every ``AUTOMATION_*`` setting once; raise :class:`SettingsError` on bad values."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("AUTOMATION_DATA_DIR") or "./var").expanduser().resolve()
    database_url = env.get("AUTOMATION_DATABASE_URL") or f"sqlite:///{data_dir / 'automation.db'}"
    if not database_url.startswith(("sqlite", "postgresql")):
        raise SettingsError(
            "AUTOMATION_DATABASE_URL must be sqlite:///path or postgresql+psycopg://user@host/db"
        )
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        blob_url=env.get("AUTOMATION_BLOB_URL") or None,
        s3_endpoint_url=env.get("AUTOMATION_S3_ENDPOINT_URL") or None,
        host=env.get("AUTOMATION_HOST") or "127.0.0.1",
        port=_int(env, "AUTOMATION_PORT", 8080, minimum=0),
        secret_key=env.get("AUTOMATION_SECRET_KEY") or None,
        sandbox=_choice(env, "AUTOMATION_SANDBOX", "bwrap", ("bwrap", "none")),  # type: ignore[arg-type]
        allow_host_network=_bool(env, "AUTOMATION_ALLOW_HOST_NETWORK", False),
        run_python=Path(env.get("AUTOMATION_RUN_PYTHON") or "/usr/bin/python3"),
        log_level=_choice(
            env, "AUTOMATION_LOG_LEVEL", "info", ("debug", "info", "warning", "error")
        ),
        log_format=_choice(env, "AUTOMATION_LOG_FORMAT", "auto", ("auto", "json", "console")),  # type: ignore[arg-type]
        uploads=_upload_settings(env),
        worker=_worker_settings(env),
        guards=GuardSettings(
            rate_limit_per_minute=_int(env, "AUTOMATION_RATE_LIMIT_PER_MINUTE", 30_000),
            max_queued_runs_per_org=_int(
                env, "AUTOMATION_MAX_QUEUED_RUNS_PER_ORG", 10_000, minimum=1
            ),
        ),
        retention=RetentionSettings(
            runs_days=_int(env, "AUTOMATION_RETENTION_RUNS_DAYS", 0),
            logs_days=_int(env, "AUTOMATION_RETENTION_LOGS_DAYS", 0),
            blob_grace_days=_int(env, "AUTOMATION_BLOB_GRACE_DAYS", 7),
            gc_interval_s=_float(env, "AUTOMATION_GC_INTERVAL_S", 3600.0),
        ),
        packages=_package_settings(env),
        notify_allow_private=_bool(env, "AUTOMATION_NOTIFY_ALLOW_PRIVATE", False),
    )
