"""Tarballs as content-addressed blobs: upload, ownership, resolving references.

A blob ref is ``blob:sha256:<hex>``; the bytes live in the object store under
``blobs/sha256/<aa>/<hex>``. Only organizations that uploaded the bytes may use
the ref: to any other it is an unknown blob, so a digest seen elsewhere reveals
nothing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import select

from automation_server.db.engine import Database
from automation_server.db.helpers import insert_ignore
from automation_server.db.models import Blob, BlobOwner
from automation_server.errors import DigestMismatch, Invalid
from automation_server.ids import utcnow
from automation_server.storage.archive import ArchiveLimits, validate_archive
from automation_server.storage.blobstore import BlobStore
from automation_server.storage.s3 import read_s3_uri

BLOB_REF = re.compile(r"^blob:(sha256:[0-9a-f]{64})$")


@dataclass(frozen=True)
class StoredBlob:
    ref: str
    digest: str
    size: int
    files: int


def blob_key(digest: str) -> str:
    hexdigest = digest.removeprefix("sha256:")
    return f"blobs/sha256/{hexdigest[:2]}/{hexdigest}"


def env_lock_key(digest: str) -> str:
    """Where an environment's lock text lives (content-addressed by its sha256)."""
    return f"environments/sha256/{digest.removeprefix('sha256:')}.lock"


def log_key(run_id: str) -> str:
    """Where a run's captured stdout and stderr live in the object store."""
    return f"logs/{run_id}"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_digest(data: bytes, digest: str) -> None:
    """Raise :class:`DigestMismatch` when stored bytes no longer match their name."""
    actual = digest_of(data)
    if actual != digest:
        raise DigestMismatch(f"object {digest} is corrupt in the object store (found {actual})")


class BlobService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        limits: ArchiveLimits,
        *,
        s3_endpoint_url: str | None = None,
    ) -> None:
        self._db = db
        self._store = store
        self._limits = limits
        self._s3_endpoint_url = s3_endpoint_url

    @property
    def store(self) -> BlobStore:
        return self._store

    def upload(self, org_id: str, data: bytes) -> StoredBlob:
        """Validate an archive, store it once, and record the organization as an owner."""
        info = validate_archive(data, self._limits)
        digest = digest_of(data)
        with self._db.read() as session:
            known = session.get(Blob, digest) is not None
        if not known or not self._store.exists(blob_key(digest)):
            self._store.put(blob_key(digest), data)
        now = utcnow()
        with self._db.write() as session:
            insert_ignore(
                session,
                Blob,
                {"digest": digest, "size": len(data), "files": info.files, "created_at": now},
            )
            insert_ignore(
                session, BlobOwner, {"org_id": org_id, "digest": digest, "created_at": now}
            )
        return StoredBlob(ref=f"blob:{digest}", digest=digest, size=len(data), files=info.files)

    def resolve(self, org_id: str, ref: str, *, field: str) -> str:
        """The digest a tarball reference names, pinned now; 422 when it cannot be used."""
        match = BLOB_REF.match(ref)
        if match:
            digest = match.group(1)
            if not self._owns(org_id, digest):
                raise Invalid(
                    f"{field}: unknown blob '{ref}' (upload it first with POST /v1/uploads)",
                    field=field,
                    code="unknown_blob",
                )
            return digest
        if ref.startswith("s3://"):
            data = read_s3_uri(
                ref, max_bytes=self._limits.max_compressed_bytes, endpoint_url=self._s3_endpoint_url
            )
            return self.upload(org_id, data).digest
        raise Invalid(
            f"{field}: unsupported tarball reference '{ref[:100]}': use "
            "'blob:sha256:<hex>' from POST /v1/uploads or 's3://bucket/key'",
            field=field,
            code="unsupported_tarball",
        )

    def read(self, digest: str) -> bytes:
        """The verified bytes of a blob."""
        data = self._store.get(blob_key(digest))
        verify_digest(data, digest)
        return data

    def _owns(self, org_id: str, digest: str) -> bool:
        with self._db.read() as session:
            return (
                session.scalar(
                    select(BlobOwner.digest).where(
                        BlobOwner.org_id == org_id, BlobOwner.digest == digest
                    )
                )
                is not None
            )
