"""Automations API: create, read, list, update, delete, revisions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.support import LiveServer, targz


@pytest.fixture
def acme(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


def upload(http: httpx.Client, text: str = "print('hi')\n") -> str:
    r = http.post("/v1/uploads", content=targz({"main.py": text}))
    assert r.status_code == 201, r.text
    return str(r.json()["ref"])


def ab_body(http: httpx.Client, **extra: Any) -> dict[str, Any]:
    return {
        "name": "nightly-triage",
        "trigger": {"type": "cron", "schedule": "0 9 * * 1-5", "timezone": "Europe/Berlin"},
        "experiment_id": "triage-prompt-2026-11",
        "variants": [
            {"name": "control", "weight": 50, "tarball": upload(http, "print('a')")},
            {
                "name": "terse-prompt",
                "weight": 50,
                "tarball": upload(http, "print('b')"),
                "entrypoint": ["python3", "run.py"],
                "env": {"STYLE": "terse"},
            },
        ],
        "env": {"LOG_LEVEL": "info"},
        "secrets": {"API_TOKEN": "s3cr3t-value"},
        **extra,
    }


def test_create_returns_the_automation_with_defaults(acme: httpx.Client) -> None:
    r = acme.post("/v1/automations", json=ab_body(acme))
    assert r.status_code == 201, r.text
    a = r.json()
    assert a["name"] == "nightly-triage" and a["revision"] == 1 and a["enabled"] is True
    assert [v["name"] for v in a["variants"]] == ["control", "terse-prompt"]
    assert a["variants"][0]["entrypoint"] == ["python3", "main.py"]
    assert a["variants"][1]["env"] == {"STYLE": "terse"}
    assert a["variants"][0]["tarball"].startswith("blob:sha256:")
    assert a["variants"][0]["digest"] == a["variants"][0]["tarball"].removeprefix("blob:")
    assert a["secrets"] == ["API_TOKEN"]
    assert "s3cr3t-value" not in r.text
    assert a["network"] == "none" and a["timeout_s"] == 600
    assert a["concurrency"] == {"max_running": 1, "on_overlap": "skip"}
    assert a["retry"] == {"max_attempts": 1, "backoff_s": 30}
    assert a["misfire"] == {"policy": "run_once", "grace_s": 60, "max_catchup": 10}
    assert a["limits"]["memory_mb"] == 512
    assert a["last_run"] is None and a["champion"] is None
    # Weekdays at 09:00 Berlin: the next fire is on a weekday, at 08:00 UTC in winter.
    nxt = datetime.fromisoformat(a["next_run_at"].replace("Z", "+00:00"))
    assert nxt > datetime.now(UTC) and nxt.weekday() < 5 and (nxt.hour, nxt.minute) == (8, 0)
    assert acme.get(f"/v1/automations/{a['id']}").json() == a


def test_secrets_are_encrypted_at_rest(server: LiveServer, acme: httpx.Client) -> None:
    import sqlalchemy as sa

    acme.post("/v1/automations", json=ab_body(acme))
    with server.services.db.read() as session:
        stored = session.execute(sa.text("SELECT ciphertext FROM automation_secrets")).scalar_one()
    assert "s3cr3t-value" not in stored


def test_tarball_shorthand_makes_one_default_variant(acme: httpx.Client) -> None:
    r = acme.post(
        "/v1/automations",
        json={"name": "one", "tarball": upload(acme), "entrypoint": ["python3", "job.py"]},
    )
    assert r.status_code == 201, r.text
    (v,) = r.json()["variants"]
    assert (v["name"], v["weight"], v["entrypoint"]) == ("default", 1, ["python3", "job.py"])
    assert r.json()["next_run_at"] is None  # manual trigger


def test_interval_trigger_has_next_run(acme: httpx.Client) -> None:
    r = acme.post(
        "/v1/automations",
        json={
            "name": "tick",
            "tarball": upload(acme),
            "trigger": {"type": "interval", "seconds": 30},
        },
    )
    a = r.json()
    created = datetime.fromisoformat(a["created_at"].replace("Z", "+00:00"))
    nxt = datetime.fromisoformat(a["next_run_at"].replace("Z", "+00:00"))
    assert 29 <= (nxt - created).total_seconds() <= 31


def test_disabled_automation_has_no_next_run(acme: httpx.Client) -> None:
    r = acme.post(
        "/v1/automations",
        json={
            "name": "off",
            "tarball": upload(acme),
            "enabled": False,
            "trigger": {"type": "interval", "seconds": 5},
        },
    )
    assert r.json()["next_run_at"] is None


def test_webhook_secret_is_shown_once_and_rotates(acme: httpx.Client) -> None:
    r = acme.post(
        "/v1/automations",
        json={"name": "hook", "tarball": upload(acme), "trigger": {"type": "webhook"}},
    )
    a = r.json()
    assert a["webhook_secret"].startswith("whsec_")
    assert "webhook_secret" not in acme.get(f"/v1/automations/{a['id']}").json()
    rotated = acme.post(f"/v1/automations/{a['id']}/webhook-secret").json()
    assert rotated["webhook_secret"].startswith("whsec_")
    assert rotated["webhook_secret"] != a["webhook_secret"]


def test_duplicate_name_is_409(acme: httpx.Client) -> None:
    body = {"name": "dup", "tarball": upload(acme)}
    assert acme.post("/v1/automations", json=body).status_code == 201
    r = acme.post("/v1/automations", json=body)
    assert r.status_code == 409 and r.json()["code"] == "duplicate_name"


def test_same_name_in_another_org_is_fine(server: LiveServer, acme: httpx.Client) -> None:
    assert (
        acme.post("/v1/automations", json={"name": "x", "tarball": upload(acme)}).status_code == 201
    )
    other = server.client(server.new_key("globex"))
    assert (
        other.post("/v1/automations", json={"name": "x", "tarball": upload(other)}).status_code
        == 201
    )


def test_list_paginates_newest_first_and_filters_by_name(acme: httpx.Client) -> None:
    ref = upload(acme)
    ids = [
        acme.post("/v1/automations", json={"name": f"a{i}", "tarball": ref}).json()["id"]
        for i in range(5)
    ]
    page1 = acme.get("/v1/automations", params={"limit": 2}).json()
    page2 = acme.get("/v1/automations", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    page3 = acme.get("/v1/automations", params={"limit": 2, "cursor": page2["next_cursor"]}).json()
    seen = [a["id"] for p in (page1, page2, page3) for a in p["items"]]
    assert seen == list(reversed(ids))
    assert page3["next_cursor"] is None
    named = acme.get("/v1/automations", params={"name": "a3"}).json()["items"]
    assert [a["id"] for a in named] == [ids[3]]


def test_patch_weights_makes_a_new_revision(acme: httpx.Client) -> None:
    a = acme.post("/v1/automations", json=ab_body(acme)).json()
    r = acme.patch(f"/v1/automations/{a['id']}", json={"weights": {"control": 90}})
    assert r.status_code == 200, r.text
    assert r.json()["revision"] == 2
    assert [v["weight"] for v in r.json()["variants"]] == [90, 50]
    revisions = acme.get(f"/v1/automations/{a['id']}/revisions").json()["items"]
    assert [(x["revision"], x["weights"]) for x in revisions] == [
        (2, {"control": 90, "terse-prompt": 50}),
        (1, {"control": 50, "terse-prompt": 50}),
    ]


def test_patch_without_variant_change_keeps_revision(acme: httpx.Client) -> None:
    a = acme.post("/v1/automations", json=ab_body(acme)).json()
    r = acme.patch(f"/v1/automations/{a['id']}", json={"timeout_s": 30, "enabled": False})
    assert r.json()["revision"] == 1 and r.json()["timeout_s"] == 30
    assert r.json()["next_run_at"] is None
    again = acme.patch(f"/v1/automations/{a['id']}", json={"weights": {"control": 50}})
    assert again.json()["revision"] == 1  # same weights: nothing changed


def test_patch_variants_replaces_the_list(acme: httpx.Client) -> None:
    a = acme.post("/v1/automations", json=ab_body(acme)).json()
    r = acme.patch(
        f"/v1/automations/{a['id']}",
        json={"experiment_id": None, "variants": [{"name": "control", "weight": 1}]},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert [v["name"] for v in out["variants"]] == ["control"]
    assert out["variants"][0]["digest"] == a["variants"][0]["digest"]
    assert out["experiment_id"] is None and out["revision"] == 2


def test_patch_experiment_makes_a_revision(acme: httpx.Client) -> None:
    a = acme.post("/v1/automations", json=ab_body(acme)).json()
    r = acme.patch(f"/v1/automations/{a['id']}", json={"experiment_id": "next-round"})
    assert r.json()["revision"] == 2
    assert (
        acme.get(f"/v1/automations/{a['id']}/revisions").json()["items"][0]["experiment_id"]
        == "next-round"
    )


def test_patch_secrets_sets_and_deletes_names(acme: httpx.Client) -> None:
    a = acme.post("/v1/automations", json=ab_body(acme)).json()
    r = acme.patch(
        f"/v1/automations/{a['id']}", json={"secrets": {"API_TOKEN": None, "OTHER": "x"}}
    )
    assert r.json()["secrets"] == ["OTHER"]


def test_delete_hides_the_automation(acme: httpx.Client) -> None:
    a = acme.post("/v1/automations", json=ab_body(acme)).json()
    assert acme.delete(f"/v1/automations/{a['id']}").status_code == 204
    assert acme.get(f"/v1/automations/{a['id']}").status_code == 404
    assert acme.delete(f"/v1/automations/{a['id']}").status_code == 404
    # The name is free again.
    assert acme.post("/v1/automations", json=ab_body(acme)).status_code == 201


def test_other_organizations_get_404_everywhere(server: LiveServer, acme: httpx.Client) -> None:
    a = acme.post("/v1/automations", json=ab_body(acme)).json()
    with server.client(server.new_key("globex")) as globex:
        path = f"/v1/automations/{a['id']}"
        assert globex.get(path).status_code == 404
        assert globex.patch(path, json={"enabled": False}).status_code == 404
        assert globex.delete(path).status_code == 404
        assert globex.get(f"{path}/revisions").status_code == 404
        assert globex.post(f"{path}/webhook-secret").status_code == 404
        assert globex.get("/v1/automations").json()["items"] == []
        assert "nightly-triage" not in globex.get(path).text
    assert acme.get(f"/v1/automations/{a['id']}").status_code == 200
