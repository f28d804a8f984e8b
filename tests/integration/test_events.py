"""Event sources: one signed endpoint fanning out to every matching automation (9.4)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from automation_server.dispatch.webhooks import sign
from tests.support import LiveServer, targz


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


GITHUB = {
    "event_type": {"header": "X-GitHub-Event"},
    "signature": {"header": "X-Hub-Signature-256"},
    "delivery_id_header": "X-GitHub-Delivery",
}


def make_source(
    http: httpx.Client, name: str = "github", body: dict[str, Any] | None = None
) -> dict[str, Any]:
    body = GITHUB if body is None else body
    r = http.post("/v1/event-sources", json={"name": name, **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def make_automation(http: httpx.Client, name: str, trigger: dict[str, Any], **extra: Any) -> Any:
    ref = http.post("/v1/uploads", content=targz({"main.py": "print(1)"})).json()["ref"]
    return http.post(
        "/v1/automations",
        json={
            "name": name,
            "trigger": trigger,
            "tarball": ref,
            "concurrency": {"max_running": 5, "on_overlap": "queue"},
            **extra,
        },
    )


def deliver(
    server: LiveServer,
    source: dict[str, Any],
    body: bytes,
    *,
    secret: str | None = None,
    event: str = "pull_request",
    delivery: str | None = None,
) -> httpx.Response:
    headers = {"X-GitHub-Event": event, "Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    if delivery:
        headers["X-GitHub-Delivery"] = delivery
    with server.client() as anonymous:  # no API key: the signature is the credential
        return anonymous.post(source["url"], content=body, headers=headers)


def runs_of(http: httpx.Client, **params: str) -> list[dict[str, Any]]:
    return list(http.get("/v1/runs", params=params).json()["items"])


def test_a_delivery_queues_one_run_per_matching_automation(
    server: LiveServer, http: httpx.Client
) -> None:
    source = make_source(http)
    assert source["url"] == f"/v1/events/{source['id']}" and source["secret"].startswith("evsec_")
    opened = make_automation(
        http,
        "on-opened",
        {
            "type": "event",
            "source": "github",
            "on": ["pull_request"],
            "filter": "action == 'opened'",
        },
    ).json()
    every = make_automation(http, "on-all", {"type": "event", "source": "github", "on": ["*"]})
    pushes = make_automation(http, "on-push", {"type": "event", "source": "github", "on": ["push"]})
    assert every.status_code == 201 and pushes.status_code == 201
    body = json.dumps({"action": "opened", "number": 7}).encode()
    r = deliver(server, source, body, secret=source["secret"], delivery="d-1")
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["event_type"] == "pull_request" and answer["delivery_id"] == "d-1"
    assert answer["matched"] == 2 and len(answer["runs"]) == 2
    runs = runs_of(http, trigger="event")
    assert {run["id"] for run in runs} == set(answer["runs"])
    assert {run["automation_id"] for run in runs} == {opened["id"], every.json()["id"]}
    assert all(run["trigger"] == "event" and run["status"] == "queued" for run in runs)
    with server.services.db.read() as session:
        from automation_server.db.models import Run

        assert session.get(Run, answer["runs"][0]).payload == {"action": "opened", "number": 7}
    # The filter decides: a closed pull request runs only the catch-all automation.
    closed = json.dumps({"action": "closed"}).encode()
    second = deliver(server, source, closed, secret=source["secret"], delivery="d-2").json()
    assert second["matched"] == 1
    assert http.get("/v1/event-sources/" + source["id"]).json()["automations"] == [
        "on-all",
        "on-opened",
        "on-push",
    ]


def test_a_replayed_delivery_gets_the_first_answer_and_queues_nothing(
    server: LiveServer, http: httpx.Client
) -> None:
    source = make_source(http)
    make_automation(http, "a", {"type": "event", "source": "github", "on": ["*"]})
    body = b'{"action": "opened"}'
    first = deliver(server, source, body, secret=source["secret"], delivery="same")
    again = deliver(server, source, body, secret=source["secret"], delivery="same")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert len(runs_of(http, trigger="event")) == 1


def test_bad_deliveries_are_refused_and_queue_nothing(
    server: LiveServer, http: httpx.Client
) -> None:
    source = make_source(http)
    make_automation(http, "a", {"type": "event", "source": "github", "on": ["*"]})
    body = b'{"action": "opened"}'
    missing = deliver(server, source, body)
    assert missing.status_code == 401 and missing.json()["code"] == "invalid_signature"
    wrong = deliver(server, source, body, secret="evsec_wrong")
    assert wrong.status_code == 401
    not_object = deliver(server, source, b"[1, 2]", secret=source["secret"])
    assert not_object.status_code == 400 and not_object.json()["code"] == "invalid_payload"
    garbage = deliver(server, source, b"{nope", secret=source["secret"])
    assert garbage.status_code == 400
    limit = server.services.settings.uploads.max_payload_bytes
    huge = json.dumps({"x": "y" * limit}).encode()
    assert deliver(server, source, huge, secret=source["secret"]).status_code == 413
    with server.client() as anonymous:
        no_type = anonymous.post(
            source["url"],
            content=body,
            headers={"X-Hub-Signature-256": sign(source["secret"], body)},
        )
    assert no_type.status_code == 400 and no_type.json()["code"] == "missing_event_type"
    with server.client() as anonymous:
        assert anonymous.post("/v1/events/nope", content=body).status_code == 404
    assert runs_of(http, trigger="event") == []


def test_event_type_from_a_body_path_and_sticky_assignment(
    server: LiveServer, http: httpx.Client
) -> None:
    source = make_source(http, "tickets", {})  # defaults: {"path": "type"}, X-Signature-256
    assert source["event_type"] == {"path": "type"}
    assert source["signature"] == {"header": "X-Signature-256"}
    ref = http.post("/v1/uploads", content=targz({"main.py": "print(2)"})).json()["ref"]
    created = http.post(
        "/v1/automations",
        json={
            "name": "sticky",
            "trigger": {"type": "event", "source": "tickets", "on": ["ticket.created"]},
            "experiment_id": "sticky-exp",
            "assignment_key_path": "customer.id",
            "variants": [{"name": "a", "tarball": ref}, {"name": "b", "tarball": ref}],
            "concurrency": {"max_running": 50, "on_overlap": "queue"},
        },
    )
    assert created.status_code == 201, created.text
    variants = set()
    for i in range(5):
        body = json.dumps({"type": "ticket.created", "n": i, "customer": {"id": "c-9"}}).encode()
        with server.client() as anonymous:
            r = anonymous.post(
                source["url"],
                content=body,
                headers={"X-Signature-256": sign(source["secret"], body)},
            )
        assert r.status_code == 202 and r.json()["matched"] == 1, r.text
        run = http.get(f"/v1/runs/{r.json()['runs'][0]}").json()
        variants.add(run["variant"])
        assert run["assignment"]["method"] == "sticky"
    assert len(variants) == 1


def test_disabled_and_deleted_automations_are_not_run(
    server: LiveServer, http: httpx.Client
) -> None:
    source = make_source(http)
    off = make_automation(
        http, "off", {"type": "event", "source": "github", "on": ["*"]}, enabled=False
    )
    gone = make_automation(http, "gone", {"type": "event", "source": "github", "on": ["*"]})
    assert off.status_code == 201
    assert http.delete(f"/v1/automations/{gone.json()['id']}").status_code == 204
    answer = deliver(server, source, b"{}", secret=source["secret"]).json()
    assert answer["matched"] == 0 and answer["runs"] == []


def test_a_crash_in_the_middle_of_a_fan_out_queues_nothing(
    server: LiveServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_source(http)
    for i in range(6):
        make_automation(http, f"fan-{i}", {"type": "event", "source": "github", "on": ["*"]})
    dispatcher = server.services.dispatcher
    real = dispatcher.enqueue
    calls = {"n": 0}

    def crash_on_the_fourth(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash mid fan-out")
        return real(*args, **kwargs)

    monkeypatch.setattr(dispatcher, "enqueue", crash_on_the_fourth)
    failed = deliver(server, source, b"{}", secret=source["secret"], delivery="crash")
    assert failed.status_code == 500
    assert runs_of(http, trigger="event") == []
    monkeypatch.setattr(dispatcher, "enqueue", real)
    # The sender retries the same delivery: now all six are queued, once.
    retried = deliver(server, source, b"{}", secret=source["secret"], delivery="crash")
    assert retried.status_code == 202 and retried.json()["matched"] == 6
    assert len(runs_of(http, trigger="event")) == 6


def test_event_source_validation(server: LiveServer, http: httpx.Client) -> None:
    make_source(http)
    dup = http.post("/v1/event-sources", json={"name": "github"})
    assert dup.status_code == 409 and dup.json()["code"] == "duplicate_name"
    both = http.post(
        "/v1/event-sources",
        json={"name": "both", "event_type": {"header": "X-Event", "path": "type"}},
    )
    assert both.status_code == 422 and both.json()["code"] == "invalid_event_type"
    neither = http.post("/v1/event-sources", json={"name": "neither", "event_type": {}})
    assert neither.status_code == 422
    bad_path = http.post("/v1/event-sources", json={"name": "bad", "event_type": {"path": "a[?"}})
    assert bad_path.status_code == 422
    assert http.post("/v1/event-sources", json={"name": "x", "extra": 1}).status_code == 400
    listed = http.get("/v1/event-sources").json()["items"]
    assert [s["name"] for s in listed] == ["github"] and "secret" not in listed[0]


def test_event_trigger_validation(server: LiveServer, http: httpx.Client) -> None:
    make_source(http)
    unknown = make_automation(http, "u", {"type": "event", "source": "nope", "on": ["*"]})
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_event_source"
    bad_filter = make_automation(
        http, "f", {"type": "event", "source": "github", "on": ["*"], "filter": "action =="}
    )
    assert bad_filter.status_code == 422 and bad_filter.json()["code"] == "invalid_filter"
    no_source = make_automation(http, "n", {"type": "event", "on": ["*"]})
    assert no_source.status_code == 422
    misplaced = make_automation(http, "m", {"type": "manual", "source": "github"})
    assert misplaced.status_code == 422 and misplaced.json()["code"] == "invalid_trigger"
    star_and_more = make_automation(
        http, "s", {"type": "event", "source": "github", "on": ["*", "push"]}
    )
    assert star_and_more.status_code == 422
    assert http.get("/v1/automations").json()["items"] == []
    # Another organization's source is unknown here.
    other = server.client(server.new_key("other"))
    assert make_automation(other, "o", {"type": "event", "source": "github"}).status_code == 422


def test_rename_rotate_and_delete_a_source(server: LiveServer, http: httpx.Client) -> None:
    source = make_source(http)
    a = make_automation(http, "a", {"type": "event", "source": "github", "on": ["*"]}).json()
    renamed = http.patch(f"/v1/event-sources/{source['id']}", json={"name": "gh"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "gh"
    assert http.get(f"/v1/automations/{a['id']}").json()["trigger"]["source"] == "gh"
    rotated = http.post(f"/v1/event-sources/{source['id']}/secret").json()
    assert rotated["secret"] != source["secret"]
    assert deliver(server, source, b"{}", secret=source["secret"]).status_code == 401
    assert deliver(server, source, b"{}", secret=rotated["secret"]).status_code == 202
    in_use = http.delete(f"/v1/event-sources/{source['id']}")
    assert in_use.status_code == 409 and in_use.json()["code"] == "event_source_in_use"
    assert (
        http.patch(f"/v1/automations/{a['id']}", json={"trigger": {"type": "manual"}}).status_code
        == 200
    )
    assert http.delete(f"/v1/event-sources/{source['id']}").status_code == 204
    assert http.get(f"/v1/event-sources/{source['id']}").status_code == 404
    other = server.client(server.new_key("other"))
    assert other.get(f"/v1/event-sources/{rotated['id']}").status_code == 404
