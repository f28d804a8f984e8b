"""Environments in real runs: built once per digest, mounted read-only, each variant its own."""

from __future__ import annotations

import json
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from automation_server.environments.requirements import parse_requirements
from automation_server.environments.resolver import PackageSources, Resolver
from automation_server.storage.blobs import env_lock_key
from automation_server.storage.memory import MemoryBlobStore
from automation_server.worker.environments import EnvironmentCache
from tests.e2e.conftest import make_stack, require_bwrap
from tests.wheels import make_wheel

stack_of = contextmanager(make_stack)
PYTHON = Path("/usr/bin/python3")

REPORT_VERSION = """
import json, os, greet
from automation_sdk import report
report.output("greet", greet.__version__)
report.output("where", greet.__file__)
print("greet", greet.__version__)
"""


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    d = tmp_path / "wheels"
    make_wheel(d, "greet", "1.0", requires=["shout>=2"])
    make_wheel(d, "greet", "2.0")
    make_wheel(d, "shout", "2.1")
    return d


def _env(wheelhouse: Path) -> dict[str, str]:
    return {
        "AUTOMATION_PACKAGE_INDEX_URL": "none",
        "AUTOMATION_PACKAGE_FIND_LINKS": str(wheelhouse),
    }


def test_two_variants_each_import_their_own_version(
    data_dir: Path, database_url: str, wheelhouse: Path
) -> None:
    require_bwrap()
    with stack_of(data_dir, database_url, **_env(wheelhouse)) as stack:
        old = stack.upload({"main.py": REPORT_VERSION, "requirements.txt": "greet==1.0\n"})
        new = stack.upload({"main.py": REPORT_VERSION, "requirements.txt": "greet==2.0\n"})
        auto = stack.create(
            name="dep-ab",
            experiment_id="greet-upgrade",
            variants=[{"name": "old", "tarball": old}, {"name": "new", "tarball": new}],
        )
        digests = {v["name"]: v["environment"]["digest"] for v in auto["variants"]}
        assert digests["old"] != digests["new"]
        for name, version in (("old", "1.0"), ("new", "2.0")):
            run = stack.wait(stack.dispatch(auto["id"], variant=name)["id"], timeout=90)
            assert run["status"] == "succeeded", stack.log(run["id"])
            assert run["outputs"]["greet"] == version
            assert run["outputs"]["where"].startswith("/run/automation/env/")
            assert run["environment_digest"] == digests[name]


def test_network_none_is_still_enforced_with_an_environment(
    data_dir: Path, database_url: str, wheelhouse: Path
) -> None:
    require_bwrap()
    script = (
        "import socket, greet\n"
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
        "    print('CONNECTED')\nexcept OSError as exc:\n    print('blocked', exc)\n"
        "open('/run/automation/env/greet/__init__.py', 'a')\n"
    )
    with stack_of(data_dir, database_url, **_env(wheelhouse)) as stack:
        tarball = stack.upload({"main.py": script, "requirements.txt": "greet==2.0\n"})
        auto = stack.create(name="no-net", tarball=tarball)
        run = stack.wait(stack.dispatch(auto["id"])["id"], timeout=90)
        log = stack.log(run["id"])
        assert "blocked" in log and "CONNECTED" not in log
        # The environment is mounted read-only: the program cannot change it.
        assert run["status"] == "failed"
        assert "Read-only file system" in log or "Permission denied" in log


def _cache(
    root: Path, store: MemoryBlobStore, wheelhouse: Path, max_bytes: int = 10**9
) -> EnvironmentCache:
    return EnvironmentCache(
        root, store, python=PYTHON, sources=PackageSources(None, wheelhouse), max_bytes=max_bytes
    )


def _locked(store: MemoryBlobStore, wheelhouse: Path, tmp_path: Path, *lines: str) -> str:
    resolver = Resolver(
        python=PYTHON, sources=PackageSources(None, wheelhouse), cache_dir=tmp_path / "uvc"
    )
    lock = resolver.resolve(parse_requirements(lines, "requirements"), "requirements")
    store.put(env_lock_key(lock.digest), lock.text().encode())
    return lock.digest


def test_concurrent_builds_of_one_digest_build_it_once(tmp_path: Path, wheelhouse: Path) -> None:
    store = MemoryBlobStore()
    digest = _locked(store, wheelhouse, tmp_path, "greet==1.0")
    root = tmp_path / "envs"
    caches = [_cache(root, store, wheelhouse) for _ in range(4)]  # as four worker processes
    builds: list[int] = []
    original = EnvironmentCache._build

    def counting(self: EnvironmentCache, d: str, entry: Path) -> None:
        builds.append(1)
        original(self, d, entry)

    EnvironmentCache._build = counting  # type: ignore[method-assign]
    try:
        seen: list[Path] = []
        start = threading.Barrier(len(caches))

        def use(cache: EnvironmentCache) -> None:
            start.wait()
            with cache.use(digest) as site:
                seen.append(site)
                assert (site / "greet" / "__init__.py").is_file()

        threads = [threading.Thread(target=use, args=(c,)) for c in caches]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        EnvironmentCache._build = original  # type: ignore[method-assign]
    assert len(builds) == 1 and len(set(seen)) == 1
    assert not [p for p in root.iterdir() if p.name.startswith("build-")]  # nothing half-built


