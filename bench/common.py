"""Shared pieces of the benchmarks: a server stack in-process, baselines, result files."""

from __future__ import annotations

import io
import json
import os
import platform
import statistics
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from automation_server.config import load_settings
from automation_server.security.accounts import Caller, create_key, ensure_organization
from automation_server.services import Services, build_services

RESULTS = Path(__file__).resolve().parent / "results"
PG_ADMIN_URL = os.environ.get(
    "AUTOMATION_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TRIVIAL_SCRIPT = "print('ok')\n"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def targz(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def bare_subprocess_times(script: str, n: int, python: str = "/usr/bin/python3") -> list[float]:
    """The baseline: the same script as a plain subprocess, no server, no sandbox."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "main.py"
        path.write_text(script)
        times = []
        for _ in range(n):
            start = time.perf_counter()
            subprocess.run([python, str(path)], check=True, stdout=subprocess.DEVNULL, cwd=tmp)
            times.append(time.perf_counter() - start)
    return times


def plain_bwrap_argv(workdir: str, python: str = "/usr/bin/python3") -> list[str]:
    """The floor a sandboxed run is measured against: bubblewrap with fresh namespaces
    and read-only system directories, started directly (no uid switch, rlimits,
    cgroup, tarball or database)."""
    return [
        "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
        "--bind", workdir, "/work", "--chdir", "/work",
        python, "main.py",
    ]  # fmt: skip


@contextmanager
def plain_bwrap_dir(script: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)
        (Path(tmp) / "main.py").write_text(script)
        yield tmp


def plain_bwrap_throughput(script: str, n: int, concurrency: int) -> float:
    """Runs per second of ``n`` plain bubblewrap runs, ``concurrency`` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    with plain_bwrap_dir(script) as workdir:
        argv = plain_bwrap_argv(workdir)

        def one(_i: int) -> None:
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env={})

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(n)))
        return n / (time.perf_counter() - start)


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh database for one benchmark: a temp SQLite file or a new PostgreSQL database."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class BenchStack:
    services: Services
    caller: Caller
    data_dir: Path


@contextmanager
def stack(kind: str, **env: str) -> Iterator[BenchStack]:
    from automation_server.db.migrate import upgrade

    with database(kind) as url, tempfile.TemporaryDirectory() as tmp:
        upgrade(url)
        settings = load_settings(
            {
                "AUTOMATION_DATA_DIR": tmp,
                "AUTOMATION_DATABASE_URL": url,
                "AUTOMATION_LOG_LEVEL": "warning",
                **env,
            }
        )
        services = build_services(settings)
        org = ensure_organization(services.db, "bench")
        key = create_key(services.db, org, "admin")
        caller = Caller(org_id=org, key_id=key.key_id, key_prefix=key.prefix, scope="admin")
        try:
            yield BenchStack(services, caller, Path(tmp))
        finally:
            services.close()


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


__all__ = ["replace"]
