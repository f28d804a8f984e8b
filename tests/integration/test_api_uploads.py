"""POST /v1/uploads: content-addressed refs, unsafe archives, size limits, ownership."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

from tests.support import LiveServer, targz


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("main.py")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"#\n"))
        tar.addfile(member, io.BytesIO(data) if data else None)
    return buf.getvalue()


def test_upload_returns_content_addressed_ref(server: LiveServer) -> None:
    body = targz({"main.py": "print('hi')\n", "lib/util.py": "X = 1\n"})
    with server.client(server.new_key()) as http:
        first = http.post("/v1/uploads", content=body)
        second = http.post("/v1/uploads", content=body)
    assert first.status_code == 201 and second.status_code == 201
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    assert first.json() == {
        "ref": f"blob:{digest}",
        "digest": digest,
        "size": len(body),
        "files": 2,
    }
    assert second.json() == first.json()


def test_unsafe_archives_are_422_with_the_reason(server: LiveServer) -> None:
    abs_path = tarfile.TarInfo("/etc/evil")
    abs_path.size = 1
    dotdot = tarfile.TarInfo("../evil.py")
    dotdot.size = 1
    link = tarfile.TarInfo("escape")
    link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
    hard = tarfile.TarInfo("hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "main.py"
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    fifo = tarfile.TarInfo("fifo")
    fifo.type = tarfile.FIFOTYPE
    cases = {
        "absolute": _tar_with(abs_path, b"x"),
        "dotdot": _tar_with(dotdot, b"x"),
        "symlink": _tar_with(link),
        "hardlink": _tar_with(hard),
        "device": _tar_with(dev),
        "fifo": _tar_with(fifo),
    }
    with server.client(server.new_key()) as http:
        for label, body in cases.items():
            r = http.post("/v1/uploads", content=body)
            assert r.status_code == 422, (label, r.text)
            assert r.json()["code"] == "invalid_archive", label
            assert r.json()["detail"], label


def test_invalid_bodies_are_rejected(server: LiveServer) -> None:
    good = targz({"main.py": "print(1)"})
    with server.client(server.new_key()) as http:
        assert http.post("/v1/uploads", content=b"").status_code == 400
        assert http.post("/v1/uploads", content=b"not gzip at all").status_code == 422
        assert http.post("/v1/uploads", content=good[: len(good) // 2]).status_code == 422
        assert http.post("/v1/uploads", content=gzip.compress(b"plain text")).status_code == 422


def test_oversize_upload_is_413(server: LiveServer) -> None:
    limit = server.services.settings.uploads.max_upload_bytes
    with server.client(server.new_key()) as http:
        r = http.post("/v1/uploads", content=b"\0" * (limit + 1))
    assert r.status_code == 413
    assert r.json()["code"] == "too_large"


def test_blob_refs_are_private_to_uploading_orgs(server: LiveServer) -> None:
    body = targz({"main.py": "print(1)"})
    with server.client(server.new_key("acme")) as acme:
        ref = acme.post("/v1/uploads", content=body).json()["ref"]
        assert acme.post("/v1/automations", json={"name": "a", "tarball": ref}).status_code == 201
    with server.client(server.new_key("globex")) as globex:
        r = globex.post("/v1/automations", json={"name": "a", "tarball": ref})
        assert r.status_code == 422
        assert r.json()["code"] == "unknown_blob"
        # Uploading the same bytes makes globex an owner too.
        assert globex.post("/v1/uploads", content=body).json()["ref"] == ref
        assert globex.post("/v1/automations", json={"name": "a", "tarball": ref}).status_code == 201
