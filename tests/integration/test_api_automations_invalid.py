"""Every bad automation input gets the DESIGN error shape with the right status."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import LiveServer, targz

ZERO_REF = "blob:sha256:" + "0" * 64


@pytest.fixture
def ctx(server: LiveServer) -> tuple[httpx.Client, str]:
    http = server.client(server.new_key("acme"))
    ref = http.post("/v1/uploads", content=targz({"main.py": "print(1)"})).json()["ref"]
    return http, ref


def two(ref: str, w1: Any = 1, w2: Any = 1, **extra: Any) -> dict[str, Any]:
    return {
        "name": "ab",
        "variants": [
            {"name": "a", "weight": w1, "tarball": ref},
            {"name": "b", "weight": w2, "tarball": ref},
        ],
        **extra,
    }


# (label, body builder, status, code or None, field or None)
CASES: list[tuple[str, Any, int, str | None, str | None]] = [
    (
        "unknown field",
        lambda r: {"name": "x", "tarball": r, "colour": 1},
        400,
        "invalid_request",
        "colour",
    ),
    ("missing name", lambda r: {"tarball": r}, 400, "invalid_request", "name"),
    ("empty name", lambda r: {"name": "", "tarball": r}, 400, "invalid_request", "name"),
    ("name wrong type", lambda r: {"name": 5, "tarball": r}, 400, "invalid_request", "name"),
    (
        "unknown trigger type",
        lambda r: {"name": "x", "tarball": r, "trigger": {"type": "hourly"}},
        400,
        "invalid_request",
        "trigger.type",
    ),
    (
        "bad crontab",
        lambda r: {
            "name": "x",
            "tarball": r,
            "trigger": {"type": "cron", "schedule": "61 * * * *"},
        },
        422,
        "invalid_cron",
        "trigger.schedule",
    ),
    (
        "cron without schedule",
        lambda r: {"name": "x", "tarball": r, "trigger": {"type": "cron"}},
        422,
        "invalid_cron",
        "trigger.schedule",
    ),
    (
        "unknown timezone",
        lambda r: {
            "name": "x",
            "tarball": r,
            "trigger": {"type": "cron", "schedule": "0 9 * * *", "timezone": "Mars/Olympus"},
        },
        422,
        "invalid_timezone",
        "trigger.timezone",
    ),
    (
        "interval zero",
        lambda r: {"name": "x", "tarball": r, "trigger": {"type": "interval", "seconds": 0}},
        422,
        "invalid_interval",
        "trigger.seconds",
    ),
    (
        "interval missing",
        lambda r: {"name": "x", "tarball": r, "trigger": {"type": "interval"}},
        422,
        "invalid_interval",
        "trigger.seconds",
    ),
    (
        "duplicate variant names",
        lambda r: {
            "name": "x",
            "experiment_id": "e",
            "variants": [{"name": "a", "tarball": r}, {"name": "a", "tarball": r}],
        },
        422,
        "duplicate_variant",
        "variants[1].name",
    ),
    (
        "variant name with capitals",
        lambda r: {"name": "x", "variants": [{"name": "Control", "tarball": r}]},
        400,
        "invalid_request",
        "variants[0].name",
    ),
    (
        "negative weight",
        lambda r: two(r, -1, 1, experiment_id="e"),
        400,
        "invalid_request",
        "variants[0].weight",
    ),
    (
        "fractional weight",
        lambda r: two(r, 1.5, 1, experiment_id="e"),
        400,
        "invalid_request",
        "variants[0].weight",
    ),
    (
        "weight over 10000",
        lambda r: two(r, 10001, 1, experiment_id="e"),
        400,
        "invalid_request",
        "variants[0].weight",
    ),
    (
        "all weights zero",
        lambda r: two(r, 0, 0, experiment_id="e"),
        422,
        "no_weighted_variant",
        "variants",
    ),
    (
        "two weighted variants without experiment",
        lambda r: two(r),
        422,
        "experiment_required",
        "experiment_id",
    ),
    (
        "bad experiment id",
        lambda r: two(r, experiment_id="-bad id"),
        422,
        "invalid_experiment_id",
        "experiment_id",
    ),
    ("unknown blob", lambda r: {"name": "x", "tarball": ZERO_REF}, 422, "unknown_blob", "tarball"),
    (
        "file scheme",
        lambda r: {"name": "x", "tarball": "file:///etc/passwd"},
        422,
        "unsupported_tarball",
        "tarball",
    ),
    (
        "http scheme",
        lambda r: {"name": "x", "tarball": "http://example.com/a.tar.gz"},
        422,
        "unsupported_tarball",
        "tarball",
    ),
    (
        "absolute entrypoint",
        lambda r: {"name": "x", "tarball": r, "entrypoint": ["/bin/sh"]},
        422,
        "invalid_entrypoint",
        "entrypoint[0]",
    ),
    (
        "dotdot entrypoint",
        lambda r: {
            "name": "x",
            "variants": [{"name": "a", "tarball": r, "entrypoint": ["../../bin/sh"]}],
        },
        422,
        "invalid_entrypoint",
        "variants[0].entrypoint[0]",
    ),
    (
        "empty entrypoint",
        lambda r: {"name": "x", "tarball": r, "entrypoint": []},
        400,
        "invalid_request",
        "entrypoint",
    ),
    (
        "reserved env",
        lambda r: {"name": "x", "tarball": r, "env": {"AUTOMATION_RUN_ID": "1"}},
        422,
        "reserved_env",
        "env.AUTOMATION_RUN_ID",
    ),
    (
        "reserved variant env",
        lambda r: {
            "name": "x",
            "variants": [{"name": "a", "tarball": r, "env": {"automation_x": "1"}}],
        },
        422,
        "reserved_env",
        "variants[0].env.automation_x",
    ),
    (
        "reserved secret name",
        lambda r: {"name": "x", "tarball": r, "secrets": {"AUTOMATION_KEY": "1"}},
        422,
        "reserved_env",
        "secrets.AUTOMATION_KEY",
    ),
    (
        "host network",
        lambda r: {"name": "x", "tarball": r, "network": "host"},
        422,
        "host_network_not_allowed",
        "network",
    ),
    (
        "unknown network",
        lambda r: {"name": "x", "tarball": r, "network": "wide"},
        400,
        "invalid_request",
        "network",
    ),
    (
        "both tarball and variants",
        lambda r: {"name": "x", "tarball": r, "variants": [{"name": "a", "tarball": r}]},
        422,
        "invalid_variants",
        "tarball",
    ),
    ("no tarball at all", lambda r: {"name": "x"}, 422, "missing_variants", "variants"),
    (
        "too many variants",
        lambda r: {
            "name": "x",
            "experiment_id": "e",
            "variants": [{"name": f"v{i}", "tarball": r} for i in range(21)],
        },
        400,
        "invalid_request",
        "variants",
    ),
    (
        "limit over server maximum",
        lambda r: {"name": "x", "tarball": r, "limits": {"memory_mb": 10_000_000}},
        422,
        "limit_too_high",
        "limits.memory_mb",
    ),
    (
        "retry attempts over 10",
        lambda r: {"name": "x", "tarball": r, "retry": {"max_attempts": 11}},
        400,
        "invalid_request",
        "retry.max_attempts",
    ),
    (
        "bad jmespath",
        lambda r: {"name": "x", "tarball": r, "assignment_key_path": "a.[b"},
        422,
        "invalid_assignment_key_path",
        "assignment_key_path",
    ),
    ("body is an array", lambda r: [], 400, "invalid_request", None),
]


@pytest.mark.parametrize(
    ("label", "build", "status", "code", "field"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_create_input(
    ctx: tuple[httpx.Client, str],
    label: str,
    build: Any,
    status: int,
    code: str | None,
    field: str | None,
) -> None:
    http, ref = ctx
    r = http.post("/v1/automations", json=build(ref))
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"status_code", "code", "detail", "field"}
    assert body["status_code"] == status
    assert body["code"] == code
    if field is not None:
        assert body["field"] == field
    assert body["detail"]


def test_malformed_json_is_400(ctx: tuple[httpx.Client, str]) -> None:
    http, _ = ctx
    r = http.post(
        "/v1/automations", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["code"] == "malformed_json"


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 501}, {"limit": "abc"}, {"cursor": "garbage!"}, {"cursor": "WzEsMl0"}],
)
def test_bad_list_parameters_are_400(ctx: tuple[httpx.Client, str], params: dict[str, Any]) -> None:
    http, _ = ctx
    r = http.get("/v1/automations", params=params)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"status_code", "code", "detail", "field"}


def test_bad_patch_inputs(ctx: tuple[httpx.Client, str]) -> None:
    http, ref = ctx
    a = http.post("/v1/automations", json=two(ref, experiment_id="e")).json()
    path = f"/v1/automations/{a['id']}"
    r = http.patch(path, json={"weights": {"nope": 1}})
    assert (r.status_code, r.json()["code"]) == (422, "unknown_variant")
    r = http.patch(path, json={"weights": {"a": 0, "b": 0}})
    assert (r.status_code, r.json()["code"]) == (422, "no_weighted_variant")
    r = http.patch(path, json={"experiment_id": None})
    assert (r.status_code, r.json()["code"]) == (422, "experiment_required")
    r = http.patch(path, json={"variants": [{"name": "new", "weight": 1}]})
    assert (r.status_code, r.json()["code"]) == (422, "missing_tarball")
    r = http.patch(path, json={"surprise": True})
    assert r.status_code == 400
    r = http.patch(path, json={"network": "host"})
    assert (r.status_code, r.json()["code"]) == (422, "host_network_not_allowed")
    assert http.get(path).json()["revision"] == 1  # nothing changed
