"""One behaviour for every object store: filesystem, memory, S3 (moto in-process
and moto's HTTP server), plus the checks that only make sense for one backend."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from automation_server.errors import BlobMissing, Invalid, TooLarge, Unavailable
from automation_server.storage.blobstore import BlobStore
from automation_server.storage.factory import blobstore_from_url
from automation_server.storage.filesystem import FilesystemBlobStore
from automation_server.storage.memory import MemoryBlobStore
from automation_server.storage.s3 import S3BlobStore, make_s3_client, read_s3_uri

SECRET_KEY = "dummy-secret-must-not-be-logged"
BACKENDS = ["filesystem", "memory", "s3-moto", "s3-server"]


# -- fixtures -----------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials, and no way to reach real AWS or the user's profile."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        # stop() leaves the listening socket open; close it so no ResourceWarning leaks.
        server._server.server_close()  # type: ignore[union-attr]


@pytest.fixture
def s3_mock(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        yield make_s3_client()


def new_bucket(client: Any) -> str:
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket)
    return bucket


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there once the socket is closed


def fast_failing_client(endpoint_url: str) -> Any:
    return make_s3_client(endpoint_url, connect_timeout=0.5, read_timeout=0.5, max_attempts=1)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    kind = request.param
    if kind == "filesystem":
        return FilesystemBlobStore(tmp_path / "store")
    if kind == "memory":
        return MemoryBlobStore()
    if kind == "s3-moto":
        client = request.getfixturevalue("s3_mock")
        return S3BlobStore(new_bucket(client), "some/prefix", client=client)
    # Real HTTP: the store is built the way the server builds it, from the URL.
    url = request.getfixturevalue("moto_server")
    request.getfixturevalue("aws_env")
    bucket = new_bucket(make_s3_client(url))
    return blobstore_from_url(f"s3://{bucket}/srv", data_dir=tmp_path, endpoint_url=url)


# -- conformance: every backend -------------------------------------------------


def test_round_trips_bytes(store: BlobStore) -> None:
    store.put("blobs/sha256/ab/abcdef", b"hello\x00world")
    store.put("logs/empty/log", b"")

    assert store.get("blobs/sha256/ab/abcdef") == b"hello\x00world"
    assert store.size("blobs/sha256/ab/abcdef") == 11
    assert store.exists("blobs/sha256/ab/abcdef")
    assert store.get("logs/empty/log") == b""
    assert store.size("logs/empty/log") == 0


def test_round_trips_a_20_mib_file_through_the_file_path(store: BlobStore, tmp_path: Path) -> None:
    payload = os.urandom(20 * 1024 * 1024)
    source = tmp_path / "big.tar.gz"
    source.write_bytes(payload)
    target = tmp_path / "out" / "copy.tar.gz"
    target.parent.mkdir()

    store.put_file("blobs/sha256/big", source)
    store.get_to_file("blobs/sha256/big", target)

    assert store.size("blobs/sha256/big") == len(payload)
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(payload).digest()
    assert os.listdir(target.parent) == ["copy.tar.gz"]  # no temp file left behind


def test_overwrite_replaces_the_object(store: BlobStore, tmp_path: Path) -> None:
    store.put("logs/run/log", b"first version, longer")
    store.put("logs/run/log", b"second")
    assert store.get("logs/run/log") == b"second"

    source = tmp_path / "third"
    source.write_bytes(b"third")
    store.put_file("logs/run/log", source)
    assert store.get("logs/run/log") == b"third"
    assert store.size("logs/run/log") == 5


def test_missing_key_raises_blob_missing(store: BlobStore, tmp_path: Path) -> None:
    store.put("blobs/present", b"x")
    target = tmp_path / "kept"
    target.write_bytes(b"old content")

    for missing in ("blobs/absent", "blobs/present/child", "nothing/here/at/all"):
        with pytest.raises(BlobMissing):
            store.get(missing)
        with pytest.raises(BlobMissing):
            store.size(missing)
        with pytest.raises(BlobMissing):
            store.get_to_file(missing, target)
        assert not store.exists(missing)
    assert target.read_bytes() == b"old content"
    assert {p.name for p in tmp_path.iterdir()} <= {"kept", "store"}  # no partial file


def test_delete_is_idempotent(store: BlobStore) -> None:
    store.put("logs/a/log", b"x")
    store.put("logs/b/log", b"y")

    store.delete("logs/a/log")
    store.delete("logs/a/log")
    store.delete("logs/never/log")

    assert not store.exists("logs/a/log")
    assert store.get("logs/b/log") == b"y"
    assert list(store.list("logs/")) == ["logs/b/log"]


def test_list_returns_sorted_keys_under_a_prefix(store: BlobStore) -> None:
    keys = [
        "logs/r2/log",
        "blobs/sha256/ac/acd",
        "logs/r10/log",
        "blobs/sha256/ab/abd",
        "logs/r1/log",
        "blobs/sha256/ab/abc",
    ]
    for key in keys:
        store.put(key, key.encode())

    assert list(store.list("")) == list(store.list()) == sorted(keys)
    assert list(store.list("logs/")) == ["logs/r1/log", "logs/r10/log", "logs/r2/log"]
    assert list(store.list("logs/r1")) == ["logs/r1/log", "logs/r10/log"]
    assert list(store.list("blobs/sha256/ab")) == ["blobs/sha256/ab/abc", "blobs/sha256/ab/abd"]
    assert list(store.list("blobs/sha256/ab/abc")) == ["blobs/sha256/ab/abc"]
    assert list(store.list("nothing/")) == []


BAD_KEYS = [
    "",
    "/abs/key",
    "a//b",
    "a/",
    "a/./b",
    "../escape",
    "a/..",
    "a\\b",
    "a\x00b",
    "a\nb",
    "k" * 600,
    "a/" + "s" * 300,
]


def test_rejects_invalid_keys(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.write_bytes(b"x")
    for key in BAD_KEYS:
        calls: list[tuple[str, tuple[Any, ...]]] = [
            ("put", (key, b"x")),
            ("put_file", (key, source)),
            ("get", (key,)),
            ("get_to_file", (key, tmp_path / "dst")),
            ("exists", (key,)),
            ("size", (key,)),
            ("delete", (key,)),
        ]
        for method, args in calls:
            with pytest.raises(ValueError):
                getattr(store, method)(*args)
    assert not (tmp_path / "dst").exists()
    assert list(store.list()) == []


def test_list_rejects_invalid_prefixes(store: BlobStore) -> None:
    for prefix in ["/logs", "../", "a//", "a\\b", "a/./", "a\x00"]:
        with pytest.raises(ValueError):
            store.list(prefix)


def test_ping_succeeds_and_describe_hides_credentials(store: BlobStore) -> None:
    assert isinstance(store, BlobStore)
    store.ping()
    assert store.describe()
    assert SECRET_KEY not in store.describe()


# -- filesystem -----------------------------------------------------------------


def test_filesystem_creates_a_private_root(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "new" / "root")
    assert (tmp_path / "new" / "root").is_dir()
    assert (tmp_path / "new" / "root").stat().st_mode & 0o777 == 0o700
    assert str(tmp_path / "new" / "root") in store.describe()


def test_filesystem_ping_is_unavailable_when_the_root_is_gone(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "store")
    (tmp_path / "store").rmdir()
    with pytest.raises(Unavailable, match="AUTOMATION_DATA_DIR"):
        store.ping()


def test_filesystem_failed_write_keeps_old_object_and_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemBlobStore(tmp_path / "store")
    store.put("logs/run/log", b"old")
    source = tmp_path / "src"
    source.write_bytes(b"n" * 100_000)

    def copy_half_then_fail(src: Any, dst: Any, length: int = 0) -> None:
        dst.write(src.read(50_000))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", copy_half_then_fail)
    with pytest.raises(Unavailable, match="No space left"):
        store.put_file("logs/run/log", source)
    with pytest.raises(Unavailable):
        store.put_file("logs/other/log", source)

    assert store.get("logs/run/log") == b"old"
    assert not store.exists("logs/other/log")
    assert os.listdir(tmp_path / "store" / "logs" / "run") == ["log"]
    assert os.listdir(tmp_path / "store" / "logs" / "other") == []
    assert list(store.list()) == ["logs/run/log"]


def test_filesystem_failed_rename_leaves_no_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemBlobStore(tmp_path / "store")

    def failing_replace(*args: Any, **kwargs: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(Unavailable):
        store.put("blobs/x", b"data")
    monkeypatch.undo()  # the checks below must see the real file system

    assert not store.exists("blobs/x")
    assert os.listdir(tmp_path / "store" / "blobs") == []


def test_filesystem_readers_never_see_a_partial_object(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "store")
    versions = [bytes([n]) * (1024 * 1024) for n in (1, 2)]
    store.put("logs/run/log", versions[0])
    done = threading.Event()

    def writer() -> None:
        for i in range(40):
            store.put("logs/run/log", versions[i % 2])
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    seen = set()
    while not done.is_set():
        data = store.get("logs/run/log")
        assert data in versions
        seen.add(data[0])
    thread.join()
    assert seen  # the reader really ran while the writer wrote


def test_filesystem_does_not_follow_links_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"host secret")
    store = FilesystemBlobStore(tmp_path / "store")
    (tmp_path / "store" / "logs").symlink_to(outside)
    (tmp_path / "store" / "blobs").mkdir()
    (tmp_path / "store" / "blobs" / "link").symlink_to(outside / "secret")

    for key in ("logs/secret", "blobs/link"):
        with pytest.raises(BlobMissing):
            store.get(key)
        with pytest.raises(BlobMissing):
            store.size(key)
        assert not store.exists(key)
    with pytest.raises(Unavailable):
        store.put("logs/planted", b"x")
    assert list(store.list()) == []

    store.delete("blobs/link")  # removes the link, never its target
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_bytes() == b"host secret"


# -- S3 -------------------------------------------------------------------------


def test_s3_stores_with_different_prefixes_do_not_see_each_other(s3_mock: Any) -> None:
    bucket = new_bucket(s3_mock)
    tenant = S3BlobStore(bucket, "tenant", client=s3_mock)
    tenant2 = S3BlobStore(bucket, "/tenant2/", client=s3_mock)
    whole = S3BlobStore(bucket, client=s3_mock)

    tenant.put("logs/a/log", b"one")
    tenant2.put("logs/a/log", b"two")

    assert tenant.get("logs/a/log") == b"one"
    assert tenant2.get("logs/a/log") == b"two"
    assert list(tenant.list()) == ["logs/a/log"]
    tenant.delete("logs/a/log")
    assert tenant2.get("logs/a/log") == b"two"
    assert list(whole.list()) == ["tenant2/logs/a/log"]


def test_s3_ping_is_unavailable_when_nothing_listens(aws_env: None) -> None:
    url = closed_port_url()
    store = S3BlobStore("some-bucket", client=fast_failing_client(url))

    started = time.monotonic()
    with pytest.raises(Unavailable, match="AUTOMATION_S3_ENDPOINT_URL") as caught:
        store.ping()
    with pytest.raises(Unavailable):
        store.get("logs/a/log")

    assert time.monotonic() - started < 5
    assert url in caught.value.detail


def test_s3_ping_is_unavailable_for_a_missing_bucket(s3_mock: Any) -> None:
    store = S3BlobStore("no-such-bucket-here", client=s3_mock)
    with pytest.raises(Unavailable, match="does not exist"):
        store.ping()


def test_s3_without_credentials_is_unavailable(
    aws_env: None, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = S3BlobStore("some-bucket", client=fast_failing_client(moto_server))
    with pytest.raises(Unavailable, match="credentials"):
        store.ping()


def test_s3_describe_strips_userinfo_from_the_endpoint(aws_env: None) -> None:
    store = S3BlobStore("bucket", "p", endpoint_url="http://user:hunter2@127.0.0.1:9000")
    assert "hunter2" not in store.describe()
    assert "s3://bucket/p/" in store.describe()
    assert "127.0.0.1:9000" in store.describe()


# -- read_s3_uri ------------------------------------------------------------------


def test_read_s3_uri_reads_an_object_over_http(aws_env: None, moto_server: str) -> None:
    client = make_s3_client(moto_server)
    bucket = new_bucket(client)
    client.put_object(Bucket=bucket, Key="dir/code.tar.gz", Body=b"tarball bytes")

    data = read_s3_uri(f"s3://{bucket}/dir/code.tar.gz", max_bytes=13, endpoint_url=moto_server)
    assert data == b"tarball bytes"


def test_read_s3_uri_rejects_missing_objects_and_buckets(s3_mock: Any) -> None:
    bucket = new_bucket(s3_mock)
    for uri in (f"s3://{bucket}/missing.tar.gz", "s3://no-such-bucket-here/x.tar.gz"):
        with pytest.raises(Invalid) as caught:
            read_s3_uri(uri, max_bytes=100, client=s3_mock)
        assert caught.value.code == "unknown_tarball"


def test_read_s3_uri_rejects_objects_over_the_limit(s3_mock: Any) -> None:
    bucket = new_bucket(s3_mock)
    s3_mock.put_object(Bucket=bucket, Key="big", Body=b"x" * 100)
    with pytest.raises(TooLarge):
        read_s3_uri(f"s3://{bucket}/big", max_bytes=99, client=s3_mock)
    assert len(read_s3_uri(f"s3://{bucket}/big", max_bytes=100, client=s3_mock)) == 100


def test_read_s3_uri_bounds_the_read_when_the_length_is_not_announced() -> None:
    class CountingBody(io.BytesIO):
        bytes_read = 0

        def read(self, size: int | None = -1) -> bytes:
            data = super().read(size)
            self.bytes_read += len(data)
            return data

    body = CountingBody(b"x" * 1000)

    class NoLengthClient:
        def get_object(self, **kwargs: Any) -> dict[str, Any]:
            return {"Body": body}

    with pytest.raises(TooLarge):
        read_s3_uri("s3://bucket/key", max_bytes=10, client=NoLengthClient())
    assert body.bytes_read <= 11  # never more than the limit allows
    assert body.closed


@pytest.mark.parametrize(
    "uri",
    ["s3://", "s3://bucket", "s3://bucket/", "https://bucket/key", "bucket/key",
     "s3://Bad_Bucket/key", "s3:///key", "s3://b/key"],
)  # fmt: skip
def test_read_s3_uri_rejects_malformed_uris(uri: str) -> None:
    with pytest.raises(Invalid) as caught:
        read_s3_uri(uri, max_bytes=100, client=object())
    assert caught.value.code == "unknown_tarball"


def test_read_s3_uri_is_unavailable_when_nothing_listens(aws_env: None) -> None:
    client = fast_failing_client(closed_port_url())
    with pytest.raises(Unavailable):
        read_s3_uri("s3://bucket/key", max_bytes=100, client=client)


# -- factory --------------------------------------------------------------------


@pytest.mark.parametrize("url", [None, "", "  "])
def test_factory_defaults_to_files_under_the_data_dir(url: str | None, tmp_path: Path) -> None:
    store = blobstore_from_url(url, data_dir=tmp_path)
    assert isinstance(store, FilesystemBlobStore)
    assert store.root == tmp_path / "blobs"
    store.put("logs/a/log", b"x")
    assert (tmp_path / "blobs" / "logs" / "a" / "log").read_bytes() == b"x"


def test_factory_builds_a_filesystem_store_from_a_file_url(tmp_path: Path) -> None:
    store = blobstore_from_url(f"file://{tmp_path}/my%20blobs", data_dir=tmp_path / "unused")
    assert isinstance(store, FilesystemBlobStore)
    assert store.root == tmp_path / "my blobs"
    assert not (tmp_path / "unused").exists()


def test_factory_builds_an_s3_store(aws_env: None, tmp_path: Path) -> None:
    store = blobstore_from_url(
        "s3://my-bucket/some/prefix/", data_dir=tmp_path, endpoint_url="http://127.0.0.1:9000"
    )
    assert isinstance(store, S3BlobStore)
    assert "s3://my-bucket/some/prefix/" in store.describe()
    assert "http://127.0.0.1:9000" in store.describe()


@pytest.mark.parametrize(
    "url",
    ["s3://", "s3://Bad_Bucket/x", "s3://bucket/../x", "s3://bucket/p?x=1", "ftp://host/x",
     "file://otherhost/x", "file:relative/path", "/abs/path", "memory://"],
)  # fmt: skip
def test_factory_rejects_unsupported_urls(url: str, tmp_path: Path, aws_env: None) -> None:
    with pytest.raises(ValueError):
        blobstore_from_url(url, data_dir=tmp_path)
