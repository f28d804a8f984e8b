"""A complete lock: every package pinned with its hashes, in a canonical text.

The canonical text has one ``name==version --hash=sha256:...`` line per
package (names normalised, lines sorted, every hash of a package sorted),
then a ``# python X.Y.Z`` line; no resolver comments and no file names. Its
sha256 is the environment digest, so a requirements.txt and an equal
``requirements`` list, resolved for the same Python, give the same digest in
any automation. The same text is what workers install from, with hashes
required.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from packaging.utils import canonicalize_name

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_HASH = re.compile(r"--hash=(sha256:[0-9a-f]{64})")
_PYTHON = re.compile(r"^# python (\d+\.\d+\.\d+\S*)$")


class LockError(ValueError):
    """The resolver's output (or a stored lock) is not a complete hashed lock."""


@dataclass(frozen=True, order=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...]

    def line(self) -> str:
        return f"{self.name}=={self.version} " + " ".join(f"--hash={h}" for h in self.hashes)


@dataclass(frozen=True)
class Lock:
    python: str
    pins: tuple[Pin, ...]

    def text(self) -> str:
        return "".join(f"{p.line()}\n" for p in self.pins) + f"# python {self.python}\n"

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.text().encode()).hexdigest()

    def packages(self) -> list[dict[str, str]]:
        return [{"name": p.name, "version": p.version} for p in self.pins]

    def install_text(self) -> str:
        """The lock as a requirements file an installer reads with hashes required."""
        return "".join(f"{p.line()}\n" for p in self.pins)


def lock_from_resolver(output: str, python: str) -> Lock:
    """The canonical lock of ``uv pip compile --generate-hashes`` output."""
    pins: dict[str, Pin] = {}
    for entry in _entries(output):
        match = _PIN.match(entry)
        if match is None:
            raise LockError(f"unexpected resolver line {entry[:120]!r}")
        name, version = canonicalize_name(match.group(1)), match.group(2)
        hashes = tuple(sorted(set(_HASH.findall(entry))))
        if not hashes:
            raise LockError(f"the resolver gave no hash for {name}=={version}")
        pins[name] = Pin(name, version, hashes)
    return Lock(python, tuple(sorted(pins.values())))


def parse_lock(text: str) -> Lock:
    """A stored canonical lock back into its pins (checked to be canonical)."""
    lines = text.splitlines()
    if not lines or not (python := _PYTHON.match(lines[-1])):
        raise LockError("a lock ends with its '# python X.Y.Z' line")
    lock = lock_from_resolver("\n".join(lines[:-1]), python.group(1))
    if lock.text() != text:
        raise LockError("the lock is not in canonical form")
    return lock


def _entries(output: str) -> list[str]:
    """Logical lines (continuations joined), comments and blanks dropped."""
    entries: list[str] = []
    current = ""
    for raw in output.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        entries.append((current + line).strip())
        current = ""
    if current.strip():
        entries.append(current.strip())
    return entries
