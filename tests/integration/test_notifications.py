"""Notification channels (9.5): validation, the outbox, signed delivery with retries."""

from __future__ import annotations

import gc
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from automation_server.db.models import NotificationDelivery
from automation_server.notifications.channels import ChannelService
from automation_server.notifications.deliverer import Deliverer
from automation_server.notifications.schemas import ChannelCreate
from automation_server.queue.results import RunResult
from automation_server.statuses import RunStatus
from tests.integration.queue_support import QueueKit
from tests.support import LiveServer


class Receiver:
    """A real HTTP receiver on 127.0.0.1 answering with the codes it is given, in turn."""

    def __init__(self, codes: list[int], *, hang: bool = False) -> None:
        self.codes = codes
        self.hang = hang
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                if receiver.hang:
                    receiver.release.wait(30)
                    return
                code = receiver.codes.pop(0) if len(receiver.codes) > 1 else receiver.codes[0]
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()
    # Sockets of a receiver cut off mid-answer are collected here, not in a later test.
    gc.collect()


def test_channel_validation(server: LiveServer) -> None:
    http = server.client(server.new_key("acme"))

    def create(**body: Any) -> httpx.Response:
        return http.post(
            "/v1/notification-channels",
            json={"name": "ops", "url": "https://93.184.215.14/x", "events": ["run.failed"]} | body,
        )

    assert create(url="ftp://example.org/x").json()["code"] == "invalid_url"
    private = create(url="http://127.0.0.1:9/hook")
    assert private.status_code == 422 and private.json()["code"] == "private_address"
    assert "AUTOMATION_NOTIFY_ALLOW_PRIVATE" in private.json()["detail"]
    assert create(url="http://169.254.169.254/latest").json()["code"] == "private_address"
    unknown = create(events=["run.exploded"])
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_event"
    assert create(automation_ids=["nope"]).status_code == 422
    ok = create()
    assert ok.status_code == 201 and ok.json()["secret"].startswith("nosec_")
    assert create().status_code == 409
    listed = http.get("/v1/notification-channels").json()["items"]
    assert len(listed) == 1 and "secret" not in listed[0]
    channel_id = ok.json()["id"]
    assert http.get(f"/v1/notification-channels/{channel_id}/deliveries").json() == {"items": []}
    other = server.client(server.new_key("other"))
    assert other.get(f"/v1/notification-channels/{channel_id}").status_code == 404
    assert http.delete(f"/v1/notification-channels/{channel_id}").status_code == 204


def _channel(services: Any, kit: QueueKit, url: str, name: str) -> Any:
    channels = ChannelService(services.db, services.box, allow_private=True)
    return channels.create(
        kit.caller, ChannelCreate(name=name, url=url, events=["run.failed", "automation.disabled"])
    )


def _fail_a_run(kit: QueueKit, aid: str) -> str:
    [run_id] = kit.dispatch(aid)
    [claimed] = kit.services.queue.claim("w", 1, 30)
    kit.services.queue.finish(claimed.run_id, "w", RunResult(RunStatus.FAILED, 3, "exit 3", 9))
    return run_id


def _wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _deliveries(services: Any) -> list[NotificationDelivery]:
    with services.db.read() as session:
        return list(session.scalars(sa.select(NotificationDelivery)))


def test_a_failed_run_is_posted_signed_and_retried_after_a_500(
    services: Any, receivers: list[Receiver]
) -> None:
    kit = QueueKit.make(services)
    receiver = Receiver([500, 200])
    receivers.append(receiver)
    channel = _channel(services, kit, receiver.url, "ops")
    aid = kit.automation("failing", disable_after_failures=2)
    run_id = _fail_a_run(kit, aid)
    deliverer = Deliverer(services.db, services.box, services.notifier, allow_private=True)
    deliverer.deliver_due()
    _wait(lambda: _deliveries(services)[0].attempts == 1)
    [first] = _deliveries(services)
    assert first.status == "pending" and first.last_status_code == 500
    headers, body = receiver.received[0]
    expected = "sha256=" + hmac.new(channel.secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Signature-256"] == expected
    notice = json.loads(body)
    assert notice["event"] == "run.failed" and headers["X-Delivery-Id"] == notice["id"]
    assert notice["automation"] == {"id": aid, "name": "failing"}
    assert notice["run"]["id"] == run_id and notice["run"]["status"] == "failed"
    assert notice["decision"] is None
    # The retry is due later; make it due now and deliver again.
    with services.db.write() as session:
        session.execute(
            sa.update(NotificationDelivery).values(next_attempt_at=sa.func.current_timestamp())
        )
    time.sleep(0.01)
    deliverer.deliver_due()
    _wait(lambda: _deliveries(services)[0].status == "delivered")
    assert _deliveries(services)[0].attempts == 2 and len(receiver.received) == 2
    assert receiver.received[1][1] == body  # the same signed bytes, once more
    listed = ChannelService(services.db, services.box, allow_private=True).deliveries(
        kit.caller, channel.id
    )
    assert [(d.status, d.attempts, d.last_status_code) for d in listed.items] == [
        ("delivered", 2, 200)
    ]
    # The second failure disables the automation: that is notified too.
    _fail_a_run(kit, aid)
    events = sorted(d.event for d in _deliveries(services))
    assert events == ["automation.disabled", "run.failed", "run.failed"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_receiver_that_never_answers_slows_nothing_else(
    services: Any, receivers: list[Receiver]
) -> None:
    kit = QueueKit.make(services)
    stuck, live = Receiver([200], hang=True), Receiver([200])
    receivers.extend([stuck, live])
    _channel(services, kit, stuck.url, "stuck")
    _channel(services, kit, live.url, "live")
    aid = kit.automation("failing")
    started = time.monotonic()
    _fail_a_run(kit, aid)
    assert time.monotonic() - started < 2  # recording the run never waits for receivers
    deliverer = Deliverer(services.db, services.box, services.notifier, allow_private=True)
    deliverer.start()
    try:
        _wait(lambda: len(live.received) == 1 and len(stuck.received) == 1, timeout=5)
        assert time.monotonic() - started < 3
    finally:
        stuck.release.set()
        # The stuck send ends (its connection closed) before the deliverer stops.
        _wait(lambda: all(d.attempts == 1 for d in _deliveries(services)), timeout=20)
        deliverer.stop()
