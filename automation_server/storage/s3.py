"""Object store on S3 or an S3-compatible service (MinIO, Ceph, R2...).

Errors are translated at this boundary: a missing object is ``BlobMissing``;
anything that means "the store cannot be used right now" (no route, timeouts,
missing credentials, access denied, 5xx after retries) is ``Unavailable`` with
a message that says what to check, never with credentials in it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3

# boto3 re-exports s3transfer's error (s3transfer itself ships no type info).
from boto3.s3.transfer import S3TransferRetriesExceededError, TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from automation_server.errors import (
    AutomationError,
    BlobMissing,
    Invalid,
    TooLarge,
    Unavailable,
)
from automation_server.storage.blobstore import atomic_output, validate_key, validate_prefix

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
MAX_ATTEMPTS = 3  # total, first try included ("standard" retry mode)

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_MAX_S3_KEY_BYTES = 1024
_MISSING_OBJECT = frozenset({"NoSuchKey", "404", "NotFound"})
# For a tarball a user points at, "cannot see it" is the user's problem (422),
# not an outage of our store.
_UNREADABLE_TARBALL = _MISSING_OBJECT | {"NoSuchBucket", "AccessDenied", "403"}
_DENIED = frozenset(
    {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)
_CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)
# BotoConnectionError covers EndpointConnectionError and ConnectTimeoutError;
# HTTPClientError covers ReadTimeoutError and dropped connections.
_NETWORK_ERRORS = (BotoConnectionError, HTTPClientError, S3TransferRetriesExceededError)


def make_s3_client(
    endpoint_url: str | None = None,
    *,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
    max_attempts: int = MAX_ATTEMPTS,
) -> Any:
    """An S3 client with bounded timeouts and standard retries.

    Credentials and region come from the usual AWS sources (environment,
    profile, instance role).
    """
    options: dict[str, Any] = {}
    if endpoint_url:
        # MinIO-style services serve buckets by path, not by DNS name, and
        # many reject the newer default request checksums.
        options = {
            "s3": {"addressing_style": "path"},
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        }
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        **options,
    )
    # A session per client: boto3's default session is not thread-safe.
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=config)


def is_valid_bucket_name(name: str) -> bool:
    """Whether ``name`` follows S3's bucket naming rules (the common subset)."""
    return bool(_BUCKET_RE.match(name)) and ".." not in name


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into bucket and key; raise ``Invalid`` if malformed."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if (
        not uri.startswith("s3://")
        or not is_valid_bucket_name(bucket)
        or not key
        or len(key.encode("utf-8", errors="surrogatepass")) > _MAX_S3_KEY_BYTES
    ):
        raise Invalid(
            f"tarball {uri[:200]!r} is not a valid s3://bucket/key URI", code="unknown_tarball"
        )
    return bucket, key


