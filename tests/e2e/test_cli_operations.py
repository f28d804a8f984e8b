"""``automation events``, ``notify`` and ``state`` against a real server (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from automation_sdk.cli import main
from click.testing import CliRunner, Result

from tests.e2e.sdk_server import Served, serve
from tests.support import PG_ADMIN_URL, PostgresDatabases, skip_or_fail

# A public address given literally: channel URLs are checked without DNS.
PUBLIC_URL = "https://1.1.1.1/automation-hook"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """``automation-server serve`` as the fixtures of test_cli_commands run it (private
    notification URLs refused: AUTOMATION_NOTIFY_ALLOW_PRIVATE is not set)."""
    env: dict[str, str] = {}
    if request.param == "postgres":
        databases: PostgresDatabases | None = request.getfixturevalue("postgres_databases")
        if databases is None:
            skip_or_fail(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
        assert databases is not None
        env["AUTOMATION_DATABASE_URL"] = databases.fresh()
    with serve(tmp_path_factory.mktemp(f"cli-ops-{request.param}"), **env) as s:
        yield s


@pytest.fixture(scope="module")
def key(served: Served) -> str:
    return served.new_key("acme")


def _invoker(served: Served, key: str) -> Any:
    runner = CliRunner()
    env = {"AUTOMATION_URL": served.base_url, "AUTOMATION_API_KEY": key, "COLUMNS": "200"}

    def invoke(*args: str, **kwargs: Any) -> Result:
        return runner.invoke(main, list(args), env=env, catch_exceptions=False, **kwargs)

    return invoke


@pytest.fixture
def cli(served: Served, key: str) -> Any:
    return _invoker(served, key)


@pytest.fixture
def http(served: Served, key: str) -> Iterator[httpx.Client]:
    """The API itself, to compare the CLI's --json with."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=served.base_url, headers=headers, timeout=30) as client:
        yield client


def _name(prefix: str = "ops") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _deploy(cli: Any, root: Path, body: str, *extra: str) -> str:
    src = root / "code"
    src.mkdir(exist_ok=True)
    (src / "main.py").write_text(body)
    name = _name("auto")
    result = cli("deploy", name, str(src), *extra)
    assert result.exit_code == 0, result.output
    return name


def _sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# ---- event sources -----------------------------------------------------------------


def test_event_source_create_list_show_rotate_delete(cli: Any, http: httpx.Client) -> None:
    name = _name("github")
    created = cli("events", "create", name, "--header", "X-GitHub-Event",
                  "--signature-header", "X-Hub-Signature-256",
                  "--delivery-id-header", "X-GitHub-Delivery")  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "shown once, store it now" in created.stdout
    secret = next(w for w in created.stdout.split() if w.startswith("evsec_"))
    source = http.get("/v1/event-sources").json()["items"]
    source_id = next(s["id"] for s in source if s["name"] == name)
    assert f"/v1/events/{source_id}" in created.stdout
    assert "header X-GitHub-Event" in created.stdout

    # The secret is never shown again: not in the table, the JSON list or show.
    table = cli("events", "list")
    assert table.exit_code == 0 and name in table.stdout and secret not in table.stdout
    listed = _json(cli("events", "list", "--json"))
    assert listed == http.get("/v1/event-sources").json()
    assert all("secret" not in s for s in listed["items"])
    shown = _json(cli("events", "show", name, "--json"))
    assert shown == http.get(f"/v1/event-sources/{source_id}").json()
    assert "secret" not in shown and shown["delivery_id_header"] == "X-GitHub-Delivery"
    by_id = cli("events", "show", source_id)
    assert by_id.exit_code == 0 and name in by_id.stdout and secret not in by_id.stdout

    rotated = _json(cli("events", "rotate-secret", name, "--json"))
    assert rotated["secret"].startswith("evsec_") and rotated["secret"] != secret
    again = cli("events", "rotate-secret", source_id)
    assert again.exit_code == 0 and "no longer verifies" in again.stdout
    assert rotated["secret"] not in again.stdout

    renamed = _json(cli("events", "update", name, "--name", f"{name}-2", "--path", "kind",
                        "--json"))  # fmt: skip
    assert renamed["name"] == f"{name}-2" and renamed["event_type"] == {"path": "kind"}
    assert renamed["signature"] == {"header": "X-Hub-Signature-256"}  # untouched

    gone = _json(cli("events", "delete", f"{name}-2", "--json"))
    assert gone == {"deleted": "event_source", "id": source_id, "name": f"{name}-2"}
    assert http.get(f"/v1/event-sources/{source_id}").status_code == 404
    missing = cli("events", "show", name)
    assert missing.exit_code == 1 and "automation events list" in missing.stderr


