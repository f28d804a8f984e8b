"""Test helpers shared by every suite: databases, a live server, tarballs."""

from __future__ import annotations

import io
import os
import shutil
import socket
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from automation_server.config import Settings, load_settings

PG_ADMIN_URL = os.environ.get(
    "AUTOMATION_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> None:
    """A missing service skips the test on a laptop and fails it in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: required)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def targz(files: Mapping[str, str | bytes], *, mode: int = 0o644) -> bytes:
    """A .tar.gz of the given files (path -> content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else mode
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class PostgresDatabases:
    """One database per test session, emptied before each test.

    CREATE DATABASE costs most of a second on PostgreSQL, so tests share one
    migrated database: before each test, other sessions on it are terminated and
    every table is truncated. Migration tests ask for new empty databases.
    """

    def __init__(self, admin_url: str) -> None:
        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.shared = f"at_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []
        self._tables: list[str] = []

    def url_for(self, name: str) -> str:
        return self.admin.url.set(database=name).render_as_string(hide_password=False)

    def prepare_template(self) -> None:
        from automation_server.db.migrate import upgrade
        from automation_server.db.models import Base

        self.create_empty(self.shared)
        upgrade(self.url_for(self.shared))
        self._tables = [t.name for t in Base.metadata.sorted_tables]

    def create_empty(self, name: str | None = None) -> str:
        name = name or f"at_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return name

    def fresh(self, migrated: bool = True) -> str:
        if not migrated:
            return self.url_for(self.create_empty())
        with self.admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": self.shared},
            )
        engine = sa.create_engine(self.url_for(self.shared))
        with engine.begin() as conn:
            tables = ", ".join(f'"{t}"' for t in self._tables)
            conn.execute(sa.text(f"TRUNCATE {tables} CASCADE"))
        engine.dispose()
        return self.url_for(self.shared)

    def drop_all(self) -> None:
        """Drop only the databases this session created."""
        with self.admin.connect() as conn:
            for name in reversed(self.created):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


class SqliteDatabases:
    """Fresh SQLite files per test, copied from a migrated template."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.template = root / "template.db"

    def prepare_template(self) -> None:
        from automation_server.db.migrate import upgrade

        upgrade(f"sqlite:///{self.template}")

    def fresh(self, migrated: bool = True) -> str:
        path = self.root / f"{uuid.uuid4().hex}.db"
        if migrated:
            shutil.copyfile(self.template, path)
        return f"sqlite:///{path}"


_WHEELHOUSE: list[Path] = []


def test_wheelhouse() -> Path:
    """A directory of wheels every test server resolves from (no network): the presets'
    Jinja2 and MarkupSafe, packed from this environment's installed copies."""
    if not _WHEELHOUSE:
        import tempfile

        from tests.wheels import make_wheel, wheel_from_installed

        directory = Path(tempfile.mkdtemp(prefix="automation-test-wheels-"))
        directory.chmod(0o755)
        for name in ("jinja2", "markupsafe"):
            wheel_from_installed(directory, name)
        # Small packages of our own, for the CLI's environment tests.
        make_wheel(directory, "greet", "1.0", requires=["shout>=2"])
        make_wheel(directory, "shout", "2.1")
        _WHEELHOUSE.append(directory)
    return _WHEELHOUSE[0]


def package_env() -> dict[str, str]:
    """Offline package sources for test servers (tests of the index override these)."""
    return {
        "AUTOMATION_PACKAGE_INDEX_URL": "none",
        "AUTOMATION_PACKAGE_FIND_LINKS": str(test_wheelhouse()),
    }


def reachable_by_sandbox(path: Path) -> None:
    """pytest's temporary directories are 0700: let the sandbox user traverse (not list)
    the parents of ``path``, as it must to read bind-mounted environments."""
    for parent in [path, *path.parents]:
        if parent in (Path("/tmp"), Path("/")):
            break
        parent.chmod(parent.stat().st_mode | 0o711)


def settings_for(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    env = {
        "AUTOMATION_DATA_DIR": str(data_dir),
        "AUTOMATION_DATABASE_URL": database_url,
        "AUTOMATION_LOG_LEVEL": "warning",
        **package_env(),
    }
    env.update({k: str(v) for k, v in overrides.pop("env", {}).items()})
    settings = load_settings(env)
    return replace(settings, **overrides) if overrides else settings


@dataclass
class LiveServer:
    base_url: str
    services: Any
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        """An HTTP client for the server (closed when the server stops)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        http = httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)
        self.clients.append(http)
        return http

    def new_key(self, org: str = "acme", scope: str = "admin") -> str:
        from automation_server.security.accounts import create_key, ensure_organization

        org_id = ensure_organization(self.services.db, org)
        return create_key(self.services.db, org_id, scope).plaintext  # type: ignore[arg-type]


@contextmanager
def live_server(services: Any) -> Iterator[LiveServer]:
    """The real app on a real socket (uvicorn in a thread)."""
    import uvicorn

    from automation_server.api.app import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(services),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    live = LiveServer(base_url=f"http://127.0.0.1:{port}", services=services)
    try:
        yield live
    finally:
        for http in live.clients:
            http.close()
        server.should_exit = True
        thread.join(timeout=10)
