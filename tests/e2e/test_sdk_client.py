"""The SDK client against a real ``automation-server serve`` process."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from automation_sdk import errors
from automation_sdk.client import Client
from automation_sdk.models import Automation

from tests.e2e.sdk_server import Served, serve
from tests.support import targz


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("sdk-client")) as s:
        yield s


@pytest.fixture(scope="module")
def api(served: Served) -> Iterator[Client]:
    with Client(served.base_url, served.new_key("acme")) as client:
        yield client


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def _automation(api: Client, code: str = "print('hi')", **body: object) -> Automation:
    ref = api.upload(targz({"main.py": code})).ref
    return api.create_automation(name=_name(), tarball=ref, **body)


def test_upload_is_content_addressed(api: Client) -> None:
    data = targz({"main.py": "print(1)"})
    first, again = api.upload(data), api.upload(data)
    assert first.ref == again.ref == f"blob:{first.digest}"
    assert first.size == len(data) and first.files == 1


def test_create_read_find_update_delete(api: Client) -> None:
    auto = _automation(api, env={"MODE": "a"})
    assert auto.revision == 1 and [v.name for v in auto.variants] == ["default"]
    assert api.get_automation(auto.id) == auto
    assert api.find_automation(auto.name) == auto
    assert api.find_automation("no-such-" + auto.name) is None

    renamed = api.update_automation(auto.id, env={"MODE": "b"}, timeout_s=30)
    assert renamed.env == {"MODE": "b"} and renamed.timeout_s == 30
    assert renamed.revision == 1  # env and timeout make no revision
    weighted = api.update_automation(auto.id, weights={"default": 5})
    assert weighted.revision == 2 and weighted.variants[0].weight == 5
    assert [r.revision for r in api.revisions(auto.id)] == [2, 1]

    api.delete_automation(auto.id)
    with pytest.raises(errors.NotFoundError):
        api.get_automation(auto.id)
    assert api.find_automation(auto.name) is None


def test_list_automations_pages_through_all(served: Served) -> None:
    with Client(served.base_url, served.new_key("lister")) as api:
        ref = api.upload(targz({"main.py": "pass"})).ref
        made = [api.create_automation(name=f"auto-{i}", tarball=ref).id for i in range(7)]
        listed = [a.id for a in api.list_automations(page_size=3)]
    assert listed == list(reversed(made))  # newest first, nothing lost between pages


def test_runs_iterates_over_several_pages(api: Client) -> None:
    auto = _automation(api)
    dispatched = [api.dispatch(auto.id).id for _ in range(120)]
    listed = [r.id for r in api.runs(automation_id=auto.id, page_size=50)]
    assert len(listed) == 120 and set(listed) == set(dispatched)
    assert listed == sorted(listed, reverse=True)  # UUIDv7: newest first


def test_runs_filters(api: Client) -> None:
    auto = _automation(api)
    before = datetime.now(UTC) - timedelta(seconds=1)
    run = api.dispatch(auto.id, wait=True, timeout=30)
    assert [r.id for r in api.runs(automation_id=auto.id, status="succeeded")] == [run.id]
    assert list(api.runs(automation_id=auto.id, status="failed")) == []
    assert [r.id for r in api.runs(automation_id=auto.id, since=before)] == [run.id]
    assert list(api.runs(automation_id=auto.id, until=before)) == []
    assert [r.id for r in api.runs(automation_id=auto.id, trigger="manual")] == [run.id]


def test_dispatch_and_wait_returns_the_finished_run(api: Client) -> None:
    code = (
        "from automation_sdk import context, report\n"
        "report.metric('n', context.payload['n'] * 2)\n"
        "report.output('variant', context.variant)\n"
        "print('done', context.payload['n'])\n"
    )
    auto = _automation(api, code)
    run = api.dispatch(auto.id, payload={"n": 21}, wait=True, timeout=60)
    assert run.status == "succeeded" and run.exit_code == 0
    assert run.metrics == {"n": 42} and run.outputs == {"variant": "default"}
    assert run.duration_ms is not None and run.finished_at is not None
    assert api.logs(run.id) == "done 21\n"


def test_failed_run_is_reported_as_failed(api: Client) -> None:
    auto = _automation(api, "import sys; print('bad'); sys.exit(3)")
    run = api.dispatch(auto.id, wait=True, timeout=60)
    assert (run.status, run.exit_code) == ("failed", 3)


def test_forced_variant_and_sticky_key(api: Client) -> None:
    ref = api.upload(targz({"main.py": "pass"})).ref
    auto = api.create_automation(
        name=_name(),
        experiment_id="exp-" + uuid.uuid4().hex[:6],
        variants=[
            {"name": "a", "weight": 50, "tarball": ref},
            {"name": "b", "weight": 50, "tarball": ref},
        ],
    )
    forced = api.dispatch(auto.id, variant="b")
    assert (forced.variant, forced.assignment.method) == ("b", "forced")
    sticky = [api.dispatch(auto.id, assignment_key="user-7") for _ in range(3)]
    assert {r.variant for r in sticky} == {sticky[0].variant}
    assert {r.assignment.method for r in sticky} == {"sticky"}


def test_idempotency_key_returns_the_same_run(api: Client) -> None:
    auto = _automation(api)
    key = uuid.uuid4().hex
    assert (
        api.dispatch(auto.id, idempotency_key=key).id
        == api.dispatch(auto.id, idempotency_key=key).id
    )


def test_follow_logs_streams_until_the_run_ends(api: Client) -> None:
    code = (
        "import time\nfor i in range(5):\n    print('line', i, flush=True)\n    time.sleep(0.6)\n"
    )
    auto = _automation(api, code)
    run = api.dispatch(auto.id)
    arrivals: list[tuple[float, str]] = []
    start = time.monotonic()
    for chunk in api.follow_logs(run.id):
        arrivals.append((time.monotonic() - start, chunk))
    text = "".join(chunk for _, chunk in arrivals)
    assert text == "".join(f"line {i}\n" for i in range(5))
    # Streamed while running (the worker publishes the live log about once a second),
    # not as one body at the end.
    assert len(arrivals) > 1 and arrivals[-1][0] - arrivals[0][0] > 0.5
    assert api.get_run(run.id).finished


def test_cancel_a_queued_or_running_run_then_conflict(api: Client) -> None:
    auto = _automation(api, "import time; time.sleep(30)")
    run = api.dispatch(auto.id)
    cancelled = api.cancel(run.id)
    assert cancelled.id == run.id
    final = api.wait(run.id, timeout=30)
    assert final.status == "cancelled"
    with pytest.raises(errors.ConflictError) as caught:
        api.cancel(run.id)
    assert caught.value.status_code == 409


def test_typed_errors_carry_status_code_and_field(api: Client, served: Served) -> None:
    with pytest.raises(errors.NotFoundError) as missing:
        api.get_run(str(uuid.uuid4()))
    assert missing.value.status_code == 404 and missing.value.code == "not_found"

    ref = api.upload(targz({"main.py": "pass"})).ref
    with pytest.raises(errors.ValidationError) as invalid:
        api.create_automation(
            name=_name(), tarball=ref, trigger={"type": "cron", "schedule": "61 * * * *"}
        )
    assert invalid.value.status_code == 422 and invalid.value.field == "trigger.schedule"
    assert "minute" in invalid.value.detail

    with pytest.raises(errors.ValidationError) as schema:
        api.create_automation(name=_name(), tarball=ref, no_such_field=1)
    assert schema.value.status_code == 400

    with pytest.raises(errors.ValidationError) as unsafe:
        api.upload(b"not a tarball")
    assert unsafe.value.status_code == 422

    with pytest.raises(errors.ConflictError):
        api.create_automation(
            name=api.create_automation(name=_name(), tarball=ref).name, tarball=ref
        )

    with (
        Client(served.base_url, "ak_wrong_key") as bad,
        pytest.raises(errors.AuthError) as denied,
    ):
        bad.list_automations().__next__()
    assert denied.value.status_code == 401


def test_read_scope_cannot_write(served: Served) -> None:
    with Client(served.base_url, served.new_key("acme", scope="read")) as reader:
        list(reader.runs())
        with pytest.raises(errors.AuthError) as denied:
            reader.upload(targz({"main.py": "pass"}))
    assert denied.value.status_code == 403


def test_other_organization_sees_not_found(api: Client, served: Served) -> None:
    auto = _automation(api)
    with Client(served.base_url, served.new_key("other-org")) as other:
        with pytest.raises(errors.NotFoundError):
            other.get_automation(auto.id)
        assert other.find_automation(auto.name) is None


def test_unreachable_server_is_a_connection_error(tmp_path: Path) -> None:
    from tests.support import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, "ak_x_y", retries=1) as api, pytest.raises(errors.ServerUnreachable) as gone:
        api.get_run("r")
    assert gone.value.url == url and isinstance(gone.value, ConnectionError)


def test_a_real_429_is_retried(served: Served) -> None:
    """A stub in front of the real server answers 429 once; the client waits and retries."""
    calls: list[str] = []
    lock = threading.Lock()
    upstream = httpx.HTTPTransport()

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            calls.append(request.url.path)
            if len(calls) == 1:
                return httpx.Response(429, headers={"Retry-After": "0"}, json={"detail": "wait"})
        return upstream.handle_request(request)

    key = served.new_key("acme")
    with Client(served.base_url, key, transport=httpx.MockTransport(handler)) as api:
        assert api.find_automation("nobody-has-this-name") is None
    assert len(calls) == 2
    upstream.close()
