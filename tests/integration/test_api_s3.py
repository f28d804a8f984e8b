"""The server on S3 (moto's HTTP server: the real wire path) and s3:// tarball refs."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from automation_server.services import build_services
from tests.support import live_server, settings_for, targz


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        server._server.server_close()  # type: ignore[union-attr]


@pytest.fixture
def s3(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[object, str, str]:
    """A client and two fresh buckets (blobs, user code) on the shared moto server."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    client = boto3.client("s3", endpoint_url=moto_url)
    suffix = uuid.uuid4().hex[:8]
    blobs, code = f"blobs-{suffix}", f"code-{suffix}"
    for bucket in (blobs, code):
        client.create_bucket(Bucket=bucket)
    return client, blobs, code


def test_server_on_s3_stores_uploads_and_pins_s3_refs(
    s3: tuple[object, str, str], moto_url: str, data_dir: Path, database_url: str
) -> None:
    client, blobs, code = s3
    settings = settings_for(
        data_dir,
        database_url,
        env={"AUTOMATION_BLOB_URL": f"s3://{blobs}/prod", "AUTOMATION_S3_ENDPOINT_URL": moto_url},
    )
    tarball = targz({"main.py": "print('from s3')"})
    client.put_object(Bucket=code, Key="team/job.tar.gz", Body=tarball)  # type: ignore[attr-defined]
    client.put_object(Bucket=code, Key="bad.tar.gz", Body=b"not a tarball")  # type: ignore[attr-defined]
    services = build_services(settings)
    try:
        with live_server(services) as server:
            http = server.client(server.new_key())
            assert http.get("/ready").status_code == 200
            up = http.post("/v1/uploads", content=targz({"main.py": "print(1)"})).json()
            keys = [o["Key"] for o in client.list_objects_v2(Bucket=blobs)["Contents"]]  # type: ignore[attr-defined]
            assert keys == [f"prod/blobs/sha256/{up['digest'][7:9]}/{up['digest'][7:]}"]

            r = http.post(
                "/v1/automations",
                json={"name": "from-s3", "tarball": f"s3://{code}/team/job.tar.gz"},
            )
            assert r.status_code == 201, r.text
            digest = "sha256:" + hashlib.sha256(tarball).hexdigest()
            assert r.json()["variants"][0]["digest"] == digest
            assert r.json()["variants"][0]["source"] == {
                "kind": "s3",
                "uri": f"s3://{code}/team/job.tar.gz",
            }
            # Changing the S3 object later does not change the pinned digest.
            client.put_object(Bucket=code, Key="team/job.tar.gz", Body=targz({"x.py": ""}))  # type: ignore[attr-defined]
            again = http.get(f"/v1/automations/{r.json()['id']}").json()
            assert again["variants"][0]["digest"] == digest

            missing = http.post(
                "/v1/automations", json={"name": "m", "tarball": f"s3://{code}/nope.tar.gz"}
            )
            assert (missing.status_code, missing.json()["code"]) == (422, "unknown_tarball")
            bad = http.post(
                "/v1/automations", json={"name": "b", "tarball": f"s3://{code}/bad.tar.gz"}
            )
            assert (bad.status_code, bad.json()["code"]) == (422, "invalid_archive")
    finally:
        services.close()