class S3BlobStore:
    """Blobs as objects under ``s3://bucket/prefix/``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        client: Any | None = None,
    ) -> None:
        if not is_valid_bucket_name(bucket):
            raise ValueError(f"not a valid S3 bucket name: {bucket!r}")
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        self._bucket = bucket
        self._prefix = f"{prefix}/" if prefix else ""
        self._client = client if client is not None else make_s3_client(endpoint_url)
        self._transfer = TransferConfig()

    def describe(self) -> str:
        return (
            f"S3 blob store at s3://{self._bucket}/{self._prefix} "
            f"(endpoint {_endpoint(self._client)})"
        )

    def ping(self) -> None:
        with self._errors(""):
            self._client.list_objects_v2(Bucket=self._bucket, Prefix=self._prefix, MaxKeys=1)

    def put(self, key: str, data: bytes) -> None:
        with self._errors(key):
            self._client.put_object(Bucket=self._bucket, Key=self._full(key), Body=bytes(data))

    def put_file(self, key: str, path: Path) -> None:
        full = self._full(key)
        # S3 makes an object visible only once its upload (multipart or not)
        # completes, so streaming straight from the file is atomic.
        with open(path, "rb") as src, self._errors(key):
            self._client.upload_fileobj(src, self._bucket, full, Config=self._transfer)

    def get(self, key: str) -> bytes:
        with self._errors(key):
            response = self._client.get_object(Bucket=self._bucket, Key=self._full(key))
            with contextlib.closing(response["Body"]) as body:
                data: bytes = body.read()
        return data

    def get_to_file(self, key: str, path: Path) -> None:
        full = self._full(key)
        with self._errors(key), atomic_output(path) as out:
            self._client.download_fileobj(self._bucket, full, out, Config=self._transfer)

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except BlobMissing:
            return False
        return True

    def size(self, key: str) -> int:
        with self._errors(key):
            response = self._client.head_object(Bucket=self._bucket, Key=self._full(key))
        return int(response["ContentLength"])

    def delete(self, key: str) -> None:
        # DeleteObject succeeds for a missing key, which is what we promise.
        with self._errors(key):
            self._client.delete_object(Bucket=self._bucket, Key=self._full(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)  # eagerly, not on first next()
        return self._iter_keys(self._prefix + prefix)

    def _iter_keys(self, full_prefix: str) -> Iterator[str]:
        # S3 lists keys in UTF-8 byte order, which is Python's str order.
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors(full_prefix):
            for page in paginator.paginate(Bucket=self._bucket, Prefix=full_prefix):
                for item in page.get("Contents", ()):
                    key = item["Key"][len(self._prefix) :]
                    if _is_valid_key(key):  # skip foreign objects we could not address
                        yield key

    def _full(self, key: str) -> str:
        return self._prefix + validate_key(key)

    def _errors(self, key: str) -> contextlib.AbstractContextManager[None]:
        return _s3_errors(
            self._client,
            self._bucket,
            missing_codes=_MISSING_OBJECT,
            missing=lambda: BlobMissing(f"no blob stored under {key!r}"),
        )


def read_s3_uri(
    uri: str, *, max_bytes: int, endpoint_url: str | None = None, client: Any | None = None
) -> bytes:
    """Read the whole object at ``s3://bucket/key``, at most ``max_bytes`` of it.

    Raises ``Invalid(code="unknown_tarball")`` for a malformed URI or an object
    the server cannot see, ``TooLarge`` past ``max_bytes`` and ``Unavailable``
    when S3 cannot be reached.
    """
    bucket, key = parse_s3_uri(uri)
    client = client if client is not None else make_s3_client(endpoint_url)
    with _s3_errors(
        client,
        bucket,
        missing_codes=_UNREADABLE_TARBALL,
        missing=lambda: Invalid(
            f"tarball {uri[:200]!r} does not exist or the server may not read it",
            code="unknown_tarball",
        ),
    ):
        response = client.get_object(Bucket=bucket, Key=key)
        with contextlib.closing(response["Body"]) as body:
            _check_size(uri, response.get("ContentLength"), max_bytes)
            # Bounded even if ContentLength lied or was absent.
            data: bytes = body.read(max_bytes + 1)
    _check_size(uri, len(data), max_bytes)
    return data


def _check_size(uri: str, size: int | None, max_bytes: int) -> None:
    if size is not None and size > max_bytes:
        raise TooLarge(f"tarball {uri[:200]!r} is larger than the limit of {max_bytes} bytes")


@contextlib.contextmanager
def _s3_errors(
    client: Any,
    bucket: str,
    *,
    missing_codes: frozenset[str],
    missing: Callable[[], AutomationError],
) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in missing_codes:
            raise missing() from exc
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        raise Unavailable(_client_error_message(client, bucket, code, status)) from exc
    except _CREDENTIAL_ERRORS as exc:
        raise Unavailable(
            "no usable S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE, or an instance role)"
        ) from exc
    except _NETWORK_ERRORS as exc:
        raise Unavailable(
            f"cannot reach S3 at {_endpoint(client)} ({type(exc).__name__}); "
            "check AUTOMATION_S3_ENDPOINT_URL and that the service is running and reachable"
        ) from exc


def _client_error_message(client: Any, bucket: str, code: str, status: object) -> str:
    where = f"S3 bucket {bucket!r} at {_endpoint(client)}"
    if code == "NoSuchBucket":
        return f"{where} does not exist; check AUTOMATION_BLOB_URL"
    if code in _DENIED:
        return f"{where} refused access ({code}); check the credentials and the bucket policy"
    if isinstance(status, int) and status >= 500:
        return f"{where} answered HTTP {status} ({code}) after retries; the service is failing"
    return f"{where} answered {code or 'an error'} (HTTP {status})"


def _endpoint(client: Any) -> str:
    """The client's endpoint without any user:password part."""
    url = str(getattr(getattr(client, "meta", None), "endpoint_url", None) or "default AWS")
    parts = urlsplit(url)
    if parts.hostname is None:
        return url
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def _is_valid_key(key: str) -> bool:
    try:
        validate_key(key)
    except ValueError:
        return False
    return True
