"""``automation-server doctor``: what this process would use, and whether it works.

Each check reads or probes, never changes the deployment: the database is
not migrated, the key check value is not recorded, and the object store
only sees one probe object written and deleted. An operator runs it on
each host before starting processes there (and a container's health check
may run it).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from automation_server.config import Settings
from automation_server.db.engine import Database
from automation_server.db.migrate import current_revision, head_revision
from automation_server.errors import AutomationError
from automation_server.security.crypto import key_source, load_or_create_key, split_keys
from automation_server.security.keycheck import inspect_key
from automation_server.storage.factory import blobstore_from_url

Outcome = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    detail: str
    #: What to do about a warning or failure.
    hint: str | None = None


Role = Literal["serve", "api", "worker", "scheduler"]


def diagnose(settings: Settings, role: Role = "serve") -> list[Check]:
    """The checks ``role`` needs, in the order an operator fixes them: every process
    needs the database, the object store and the key; workers run code in the sandbox;
    workers build environments and the api resolves them with uv."""
    checks = [_database(settings), _object_store(settings), _secret_key(settings)]
    if role in ("serve", "worker"):
        checks += [_sandbox(settings), _run_python(settings)]
    if role != "scheduler":
        checks.append(_uv())
    checks += _several_hosts(settings)
    return checks


def _guarded(name: str, probe: Callable[[], Check], hint: str) -> Check:
    try:
        return probe()
    except AutomationError as exc:
        return Check(name, "fail", exc.detail, hint or None)
    except Exception as exc:  # a driver's own error: show its type and text
        return Check(name, "fail", f"{type(exc).__name__}: {exc}", hint or None)


def _database(settings: Settings) -> Check:
    def probe() -> Check:
        if settings.is_sqlite and not _sqlite_path(settings.database_url).exists():
            return Check(
                "database",
                "fail",
                f"no database at {_sqlite_path(settings.database_url)} yet",
                "run: automation-server migrate (serve also migrates when it starts)",
            )
        db = Database(settings.database_url, pool_size=1)
        try:
            db.ping()
        finally:
            db.dispose()
        current, head = current_revision(settings.database_url), head_revision()
        if current != head:
            return Check(
                "database",
                "fail",
                f"reachable, at migration {current or 'none'} (this version needs {head})",
                "run: automation-server migrate",
            )
        return Check("database", "ok", f"reachable, at migration {head} (the latest)")

    return _guarded(
        "database",
        probe,
        "check AUTOMATION_DATABASE_URL and that the database server is up",
    )


def _sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


def _object_store(settings: Settings) -> Check:
    def probe() -> Check:
        store = blobstore_from_url(
            settings.blob_url, data_dir=settings.data_dir, endpoint_url=settings.s3_endpoint_url
        )
        key = f"doctor-probe-{uuid.uuid4().hex}"
        data = b"automation-server doctor probe"
        store.put(key, data)
        try:
            if store.get(key) != data:
                return Check("object store", "fail", "a probe object came back different")
        finally:
            store.delete(key)
        return Check("object store", "ok", f"{store.describe()} is writable")

    return _guarded(
        "object store",
        probe,
        "check AUTOMATION_BLOB_URL, AUTOMATION_S3_ENDPOINT_URL and the S3 credentials",
    )


def _secret_key(settings: Settings) -> Check:
    source = key_source(settings.secret_key, settings.data_dir)

    def probe() -> Check:
        if not settings.secret_key and not (settings.data_dir / "secret.key").exists():
            return Check(
                "secret key",
                "warn",
                "none yet: the first server process generates one in the data directory",
                "on several hosts set the same AUTOMATION_SECRET_KEY everywhere",
            )
        keys = split_keys(load_or_create_key(settings.secret_key, settings.data_dir))
        db = Database(settings.database_url, pool_size=1)
        try:
            check = inspect_key(db, keys, source)
        finally:
            db.dispose()
        if check.outcome == "unset":
            return Check(
                "secret key",
                "ok",
                f"from {source}; the deployment has no key yet, the first process records it",
            )
        rotation = " (an older key of this process's list)" if check.key_index else ""
        return Check("secret key", "ok", f"from {source}: the deployment's key{rotation}")

    return _guarded("secret key", probe, "set the deployment's AUTOMATION_SECRET_KEY")


def _sandbox(settings: Settings) -> Check:
    from automation_server.sandbox.factory import make_executor

    if settings.sandbox == "none":
        return Check(
            "sandbox",
            "warn",
            "AUTOMATION_SANDBOX=none: runs are NOT isolated",
            "install bubblewrap and unset AUTOMATION_SANDBOX",
        )

    def probe() -> Check:
        executor = make_executor(settings.sandbox, grace_s=settings.worker.kill_grace_s)
        return Check("sandbox", "ok", f"works: {executor.describe()}")

    # The sandbox's own message already says how to fix it.
    return _guarded("sandbox", probe, "")


def _run_python(settings: Settings) -> Check:
    path = settings.run_python
    if not os.access(path, os.X_OK):
        return Check(
            "run python",
            "fail",
            f"{path} is not an executable",
            "set AUTOMATION_RUN_PYTHON to the interpreter runs use (python 3.11+)",
        )
    version = subprocess.run(
        [str(path), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        timeout=30,
        env={},
    ).stdout.strip()
    return Check("run python", "ok", f"{path} (Python {version or 'unknown'})")


def _uv() -> Check:
    from automation_server.environments.resolver import find_uv

    def probe() -> Check:
        uv = find_uv()
        version = subprocess.run(
            [uv, "--version"], capture_output=True, text=True, timeout=30, env={}
        ).stdout.strip()
        return Check("uv", "ok", f"{uv} ({version})")

    return _guarded("uv", probe, "reinstall the server: pip install -e .")


def _several_hosts(settings: Settings) -> list[Check]:
    """On PostgreSQL a deployment may span hosts: what would keep it on one."""
    if settings.is_sqlite:
        return []
    warnings = []
    if not settings.blob_url:
        warnings.append(
            Check(
                "several hosts",
                "warn",
                f"the object store is files under {settings.data_dir}: processes on other "
                "hosts cannot read the tarballs and logs there",
                "set AUTOMATION_BLOB_URL=s3://bucket/prefix on every process",
            )
        )
    if not settings.secret_key:
        warnings.append(
            Check(
                "several hosts",
                "warn",
                "the secret key is a file in this host's data directory",
                "set AUTOMATION_SECRET_KEY to that key on every process",
            )
        )
    return warnings
