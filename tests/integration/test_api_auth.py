"""Health, readiness, API keys and scopes through the real HTTP server."""

from __future__ import annotations

from tests.support import LiveServer, targz


def test_health_and_ready_need_no_key(server: LiveServer) -> None:
    with server.client() as http:
        assert http.get("/health").json() == {"status": "ok"}
        ready = http.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "object_store": "ok"}


def test_missing_key_is_401_in_the_error_shape(server: LiveServer) -> None:
    with server.client() as http:
        r = http.get("/v1/automations")
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"
    assert set(r.json()) == {"status_code", "code", "detail", "field"}


def test_wrong_and_malformed_keys_are_401(server: LiveServer) -> None:
    key = server.new_key()
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    for bad in (tampered, "ak_nosuchpr_secret", "not-a-key", "ak__x"):
        with server.client(bad) as http:
            assert http.get("/v1/automations").status_code == 401, bad
    with server.client() as http:
        r = http.get("/v1/automations", headers={"Authorization": f"Basic {key}"})
        assert r.status_code == 401


def test_key_has_the_documented_shape(server: LiveServer) -> None:
    key = server.new_key()
    prefix, secret = key.split("_", 2)[1:]
    assert key.startswith("ak_") and len(prefix) == 8 and len(secret) >= 32


def test_keys_are_stored_hashed(server: LiveServer) -> None:
    import sqlalchemy as sa

    key = server.new_key()
    with server.services.db.read() as session:
        rows = session.execute(sa.text("SELECT prefix, secret_hash FROM api_keys")).all()
    secret = key.split("_", 2)[2]
    assert all(secret not in row.secret_hash and key not in row.secret_hash for row in rows)


def test_read_scope_cannot_write(server: LiveServer) -> None:
    read_key = server.new_key(scope="read")
    with server.client(read_key) as http:
        assert http.get("/v1/automations").status_code == 200
        r = http.post("/v1/uploads", content=targz({"main.py": "print(1)"}))
        assert r.status_code == 403
        assert r.json()["code"] == "forbidden"
        r = http.post("/v1/automations", json={"name": "x", "tarball": "blob:sha256:" + "0" * 64})
        assert r.status_code == 403


def test_write_scope_can_write(server: LiveServer) -> None:
    with server.client(server.new_key(scope="write")) as http:
        assert http.post("/v1/uploads", content=targz({"main.py": "print(1)"})).status_code == 201


def test_unknown_route_is_404_in_the_error_shape(server: LiveServer) -> None:
    with server.client(server.new_key()) as http:
        r = http.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    assert set(r.json()) == {"status_code", "code", "detail", "field"}


def test_openapi_schema_is_served(server: LiveServer) -> None:
    with server.client() as http:
        spec = http.get("/schema/openapi.json").json()
    assert "/v1/automations" in spec["paths"]
    assert "/v1/uploads" in spec["paths"]
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["status_code", "code", "detail", "field"]
    create = spec["paths"]["/v1/automations"]["post"]
    for status in ("400", "401", "403", "409", "422", "429"):
        ref = create["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/Error"
    assert spec["components"]["schemas"]["AutomationCreate"]["additionalProperties"] is False
    upload = spec["paths"]["/v1/uploads"]["post"]["requestBody"]["content"]
    assert upload["application/octet-stream"]["schema"]["format"] == "binary"
