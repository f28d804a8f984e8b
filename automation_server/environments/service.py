"""Environments at save time: requirements resolved into locks, locks stored and shown.

Resolution is slow (seconds), so it happens before the save's transaction;
the lock text goes to the object store (content-addressed, so an unused one
is harmless) and the ``environments`` row and the organization's ownership
are written in the save's transaction, so a refused save changes nothing.
An environment's lock is readable by the organizations that saved it.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from automation_server.db.engine import Database
from automation_server.db.helpers import insert_ignore
from automation_server.db.models import Environment, EnvironmentOwner
from automation_server.environments.lock import Lock, LockError, parse_lock
from automation_server.environments.requirements import (
    MAX_REQUIREMENTS_BYTES,
    REQUIREMENTS_FILE,
    Requirements,
    parse_requirements,
    parse_requirements_file,
)
from automation_server.environments.resolver import Resolver
from automation_server.errors import BlobMissing, DigestMismatch, Invalid, NotFound
from automation_server.ids import utcnow
from automation_server.storage.blobs import env_lock_key, verify_digest
from automation_server.storage.blobstore import BlobStore


@dataclass(frozen=True)
class EnvironmentRef:
    """A resolved environment, before and after it is recorded."""

    digest: str
    python: str
    packages: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "python": self.python,
            "packages": [{"name": n, "version": v} for n, v in self.packages],
        }

    @classmethod
    def of(cls, lock: Lock) -> EnvironmentRef:
        return cls(lock.digest, lock.python, tuple((p.name, p.version) for p in lock.pins))


def requirements_in_tarball(tarball: bytes, field: str) -> Requirements | None:
    """``requirements.txt`` at the tarball's root, checked; None when there is none.

    The tarball was validated when it was uploaded; the member is still read
    with a size bound.
    """
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for member in tar:
            if member.name.removeprefix("./") != REQUIREMENTS_FILE or not member.isreg():
                continue
            handle = tar.extractfile(member)
            if handle is None:
                return None
            data = handle.read(MAX_REQUIREMENTS_BYTES + 1)
            return parse_requirements_file(data, field)
    return None


class EnvironmentService:
    def __init__(self, db: Database, store: BlobStore, resolver: Resolver) -> None:
        self._db = db
        self._store = store
        self._resolver = resolver

    def requirements(self, lines: Iterable[str], field: str) -> Requirements:
        return parse_requirements(lines, field)

    def resolve(self, requirements: Requirements, field: str) -> EnvironmentRef:
        """Resolve and store the lock (not yet recorded: see :meth:`record`)."""
        lock = self._resolver.resolve(requirements, field)
        self._store.put(env_lock_key(lock.digest), lock.text().encode())
        return EnvironmentRef.of(lock)

    def record(self, session: Session, org_id: str, ref: EnvironmentRef) -> None:
        """The environment and the organization's right to read it, in the save's txn."""
        now = utcnow()
        insert_ignore(
            session,
            Environment,
            {
                "digest": ref.digest,
                "python": ref.python,
                "packages": ref.to_json()["packages"],
                "created_at": now,
            },
        )
        insert_ignore(
            session, EnvironmentOwner, {"org_id": org_id, "digest": ref.digest, "created_at": now}
        )

    def lock_text(self, org_id: str, digest: str) -> str:
        """The lock of an environment this organization saved (404 otherwise)."""
        with self._db.read() as session:
            owned = session.scalar(
                select(EnvironmentOwner.digest).where(
                    EnvironmentOwner.org_id == org_id, EnvironmentOwner.digest == digest
                )
            )
        if owned is None:
            raise NotFound(f"no environment '{digest}'")
        try:
            data = self._store.get(env_lock_key(digest))
            verify_digest(data, digest)
            text = data.decode()
            parse_lock(text)
        except (BlobMissing, DigestMismatch, UnicodeDecodeError, LockError) as exc:
            raise NotFound(f"environment '{digest}' has no readable lock ({exc})") from exc
        return text


def check_digest(value: str) -> str:
    if not value.startswith("sha256:") or len(value) != 71:
        raise Invalid(
            f"digest: {value[:80]!r} is not sha256:<64 hex>", field="digest", code="invalid_digest"
        )
    return value
