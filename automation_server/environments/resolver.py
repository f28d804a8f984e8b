"""Resolving a variant's requirements at save time, with uv, for the sandbox's Python.

``uv pip compile --generate-hashes --only-binary :all:`` against the
operator's package sources (``AUTOMATION_PACKAGE_INDEX_URL``, or ``none`` for
only ``AUTOMATION_PACKAGE_FIND_LINKS``) and the interpreter runs use
(``AUTOMATION_RUN_PYTHON``), so markers and wheel tags are the sandbox's.
Wheels only: nothing of a package runs at save time or at install time.

uv runs with no configuration files, a clean environment and a timeout; its
answer is turned into a 422 that names the package (``source_only_package``,
``unresolvable_requirements``) or a 503 when the index cannot be reached.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from automation_server.environments.lock import Lock, LockError, lock_from_resolver
from automation_server.environments.requirements import Requirements
from automation_server.errors import Invalid, Unavailable
from automation_server.logging import get_logger

log = get_logger("environments")

_NETWORK = re.compile(
    r"Failed to fetch|Request failed|error sending request|tcp connect|timed out|dns error",
    re.IGNORECASE,
)
_NO_WHEEL = re.compile(r"Wheels are required for `([^`]+)`|(\S+?)==\S+ has no usable wheels")
_CULPRIT = re.compile(
    r"Because (?:there is no version of |there are no versions of |only )?([A-Za-z0-9][\w.-]*)"
)
# Variables passed to uv: reaching an index may need a proxy or a CA bundle.
_PASSED_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
               "SSL_CERT_FILE", "SSL_CERT_DIR")  # fmt: skip


_VERSION_CODE = "import platform; print(platform.python_version())"


def find_uv() -> str:
    """The uv binary shipped with the server (its wheel puts it beside the interpreter)."""
    beside = Path(sys.executable).with_name("uv")
    if beside.exists():
        return str(beside)
    found = shutil.which("uv")
    if found is None:
        raise Unavailable("uv is not installed: reinstall the server (pip install -e .)")
    return found


@dataclass(frozen=True)
class PackageSources:
    """Where packages come from: an index (None = offline) and a directory of wheels."""

    index_url: str | None
    find_links: Path | None

    def args(self) -> list[str]:
        args = ["--no-index"] if self.index_url is None else ["--index-url", self.index_url]
        if self.find_links is not None:
            args += ["--find-links", str(self.find_links)]
        return args

    def describe(self) -> str:
        index = self.index_url or "no index (offline)"
        links = f", wheels from {self.find_links}" if self.find_links else ""
        return f"{index}{links}"


class Resolver:
    def __init__(
        self,
        *,
        python: Path,
        sources: PackageSources,
        cache_dir: Path,
        timeout_s: float = 120.0,
        uv: str | None = None,
    ) -> None:
        self._python = python
        self._sources = sources
        self._cache_dir = cache_dir
        self._timeout_s = timeout_s
        self._uv = uv
        self._version: str | None = None

    @property
    def sources(self) -> PackageSources:
        return self._sources

    def python_version(self) -> str:
        """The full version of the sandbox's Python (asked once)."""
        if self._version is None:
            try:
                done = subprocess.run(
                    [str(self._python), "-I", "-c", _VERSION_CODE],
                    capture_output=True, text=True, timeout=30, check=True, env={},
                )  # fmt: skip
            except (OSError, subprocess.SubprocessError) as exc:
                raise Unavailable(f"cannot run the sandbox's Python {self._python}: {exc}") from exc
            self._version = done.stdout.strip()
        return self._version

    def resolve(self, requirements: Requirements, field: str) -> Lock:
        """The complete hashed lock of ``requirements`` (see the module docstring)."""
        python = self.python_version()
        output = self._compile(requirements, field)
        try:
            return lock_from_resolver(output, python)
        except LockError as exc:
            raise Invalid(
                f"{field}: the resolver's lock is unusable: {exc}",
                field=field,
                code="unresolvable_requirements",
            ) from exc

    def _compile(self, requirements: Requirements, field: str) -> str:
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="resolve-") as tmp:
            (Path(tmp) / "requirements.in").write_text(requirements.text())
            argv = [
                self._uv or find_uv(), "pip", "compile", "requirements.in",
                "--python", str(self._python), "--generate-hashes", "--only-binary", ":all:",
                "--no-header", "--no-annotate", "--no-config", "--quiet",
                "--cache-dir", str(self._cache_dir), *self._sources.args(),
            ]  # fmt: skip
            env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
            env.update(HOME=tmp, PATH="/usr/bin:/bin", UV_HTTP_TIMEOUT=str(int(self._timeout_s)))
            try:
                done = subprocess.run(
                    argv, cwd=tmp, env=env, capture_output=True, text=True,
                    timeout=self._timeout_s, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                raise Unavailable(
                    f"resolving the requirements took over {self._timeout_s:g} s "
                    f"(package sources: {self._sources.describe()}); try again later"
                ) from None
        if done.returncode != 0:
            raise self._refusal(done.stderr, field)
        return done.stdout

    def _refusal(self, stderr: str, field: str) -> Exception:
        message = " ".join(line.strip() for line in stderr.splitlines() if line.strip())[:2000]
        log.info("environment.resolve_refused", reason=message)
        if _NETWORK.search(message) and "No solution found" not in message:
            return Unavailable(
                f"the package index could not be reached ({self._sources.describe()}): {message}"
            )
        no_wheel = _NO_WHEEL.search(message)
        if no_wheel:
            name = no_wheel.group(1) or no_wheel.group(2)
            return Invalid(
                f"{field}: package {name!r} has no wheel for the sandbox's Python "
                f"{self.python_version()} (source distributions are never built): {message}",
                field=field,
                code="source_only_package",
            )
        culprit = _CULPRIT.search(message)
        name = f"package {culprit.group(1)!r}: " if culprit else ""
        return Invalid(
            f"{field}: cannot resolve the requirements: {name}{message}",
            field=field,
            code="unresolvable_requirements",
        )