def test_event_source_duplicate_name_is_a_clear_error(cli: Any) -> None:
    name = _name("dup")
    assert cli("events", "create", name).exit_code == 0
    again = cli("events", "create", name)
    assert again.exit_code == 1
    assert "already exists" in again.stderr and "409 duplicate_name" in again.stderr
    as_json = cli("events", "create", name, "--json")
    assert as_json.exit_code == 1
    body = json.loads(as_json.stdout)
    assert body["status_code"] == 409 and body["field"] == "name"


def test_event_source_bad_input(cli: Any) -> None:
    both = cli("events", "create", _name(), "--header", "X-A", "--path", "type")
    assert both.exit_code == 2 and "--header and --path" in both.stderr
    bad_path = cli("events", "create", _name(), "--path", "a[")
    assert bad_path.exit_code == 1 and "event_type.path" in bad_path.stderr
    assert "422" in bad_path.stderr
    name = _name()
    assert cli("events", "create", name).exit_code == 0
    nothing = cli("events", "update", name)
    assert nothing.exit_code == 2 and "nothing to change" in nothing.stderr


def test_deploy_with_an_event_trigger_runs_on_a_signed_delivery(
    cli: Any, http: httpx.Client, tmp_path: Path
) -> None:
    source = _json(cli("events", "create", _name("hub"), "--json"))
    name = _deploy(cli, tmp_path, "print('event!')\n", "--event", source["name"],
                   "--on", "push", "--filter", "ref == 'main'")  # fmt: skip
    auto = http.get("/v1/automations", params={"name": name}).json()["items"][0]
    assert auto["trigger"] == {
        "type": "event",
        "source": source["name"],
        "on": ["push"],
        "filter": "ref == 'main'",
    }
    body = json.dumps({"type": "push", "ref": "main"}).encode()
    answer = httpx.post(
        http.base_url.join(source["url"]),
        content=body,
        headers={"X-Signature-256": _sign(source["secret"], body), "X-Delivery-Id": "d-1"},
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["matched"] == 1
    ran = _json(cli("runs", "--automation", name, "--trigger", "event", "--json"))["items"]
    assert [r["id"] for r in ran] == answer.json()["runs"]
    shown = cli("events", "show", source["name"])
    assert name in shown.stdout  # the automations that use it

    in_use = cli("events", "delete", source["name"])
    assert in_use.exit_code == 1 and "used by" in in_use.stderr and name in in_use.stderr
    # Without --filter the redeploy drops it (the trigger is given whole).
    _json(cli("deploy", name, str(tmp_path / "code"), "--event", source["name"], "--json"))
    auto = http.get(f"/v1/automations/{auto['id']}").json()
    assert auto["trigger"] == {"type": "event", "source": source["name"], "on": ["*"]}

    unknown = cli("deploy", _name(), str(tmp_path / "code"), "--event", "no-such-source")
    assert unknown.exit_code == 1 and "422" in unknown.stderr
    assert cli("deploy", name, str(tmp_path / "code"), "--on", "push").exit_code == 2
    both = cli("deploy", name, str(tmp_path / "code"), "--event", "x", "--cron", "* * * * *")
    assert both.exit_code == 2 and "choose one trigger" in both.stderr


# ---- notification channels -----------------------------------------------------------


def test_channel_with_a_non_http_url_is_refused(cli: Any) -> None:
    result = cli("notify", "create", _name(), "ftp://example.org/x", "--event",
                 "run.failed")  # fmt: skip
    assert result.exit_code == 1
    assert "422 invalid_url" in result.stderr and "http:// and https://" in result.stderr
    as_json = cli("notify", "create", _name(), "ftp://example.org/x", "--event",
                  "run.failed", "--json")  # fmt: skip
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["field"] == "url"


def test_channel_to_a_private_address_is_refused_unless_the_operator_allows_it(cli: Any) -> None:
    # The fixture's server leaves AUTOMATION_NOTIFY_ALLOW_PRIVATE unset (false).
    result = cli("notify", "create", _name(), "http://127.0.0.1:9/hook", "--event",
                 "run.failed")  # fmt: skip
    assert result.exit_code == 1
    assert "loopback" in result.stderr and "AUTOMATION_NOTIFY_ALLOW_PRIVATE" in result.stderr


def test_channel_create_list_show_deliveries_delete(
    cli: Any, http: httpx.Client, tmp_path: Path
) -> None:
    automation = _deploy(cli, tmp_path, "pass\n")
    automation_id = http.get("/v1/automations", params={"name": automation}).json()["items"][0]
    name = _name("chan")
    created = cli("notify", "create", name, PUBLIC_URL, "--event", "run.failed",
                  "--event", "automation.disabled", "--automation", automation)  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "shown once, store it now" in created.stdout and "nosec_" in created.stdout
    assert automation in created.stdout

    listed = _json(cli("notify", "list", "--json"))
    assert listed == http.get("/v1/notification-channels").json()
    channel = next(c for c in listed["items"] if c["name"] == name)
    assert "secret" not in channel and channel["automation_ids"] == [automation_id["id"]]
    assert channel["events"] == ["run.failed", "automation.disabled"]
    shown = _json(cli("notify", "show", name, "--json"))
    assert shown == http.get(f"/v1/notification-channels/{channel['id']}").json()
    table = cli("notify", "show", channel["id"])
    assert table.exit_code == 0 and automation in table.stdout and PUBLIC_URL in table.stdout

    empty = cli("notify", "deliveries", name)
    assert empty.exit_code == 0 and "no deliveries" in empty.stdout
    assert _json(cli("notify", "deliveries", name, "--json")) == {"items": []}

    gone = _json(cli("notify", "delete", name, "--json"))
    assert gone["id"] == channel["id"]
    assert http.get(f"/v1/notification-channels/{channel['id']}").status_code == 404
    assert cli("notify", "deliveries", name).exit_code == 1


def test_channel_bad_event_or_automation(cli: Any) -> None:
    event = cli("notify", "create", _name(), PUBLIC_URL, "--event", "run.exploded")
    assert event.exit_code == 1 and "unknown event" in event.stderr and "run.failed" in event.stderr
    no_auto = cli("notify", "create", _name(), PUBLIC_URL, "--event", "run.failed",
                  "--automation", "no-such-automation")  # fmt: skip
    assert no_auto.exit_code == 1 and "no automation named" in no_auto.stderr
    assert cli("notify", "create", _name(), PUBLIC_URL).exit_code == 2  # no --event


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A local HTTP server that records the notifications it is sent."""
    received: list[tuple[dict[str, str], bytes]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_a_failed_run_is_delivered_to_a_private_receiver_when_allowed(
    tmp_path: Path, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = receiver
    (tmp_path / "allowing").mkdir()
    with serve(tmp_path / "allowing", AUTOMATION_NOTIFY_ALLOW_PRIVATE="true") as served:
        cli = _invoker(served, served.new_key("acme"))
        automation = _deploy(cli, tmp_path, "import sys\nsys.exit(3)\n")
        channel = _json(cli("notify", "create", _name(), url, "--event", "run.failed",
                            "--automation", automation, "--json"))  # fmt: skip
        assert cli("dispatch", automation, "--wait").exit_code == 1
        deadline = time.monotonic() + 30
        while True:
            items = _json(cli("notify", "deliveries", channel["name"], "--json"))["items"]
            if items and items[0]["status"] == "delivered":
                break
            assert time.monotonic() < deadline, items
            time.sleep(0.2)
        assert items[0]["event"] == "run.failed" and items[0]["last_status_code"] == 204
        table = cli("notify", "deliveries", channel["name"])
        assert "delivered" in table.stdout and "HTTP 204" in table.stdout
    headers, body = received[0]
    assert headers["x-signature-256"] == _sign(channel["secret"], body)
    assert json.loads(body)["event"] == "run.failed"


# ---- state ----------------------------------------------------------------------


def test_state_set_then_show_round_trips_and_runs_carry_it(
    cli: Any, http: httpx.Client, tmp_path: Path
) -> None:
    code = (
        "from automation_sdk import report\n"
        "report.state({'last': report.current_state().get('last', 0) + 1})\n"
    )
    name = _deploy(cli, tmp_path, code)
    fresh = cli("state", "show", name)
    assert fresh.exit_code == 0 and json.loads(fresh.stdout) == {}
    assert "no state stored yet" in fresh.stderr

    stored = cli("state", "set", name, '{"last": 7}')
    assert stored.exit_code == 0 and "version 1" in stored.stdout
    shown = cli("state", "show", name)
    assert json.loads(shown.stdout) == {"last": 7} and "by hand" in shown.stderr
    automation_id = http.get("/v1/automations", params={"name": name}).json()["items"][0]["id"]
    api = http.get(f"/v1/automations/{automation_id}/state").json()
    assert _json(cli("state", "show", name, "--json")) == api
    assert api["version"] == 1 and api["updated_by_run"] is None

    run = _json(cli("dispatch", name, "--wait", "--json"))
    after = cli("state", "show", name)
    assert json.loads(after.stdout) == {"last": 8} and f"by run {run['id']}" in after.stderr

    # A file, standard input, and a state that has a "state" key of its own.
    (tmp_path / "s.json").write_text('{"state": {"nested": true}}')
    from_file = _json(cli("state", "set", name, f"@{tmp_path / 's.json'}", "--json"))
    assert from_file["state"] == {"state": {"nested": True}} and from_file["version"] == 3
    piped = cli("state", "set", name, "-", input='{"from": "stdin"}')
    assert piped.exit_code == 0
    assert json.loads(cli("state", "show", name).stdout) == {"from": "stdin"}
    assert _json(cli("state", "set", name, "{}", "--json"))["state"] == {}


def test_state_set_refuses_what_is_not_an_object(cli: Any, tmp_path: Path) -> None:
    name = _deploy(cli, tmp_path, "pass\n")
    for value, kind in (("[1, 2]", "an array"), ("7", "a number"), ('"x"', "a string")):
        result = cli("state", "set", name, value)
        assert result.exit_code == 2 and "must be a JSON object" in result.stderr
        assert kind in result.stderr
    assert cli("state", "set", name, "{nope").exit_code == 2
    assert cli("state", "set", name, f"@{tmp_path / 'missing.json'}").exit_code == 2
    (tmp_path / "big.json").write_text(json.dumps({"blob": "x" * 300_000}))
    too_big = cli("state", "set", name, f"@{tmp_path / 'big.json'}")
    assert too_big.exit_code == 1
    assert (
        "422 state_too_large" in too_big.stderr and "AUTOMATION_MAX_STATE_BYTES" in too_big.stderr
    )
    missing = cli("state", "show", "no-such-automation")
    assert missing.exit_code == 1 and "automation list" in missing.stderr


# ---- help ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "group,commands",
    [
        ("events", ["list", "create", "show", "update", "delete", "rotate-secret"]),
        ("notify", ["list", "create", "show", "delete", "deliveries"]),
        ("state", ["show", "set"]),
    ],
)
def test_every_command_help_has_an_example(group: str, commands: list[str]) -> None:
    runner = CliRunner()
    for command in commands:
        result = runner.invoke(main, [group, command, "--help"])
        assert result.exit_code == 0 and f"    automation {group} {command}" in result.stdout
        assert "--json" in result.stdout


def test_list_says_when_the_server_disabled_a_failing_automation(
    cli: Any, http: httpx.Client, tmp_path: Path
) -> None:
    name = _deploy(cli, tmp_path, "import sys\nsys.exit(3)\n")
    automation_id = http.get("/v1/automations", params={"name": name}).json()["items"][0]["id"]
    patched = http.patch(f"/v1/automations/{automation_id}", json={"disable_after_failures": 1})
    assert patched.status_code == 200, patched.text
    assert cli("dispatch", name, "--wait").exit_code == 1
    listed = cli("list")
    row = next(line for line in listed.stdout.splitlines() if name in line)
    assert "auto-disabled" in row, listed.stdout
    mine = [a for a in _json(cli("list", "--json"))["items"] if a["name"] == name]
    assert mine[0]["enabled"] is False and mine[0]["disabled_reason"], mine
