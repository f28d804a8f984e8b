"""Issue 16: environments, against uv itself and against runs without one, in one process.

- ``cold_build``: a lock of ten small wheels (a chain of dependencies) built by
  the worker's cache (lock fetched, installed, manifest written, renamed into
  place) against ``uv pip install`` of the same lock into a fresh virtualenv
  with the same options (hashes required, no deps, wheels only, bytecode
  compiled, files copied); the median of each, and the ratio.
- ``warm_run``: queued-to-finished of a trivial run whose variant has an
  (already built) environment against the same run without one, on SQLite
  with the bubblewrap sandbox; medians and the difference.
- ``resolution``: save-time resolution of those ten packages from a directory
  of wheels (``AUTOMATION_PACKAGE_INDEX_URL=none``), p50 and p95.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from automation_server.automations.schemas import AutomationCreate, VariantSpec
from automation_server.db.models import Run
from automation_server.environments.requirements import parse_requirements
from automation_server.environments.resolver import PackageSources, Resolver, find_uv
from automation_server.runs.schemas import DispatchRequest
from automation_server.statuses import FINISHED
from automation_server.storage.blobs import env_lock_key
from automation_server.storage.memory import MemoryBlobStore
from automation_server.worker.build import build_worker
from automation_server.worker.environments import EnvironmentCache
from bench.common import TRIVIAL_SCRIPT, BenchStack, stack, summary_ms, targz, write_results
from tests.wheels import make_wheel

PYTHON = Path("/usr/bin/python3")
PACKAGES = 10


def _wheelhouse(directory: Path) -> list[str]:
    """Ten packages, each depending on the next, with a few modules of code each."""
    names = [f"benchpkg{i}" for i in range(PACKAGES)]
    for i, name in enumerate(names):
        files = {f"{name}/__init__.py": f"VALUE = {i}\n"}
        files.update(
            {f"{name}/mod{k}.py": f"def f{k}(x):\n    return x + {k}\n" * 20 for k in range(8)}
        )
        requires = [f"{names[i + 1]}==1.0"] if i + 1 < len(names) else []
        make_wheel(directory, name, "1.0", files=files, requires=requires)
    return [f"{names[0]}==1.0"]


def _resolver(wheels: Path, cache: Path) -> Resolver:
    return Resolver(python=PYTHON, sources=PackageSources(None, wheels), cache_dir=cache)


def _uv_baseline(lock_file: Path, wheels: Path, root: Path, cache: Path) -> float:
    venv = root / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    uv = find_uv()
    subprocess.run([uv, "venv", "--quiet", "--python", str(PYTHON), str(venv)], check=True)
    start = time.perf_counter()
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
         "--requirement", str(lock_file), "--require-hashes", "--no-deps",
         "--only-binary", ":all:", "--compile-bytecode", "--link-mode", "copy",
         "--no-config", "--cache-dir", str(cache), "--no-index", "--find-links", str(wheels)],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - start


def _cold_build(tmp: Path, wheels: Path, requirements: list[str], n: int) -> dict[str, Any]:
    cache = tmp / "uv-cache"
    lock = _resolver(wheels, cache).resolve(parse_requirements(requirements, "r"), "r")
    store = MemoryBlobStore()
    store.put(env_lock_key(lock.digest), lock.text().encode())
    lock_file = tmp / "lock.txt"
    lock_file.write_text(lock.install_text())
    ours, theirs = [], []
    for i in range(n):  # interleaved, so machine noise hits both alike
        root = tmp / f"envs-{i}"
        environments = EnvironmentCache(
            root, store, python=PYTHON, sources=PackageSources(None, wheels), max_bytes=1 << 40
        )
        start = time.perf_counter()
        with environments.use(lock.digest):
            ours.append(time.perf_counter() - start)
        shutil.rmtree(root)
        theirs.append(_uv_baseline(lock_file, wheels, tmp, cache))
    return {
        "packages": len(lock.pins),
        "worker_build": summary_ms(ours),
        "uv_pip_install_fresh_venv": summary_ms(theirs),
        "ratio": round(statistics.median(ours) / statistics.median(theirs), 2),
    }


def _resolution(tmp: Path, wheels: Path, requirements: list[str], n: int) -> dict[str, Any]:
    resolver = _resolver(wheels, tmp / "uv-cache-resolve")
    times = []
    for _ in range(n):
        start = time.perf_counter()
        resolver.resolve(parse_requirements(requirements, "r"), "r")
        times.append(time.perf_counter() - start)
    return {"packages": PACKAGES, **summary_ms(times)}


def _run_until_finished(s: BenchStack, automation_id: str) -> float:
    run = s.services.dispatcher.dispatch(s.caller, automation_id, DispatchRequest())
    while True:
        with s.services.db.read() as session:
            row = session.execute(
                select(Run.status, Run.created_at, Run.finished_at).where(Run.id == run.id)
            ).one()
        if row.status in FINISHED:
            assert row.status == "succeeded", row
            return (row.finished_at - row.created_at).total_seconds()
        time.sleep(0.005)


def _warm_run(wheels: Path, requirements: list[str], n: int) -> dict[str, Any]:
    env = {"AUTOMATION_PACKAGE_INDEX_URL": "none", "AUTOMATION_PACKAGE_FIND_LINKS": str(wheels)}
    with stack("sqlite", AUTOMATION_WORKER_CONCURRENCY="1", **env) as s:
        Path(s.data_dir).chmod(0o755)
        worker = build_worker(s.services)
        worker.start()
        try:
            ref = s.services.blobs.upload(s.caller.org_id, targz({"main.py": TRIVIAL_SCRIPT})).ref
            plain = s.services.automations.create(
                s.caller, AutomationCreate(name="plain", tarball=ref)
            )
            spec = VariantSpec(name="default", tarball=ref, requirements=requirements)
            packaged = s.services.automations.create(
                s.caller, AutomationCreate(name="packaged", variants=[spec])
            )
            for _ in range(3):  # build the environment, warm the caches
                _run_until_finished(s, plain.id)
                _run_until_finished(s, packaged.id)
            without, with_env = [], []
            for _ in range(n):
                without.append(_run_until_finished(s, plain.id))
                with_env.append(_run_until_finished(s, packaged.id))
        finally:
            worker.stop(grace_s=5)
    return {
        "without_environment": summary_ms(without),
        "with_environment": summary_ms(with_env),
        "median_difference_ms": round(
            (statistics.median(with_env) - statistics.median(without)) * 1000, 2
        ),
    }


def run(quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        tmp.chmod(0o755)
        wheels = tmp / "wheels"
        requirements = _wheelhouse(wheels)
        results = {
            "cold_build": _cold_build(tmp, wheels, requirements, 5 if quick else 20),
            "resolution": _resolution(tmp, wheels, requirements, 10 if quick else 40),
            "warm_run": _warm_run(wheels, requirements, 20 if quick else 100),
        }
    path = write_results("environments", {"quick": quick, **results})
    return {"file": str(path), **results}