def test_a_damaged_cache_entry_is_detected_and_rebuilt(tmp_path: Path, wheelhouse: Path) -> None:
    store = MemoryBlobStore()
    digest = _locked(store, wheelhouse, tmp_path, "greet==2.0")
    root = tmp_path / "envs"
    with _cache(root, store, wheelhouse).use(digest) as site:
        module = site / "greet" / "__init__.py"
    module.write_text("raise SystemExit('tampered')\n")
    with _cache(root, store, wheelhouse).use(digest) as site:  # a new worker process
        assert "tampered" not in (site / "greet" / "__init__.py").read_text()


def test_eviction_never_removes_an_environment_in_use(tmp_path: Path, wheelhouse: Path) -> None:
    store = MemoryBlobStore()
    first = _locked(store, wheelhouse, tmp_path, "greet==2.0")
    second = _locked(store, wheelhouse, tmp_path, "shout==2.1")
    root = tmp_path / "envs"
    cache = _cache(root, store, wheelhouse, max_bytes=1)  # room for nothing
    with cache.use(first) as first_site:
        with cache.use(second):
            assert first_site.is_dir()  # in use: kept although over the bound
        assert first_site.is_dir()
    with cache.use(second):  # built again (evicted once idle), and the first now goes
        pass
    assert not first_site.exists()


def test_a_hash_mismatch_at_build_fails_the_run_as_infrastructure(
    data_dir: Path, database_url: str, wheelhouse: Path
) -> None:
    require_bwrap()
    with stack_of(
        data_dir, database_url, AUTOMATION_MAX_INFRA_ATTEMPTS="1", **_env(wheelhouse)
    ) as stack:
        tarball = stack.upload({"main.py": REPORT_VERSION, "requirements.txt": "greet==2.0\n"})
        auto = stack.create(name="tampered-wheel", tarball=tarball)
        # The wheel changes after the lock pinned its hash (and no cached copy is left).
        wheel = next(wheelhouse.glob("greet-2.0-*.whl"))
        shutil.copy(wheel, wheel.with_suffix(".orig"))
        make_wheel(wheelhouse, "greet", "2.0", files={"greet/__init__.py": "print('evil')\n"})
        shutil.rmtree(data_dir / "uv-cache", ignore_errors=True)
        run = stack.wait(stack.dispatch(auto["id"])["id"], timeout=90)
        assert run["status"] == "failed" and run["failure_origin"] == "infrastructure", run
        log = stack.log(run["id"])
        assert "could not be built" in log and "greet" in log
        assert "hash" in log.lower()
        os.replace(wheel.with_suffix(".orig"), wheel)
        assert json.loads(json.dumps(run))["attempts"] == []


BUILD_ONE = """
import sys
from pathlib import Path
from automation_server.environments.resolver import PackageSources
from automation_server.logging import configure_logging
from automation_server.storage.filesystem import FilesystemBlobStore
from automation_server.worker.environments import EnvironmentCache
configure_logging("info", "json")
root, blobs, wheels, digest = sys.argv[1:5]
store = FilesystemBlobStore(Path(blobs))
sources = PackageSources(None, Path(wheels))
cache = EnvironmentCache(
    Path(root), store, python=Path("/usr/bin/python3"), sources=sources, max_bytes=1 << 40
)
with cache.use(digest) as site:
    print("SITE", site, flush=True)
"""


def test_two_worker_processes_building_one_digest_build_it_once(
    tmp_path: Path, wheelhouse: Path
) -> None:
    import subprocess
    import sys

    from automation_server.storage.filesystem import FilesystemBlobStore

    blobs = tmp_path / "blobs"
    store = FilesystemBlobStore(blobs)
    resolver = Resolver(
        python=PYTHON, sources=PackageSources(None, wheelhouse), cache_dir=tmp_path / "uvc"
    )
    lock = resolver.resolve(parse_requirements(["greet==1.0"], "r"), "r")
    store.put(env_lock_key(lock.digest), lock.text().encode())
    argv = [sys.executable, "-c", BUILD_ONE, str(tmp_path / "envs"), str(blobs), str(wheelhouse)]
    procs = [
        subprocess.Popen(
            [*argv, lock.digest], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    built = sum(err.count('"environment.built"') for _out, err in outputs)
    assert built == 1, outputs
    sites = {line for out, _err in outputs for line in out.splitlines() if line.startswith("SITE")}
    assert len(sites) == 1
