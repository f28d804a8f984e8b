"""The object graph of one process, built once from settings and passed down."""

from __future__ import annotations

from dataclasses import dataclass

from automation_server.automations.service import AutomationService
from automation_server.config import Settings
from automation_server.db.engine import Database
from automation_server.security.accounts import Authenticator
from automation_server.security.crypto import SecretBox, load_or_create_key
from automation_server.storage.archive import ArchiveLimits
from automation_server.storage.blobs import BlobService
from automation_server.storage.blobstore import BlobStore, blobstore_from_url


@dataclass
class Services:
    settings: Settings
    db: Database
    store: BlobStore
    box: SecretBox
    blobs: BlobService
    auth: Authenticator
    automations: AutomationService

    def close(self) -> None:
        self.db.dispose()


def archive_limits(settings: Settings) -> ArchiveLimits:
    return ArchiveLimits(
        max_compressed_bytes=settings.uploads.max_upload_bytes,
        max_uncompressed_bytes=settings.uploads.max_uncompressed_bytes,
        max_members=settings.uploads.max_members,
    )


def build_services(settings: Settings, *, store: BlobStore | None = None) -> Services:
    db = Database(settings.database_url)
    store = store or blobstore_from_url(
        settings.blob_url, data_dir=settings.data_dir, endpoint_url=settings.s3_endpoint_url
    )
    box = SecretBox(load_or_create_key(settings.secret_key, settings.data_dir))
    blobs = BlobService(
        db, store, archive_limits(settings), s3_endpoint_url=settings.s3_endpoint_url
    )
    return Services(
        settings=settings,
        db=db,
        store=store,
        box=box,
        blobs=blobs,
        auth=Authenticator(db),
        automations=AutomationService(db, blobs, box, settings),
    )
