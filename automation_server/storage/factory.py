"""Which object store a process uses, from ``AUTOMATION_BLOB_URL``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from automation_server.storage.blobstore import BlobStore


def blobstore_from_url(
    url: str | None, *, data_dir: Path, endpoint_url: str | None = None
) -> BlobStore:
    """Build the store named by ``AUTOMATION_BLOB_URL``.

    ``None`` (or empty) -> files under ``data_dir / "blobs"``;
    ``s3://bucket/prefix`` -> S3 (``endpoint_url`` for MinIO-style services);
    ``file:///absolute/path`` -> files under that directory.
    """
    if url is None or not url.strip():
        return _filesystem(Path(data_dir) / "blobs")
    parts = urlsplit(url.strip())
    if parts.query or parts.fragment:
        raise ValueError(f"blob store URL must not have a query or fragment: {url!r}")
    if parts.scheme == "s3":
        return _s3(parts.netloc, parts.path, endpoint_url, url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"file blob store URL must be file:///absolute/path, got {url!r}")
        return _filesystem(Path(unquote(parts.path)))
    raise ValueError(
        f"unsupported blob store URL {url!r}: use s3://bucket/prefix or file:///absolute/path"
    )


def _filesystem(root: Path) -> BlobStore:
    # Imported here so that choosing one backend never imports the other.
    from automation_server.storage.filesystem import FilesystemBlobStore

    return FilesystemBlobStore(root)


def _s3(bucket: str, path: str, endpoint_url: str | None, url: str) -> BlobStore:
    from automation_server.storage.s3 import S3BlobStore, is_valid_bucket_name

    if not is_valid_bucket_name(bucket):
        raise ValueError(f"blob store URL {url!r} does not name a valid S3 bucket")
    return S3BlobStore(bucket, path.strip("/"), endpoint_url=endpoint_url)
