"""A private, throw-away PostgreSQL cluster that a test may stop and restart.

Fault tests restart PostgreSQL under a running server; doing that to the
machine's shared server (port 5432) would break every other test and user of
it. This module runs ``initdb`` into a fresh temporary directory and serves it
on a free loopback port with its socket in that directory, so nothing outside
the directory is touched. ``initdb`` refuses to run as root, so as root every
PostgreSQL command runs as the ``postgres`` OS user (``setpriv``, argv lists,
no shell).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port

PG_BIN = Path(os.environ.get("AUTOMATION_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "postgres"
# Durability is not what these tests measure; fsync off keeps start-up quick.
SERVER_OPTIONS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
)


class ClusterUnavailable(RuntimeError):
    """PostgreSQL binaries (or a user to run them as) are missing on this machine."""


def missing_reason() -> str | None:
    """Why a private cluster cannot be started here, or None when it can."""
    for tool in ("initdb", "pg_ctl"):
        if not (PG_BIN / tool).is_file():
            return f"PostgreSQL binaries not found in {PG_BIN} (no {tool})"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_OS_USER)
        except KeyError:
            return f"running as root and there is no {PG_OS_USER!r} OS user to run initdb as"
        if shutil.which("setpriv") is None:
            return "running as root and setpriv is missing (needed to drop to the postgres user)"
    return None


@dataclass
class PgCluster:
    """One private cluster: data and socket under ``root``, TCP on 127.0.0.1:``port``."""

    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's ``postgres`` database (trust auth)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            "30",
            "-o",
            self._options(),
            "start",
        )

    def restart(self, mode: str = "fast", downtime_s: float = 0.0) -> None:
        """Stop (terminating every connection) and start again.

        With ``downtime_s`` the cluster stays down that long in between (a slow
        restart or failover), so whatever clients do meanwhile meets a dead
        server, not only a dropped connection.
        """
        if downtime_s > 0:
            self.stop(mode=mode)
            time.sleep(downtime_s)
            self.start()
            return
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            "30",
            "-m",
            mode,
            "-o",
            self._options(),
            "restart",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "30", "-m", mode, "stop")

    def is_running(self) -> bool:
        done = subprocess.run(
            self._argv("pg_ctl", "-D", str(self.data), "status"), capture_output=True, check=False
        )
        return done.returncode == 0

    def server_log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def _options(self) -> str:
        # Socket in our own directory: never the shared /var/run/postgresql.
        return f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 {SERVER_OPTIONS}"

    def _argv(self, tool: str, *args: str) -> list[str]:
        argv = [str(PG_BIN / tool), *args]
        if os.geteuid() != 0:
            return argv
        return ["setpriv", f"--reuid={PG_OS_USER}", f"--regid={PG_OS_USER}", "--init-groups", *argv]

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            self._argv(tool, *args), capture_output=True, check=False, timeout=60, cwd=self.root
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args[-1:])} failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace')[-2000:]}\n{self.server_log()[-2000:]}"
            )


@contextmanager
def private_cluster() -> Iterator[PgCluster]:
    """A started cluster; stopped and deleted afterwards, whatever happened."""
    reason = missing_reason()
    if reason is not None:
        raise ClusterUnavailable(reason)
    # Under /tmp rather than pytest's tmp_path: the postgres user must be able
    # to reach the directory, and pytest's base directory is root's alone.
    root = Path(tempfile.mkdtemp(prefix="pgc-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam(PG_OS_USER)
        os.chown(root, user.pw_uid, user.pw_gid)
    cluster = PgCluster(root=root, port=free_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.is_running():
            with suppress(RuntimeError):
                cluster.stop(mode="immediate")
        _wait_gone(cluster)
        shutil.rmtree(root, ignore_errors=True)


def _wait_gone(cluster: PgCluster, timeout: float = 10) -> None:
    pid_file = cluster.data / "postmaster.pid"
    deadline = time.monotonic() + timeout
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
