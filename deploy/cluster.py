"""The topology of ``deploy/compose.yaml`` as local processes: ``make cluster``.

One ``api``, two ``worker``s and one ``scheduler``, each a separate
``automation-server`` process with a data directory of its own, sharing only
a fresh PostgreSQL database (on this machine's server) and an S3 bucket
(moto's S3 server, in this process), with one secret key from an env file,
as processes on several hosts would. Docker is not needed; the tests start
the same topology through :class:`LocalCluster`.

    python -m deploy.cluster                 # until Ctrl-C
    python -m deploy.cluster --workers 3 --port 8090
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from cryptography.fernet import Fernet

CLI = str(Path(sys.executable).with_name("automation-server"))
DEFAULT_ADMIN_URL = os.environ.get(
    "AUTOMATION_CLUSTER_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BUCKET = "automation"
# What the S3 client of every process needs to reach moto (which accepts any credentials).
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "cluster",
    "AWS_SECRET_ACCESS_KEY": "cluster",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def json_events(text: str) -> list[dict[str, Any]]:
    """The JSON log lines of a process's output (other lines skipped)."""
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


@dataclass
class Process:
    """One server process: its role, its data directory and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    role: str = ""
    #: Settings this process got on top of the deployment's.
    overrides: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        return json_events(self.log())

    def stop(self, timeout: float = 60) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()


@dataclass
class LocalCluster:
    root: Path
    admin_url: str = DEFAULT_ADMIN_URL
    api_port: int = 0
    workers: int = 2
    #: Settings given to every process (for example AUTOMATION_WORKER_CONCURRENCY).
    env: dict[str, str] = field(default_factory=dict)
    database: str = field(default_factory=lambda: f"automation_cluster_{uuid.uuid4().hex[:8]}")
    processes: list[Process] = field(default_factory=list)
    secret_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    _moto: Any = None
    _s3_port: int = 0

    # ---- what the processes share ------------------------------------------------

    @property
    def database_url(self) -> str:
        return sa.make_url(self.admin_url).set(database=self.database).render_as_string(False)

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self._s3_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def env_file(self) -> Path:
        return self.root / "automation.env"

    def shared_env(self) -> dict[str, str]:
        """The settings every process of the deployment gets (compose's env file)."""
        return {
            "AUTOMATION_DATABASE_URL": self.database_url,
            "AUTOMATION_BLOB_URL": f"s3://{BUCKET}/cluster",
            "AUTOMATION_S3_ENDPOINT_URL": self.s3_url,
            "AUTOMATION_SECRET_KEY": self.secret_key,
            "AUTOMATION_LOG_FORMAT": "json",
            **AWS_ENV,
            **self.env,
        }

    # ---- starting and stopping --------------------------------------------------

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)  # the sandbox user traverses data dirs to bind-mount envs
        self._create_database()
        self._start_s3()
        self._write_env_file()
        self.run_cli(["migrate"], "migrate")
        self.api_port = self.api_port or free_port()
        self.start_process("api", "api", AUTOMATION_PORT=str(self.api_port))
        self.wait_ready()
        for index in range(1, self.workers + 1):
            self.start_process("worker", f"worker{index}")
        self.start_process("scheduler", "scheduler")

    def stop(self) -> dict[str, int]:
        """Stop every process (SIGTERM, graceful), moto and drop the database created."""
        codes = {p.name: p.stop() for p in reversed(self.processes) if p.popen.poll() is None}
        codes.update({p.name: p.popen.returncode for p in self.processes if p.name not in codes})
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        self._drop_database()
        return codes

    def process_env(self, name: str, **overrides: str) -> dict[str, str]:
        data_dir = self.root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o711)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOMATION_", "AWS_"))}
        env.update(self.shared_env())
        env["AUTOMATION_DATA_DIR"] = str(data_dir)
        env.update(overrides)
        return env

    def start_process(self, role: str, name: str, **overrides: str) -> Process:
        """Start ``automation-server <role>`` as ``name``, with its own data directory."""
        env = self.process_env(name, **overrides)
        log_path = self.root / f"{name}.log"
        with log_path.open("ab") as fh:  # the child keeps its own copy of the descriptor
            popen = subprocess.Popen([CLI, role], env=env, stdout=fh, stderr=subprocess.STDOUT)
        process = Process(
            name, popen, Path(env["AUTOMATION_DATA_DIR"]), log_path, role, dict(overrides)
        )
        self.processes.append(process)
        return process

    def restart(self, name: str, **overrides: str) -> Process:
        """Stop process ``name`` gracefully and start it again with more ``overrides``."""
        old = next(p for p in self.processes if p.name == name and p.popen.poll() is None)
        old.stop()
        self.processes.remove(old)
        return self.start_process(old.role, name, **{**old.overrides, **overrides})

    def run_cli(self, args: list[str], name: str, **overrides: str) -> str:
        """A one-off command (migrate, create-key, rotate-secret-key) as deployment ``name``."""
        done = subprocess.run(
            [CLI, *args], env=self.process_env(name, **overrides), capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"automation-server {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def create_key(self, org: str = "demo") -> str:
        return self.run_cli(["create-key", "--org", org], "admin").strip().splitlines()[-1]

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            api = next(p for p in self.processes if p.name == "api")
            if api.popen.poll() is not None:
                raise RuntimeError(f"the api exited:\n{api.log()[-3000:]}")
            try:
                if httpx.get(f"{self.api_url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the api was not ready after {timeout} s")

    # ---- the shared services ----------------------------------------------------

    def _create_database(self) -> None:
        self._admin(f'CREATE DATABASE "{self.database}"')

    def _drop_database(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        """A statement outside any transaction (CREATE/DROP DATABASE need that)."""
        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(statement))
        finally:
            admin.dispose()

    def _start_s3(self) -> None:
        import boto3
        from moto.server import ThreadedMotoServer

        self._s3_port = free_port()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self._s3_port, verbose=False)
        self._moto.start()
        boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=AWS_ENV["AWS_DEFAULT_REGION"],
        ).create_bucket(Bucket=BUCKET)

    def _write_env_file(self) -> None:
        """The deployment's settings as compose's env file has them (mode 0600: a key)."""
        lines = [f"{k}={v}" for k, v in sorted(self.shared_env().items())]
        fd = os.open(self.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")


@contextmanager
def running(root: Path, **options: Any) -> Iterator[LocalCluster]:
    cluster = LocalCluster(root=root, **options)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.cluster",
        description="Start api, workers and a scheduler as separate local processes on "
        "this machine's PostgreSQL and moto's S3 server (the compose topology without "
        "Docker). Ctrl-C stops them and drops the database it created.",
    )
    parser.add_argument("--root", type=Path, default=Path("var/cluster"), help="data dirs, logs")
    parser.add_argument("--port", type=int, default=8080, help="the api's port")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--admin-url", default=DEFAULT_ADMIN_URL, help="PostgreSQL URL allowed to CREATE DATABASE"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request lines
    if not Path(CLI).exists():
        print("automation-server is not installed in this environment: run make first")
        return 1
    root = args.root.resolve()
    if root.exists():
        shutil.rmtree(root)
    cluster = LocalCluster(root=root, admin_url=args.admin_url, api_port=args.port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        print(f"starting: database {cluster.database}, moto S3, api, {args.workers} workers, ...")
        cluster.workers = args.workers
        cluster.start()
        key = cluster.create_key()
        _print_summary(cluster, key)
        reported: set[str] = set()
        while not stop.wait(1):
            _report_exits(cluster.processes, reported)
    finally:
        print("stopping ...")
        codes = cluster.stop()
        print("exit codes: " + ", ".join(f"{k}={v}" for k, v in codes.items()))
    return 0


def _print_summary(cluster: LocalCluster, key: str) -> None:
    print(f"api:          {cluster.api_url}   (dashboard: {cluster.api_url}/ui)")
    print(f"database:     {cluster.database_url}")
    print(f"object store: s3://{BUCKET}/cluster at {cluster.s3_url}")
    print(f"settings:     {cluster.env_file}")
    for process in cluster.processes:
        print(f"{process.name + ':':<13} pid {process.popen.pid}, log {process.log_path}")
    print("an admin key for organization 'demo' (shown once):")
    print(f"  export AUTOMATION_URL={cluster.api_url} AUTOMATION_API_KEY={key}")
    print("Ctrl-C stops every process and drops the database.")


def _report_exits(processes: list[Process], reported: set[str]) -> None:
    for process in processes:
        if process.popen.poll() is not None and process.name not in reported:
            reported.add(process.name)
            print(f"{process.name} exited with {process.popen.returncode}: see {process.log_path}")


if __name__ == "__main__":
    sys.exit(main())
