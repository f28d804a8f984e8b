"""Signed webhook triggers: signatures, replays, sizes, payloads, sticky keys."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from automation_server.dispatch.assignment import gb_hash
from automation_server.dispatch.webhooks import sign
from tests.support import LiveServer, targz


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


def hook(http: httpx.Client, **extra: Any) -> dict[str, Any]:
    refs = [
        http.post("/v1/uploads", content=targz({"main.py": str(i)})).json()["ref"] for i in range(2)
    ]
    r = http.post(
        "/v1/automations",
        json={
            "name": "hook",
            "trigger": {"type": "webhook"},
            "experiment_id": "hook-exp",
            "variants": [{"name": "a", "tarball": refs[0]}, {"name": "b", "tarball": refs[1]}],
            "concurrency": {"max_running": 10, "on_overlap": "queue"},
            **extra,
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def post(
    server: LiveServer, automation_id: str, body: bytes, secret: str | None, **headers: str
) -> httpx.Response:
    if secret is not None:
        headers["X-Signature-256"] = sign(secret, body)
    with server.client() as anonymous:  # no API key: the signature is the credential
        return anonymous.post(f"/v1/hooks/{automation_id}", content=body, headers=headers)


def test_signed_webhook_queues_a_run_with_the_payload(
    server: LiveServer, http: httpx.Client
) -> None:
    a = hook(http)
    body = json.dumps({"ticket": 42}).encode()
    r = post(server, a["id"], body, a["webhook_secret"])
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["trigger"] == "webhook" and run["status"] == "queued"
    with server.services.db.read() as session:
        from automation_server.db.models import Run

        stored = session.get(Run, run["id"])
        assert stored is not None and stored.payload == {"ticket": 42}


def test_bad_or_missing_signature_is_401_and_queues_nothing(
    server: LiveServer, http: httpx.Client
) -> None:
    a = hook(http)
    body = b'{"x": 1}'
    assert post(server, a["id"], body, None).status_code == 401
    assert post(server, a["id"], body, "whsec_wrong").status_code == 401
    tampered = post(
        server, a["id"], body, None, **{"X-Signature-256": sign(a["webhook_secret"], b'{"x": 2}')}
    )
    assert tampered.status_code == 401 and tampered.json()["code"] == "invalid_signature"
    assert http.get("/v1/runs", params={"automation_id": a["id"]}).json()["items"] == []


def test_rotated_secret_replaces_the_old_one(server: LiveServer, http: httpx.Client) -> None:
    a = hook(http)
    new = http.post(f"/v1/automations/{a['id']}/webhook-secret").json()["webhook_secret"]
    assert post(server, a["id"], b"{}", a["webhook_secret"]).status_code == 401
    assert post(server, a["id"], b"{}", new).status_code == 202


def test_delivery_id_is_not_run_twice(server: LiveServer, http: httpx.Client) -> None:
    a = hook(http)
    first = post(server, a["id"], b"{}", a["webhook_secret"], **{"X-Delivery-Id": "d-1"})
    again = post(server, a["id"], b"{}", a["webhook_secret"], **{"X-Delivery-Id": "d-1"})
    other = post(server, a["id"], b"{}", a["webhook_secret"], **{"X-Delivery-Id": "d-2"})
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert len(http.get("/v1/runs", params={"automation_id": a["id"]}).json()["items"]) == 2


def test_bodies_that_are_not_json_objects_are_400(server: LiveServer, http: httpx.Client) -> None:
    a = hook(http)
    for body in (b"not json", b"[1, 2]", b'"text"', b"{"):
        r = post(server, a["id"], body, a["webhook_secret"])
        assert r.status_code == 400, body
    assert post(server, a["id"], b"", a["webhook_secret"]).status_code == 202  # empty = {}


def test_oversize_webhook_is_413(server: LiveServer, http: httpx.Client) -> None:
    a = hook(http)
    limit = server.services.settings.uploads.max_payload_bytes
    body = json.dumps({"x": "y" * (limit + 10)}).encode()
    r = post(server, a["id"], body, a["webhook_secret"])
    assert r.status_code == 413


def test_unknown_or_non_webhook_automation_is_404(server: LiveServer, http: httpx.Client) -> None:
    assert post(server, "nope", b"{}", "whsec_x").status_code == 404
    ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
    manual = http.post("/v1/automations", json={"name": "m", "tarball": ref}).json()
    assert post(server, manual["id"], b"{}", "whsec_x").status_code == 404


def test_disabled_webhook_automation_is_409(server: LiveServer, http: httpx.Client) -> None:
    a = hook(http)
    http.patch(f"/v1/automations/{a['id']}", json={"enabled": False})
    assert post(server, a["id"], b"{}", a["webhook_secret"]).status_code == 409


def test_assignment_key_path_makes_webhook_runs_sticky(
    server: LiveServer, http: httpx.Client
) -> None:
    a = hook(http, assignment_key_path="user.id")
    for user in ("u1", "u2", "u3"):
        body = json.dumps({"user": {"id": user}}).encode()
        run = post(server, a["id"], body, a["webhook_secret"]).json()
        assert run["assignment"]["method"] == "sticky"
        assert run["assignment"]["key"] == user
        assert run["assignment"]["bucket"] == gb_hash("hook-exp", user, 2)
    run = post(server, a["id"], b'{"other": 1}', a["webhook_secret"]).json()
    assert run["assignment"]["method"] == "random"  # no key in the payload
