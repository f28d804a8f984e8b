"""DESIGN 9.4 and 9.5: one signed event fanning out to many automations, and how soon
a failed run's notification reaches its receiver.

Per database, in one process, over real HTTP (uvicorn on 127.0.0.1, one
keep-alive httpx client, as a sender would post):

- ``fan_out``: one signed ``POST /v1/events/{id}`` to a source matched by 100
  enabled automations (trigger ``event``, ``on: ["push"]``): the time from
  sending the request to its 202, which comes after the one transaction that
  queues all 100 runs has committed (checked: 100 queued runs). Baseline in
  the same run: 100 signed ``POST /v1/hooks/{id}``, one per webhook automation,
  one after another, the same client. No worker runs: the runs stay queued and
  are deleted between repetitions (the two sides alternate which goes first).
  Reported: medians over the repetitions and ``webhooks_total / fan_out``.
- ``notification``: a ``run.failed`` channel pointing at a threaded
  ``http.server`` on 127.0.0.1 (AUTOMATION_NOTIFY_ALLOW_PRIVATE=true), runs of
  a script that exits 1 executed by ``serve``'s worker (bubblewrap; concurrency
  2) with the deliverer ``serve`` starts (and, on PostgreSQL, the LISTEN
  thread): receive time (``time.time()`` in the receiver) minus the run's
  ``finished_at`` (the database's clock: the host's on SQLite, ``now()`` of the
  finishing transaction on PostgreSQL), one run at a time and in a burst of
  runs queued at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from sqlalchemy import delete, func, select

from automation_server.automations.schemas import AutomationCreate, ConcurrencySpec, TriggerSpec
from automation_server.db.models import EventDelivery, Run, WebhookDelivery
from automation_server.errors import SandboxError
from automation_server.events.schemas import EventSourceCreate
from automation_server.notifications.schemas import ChannelCreate
from automation_server.runs.schemas import DispatchRequest
from automation_server.statuses import RunStatus
from automation_server.worker.build import build_worker
from bench.common import TRIVIAL_SCRIPT, BenchStack, stack, summary_ms, targz, write_results

FAN_OUT = 100
FAILING_SCRIPT = "import sys\nprint('failing on purpose')\nsys.exit(1)\n"
WIDE = ConcurrencySpec(max_running=1000, on_overlap="queue")


def _signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@contextmanager
def _live_server(s: BenchStack) -> Iterator[httpx.Client]:
    """The real app on a real socket (uvicorn in a thread), and a keep-alive client."""
    import socket

    import uvicorn

    from automation_server.api.app import create_app

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = uvicorn.Config(
        create_app(s.services),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the bench server did not start")
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# ---- fan-out -----------------------------------------------------------------


def _create(s: BenchStack, ref: str, name: str, trigger: TriggerSpec) -> Any:
    body = AutomationCreate(name=name, tarball=ref, trigger=trigger, concurrency=WIDE)
    return s.services.automations.create(s.caller, body)


def _fan_out_setup(s: BenchStack) -> tuple[Any, list[Any]]:
    """The source and its 100 event automations, and 100 webhook automations."""
    ref = s.services.blobs.upload(s.caller.org_id, targz({"main.py": TRIVIAL_SCRIPT})).ref
    source = s.services.event_sources.create(s.caller, EventSourceCreate(name="bench"))
    on_push = TriggerSpec(type="event", source="bench", on=["push"])
    for i in range(FAN_OUT):
        _create(s, ref, f"event-{i}", on_push)
    hooks = [_create(s, ref, f"hook-{i}", TriggerSpec(type="webhook")) for i in range(FAN_OUT)]
    return source, hooks


def _body() -> bytes:
    return json.dumps({"type": "push", "ref": "refs/heads/main", "id": uuid.uuid4().hex}).encode()


def _send_event(http: httpx.Client, source: Any) -> float:
    body = _body()
    headers = {
        "Content-Type": "application/json",
        "X-Signature-256": _signature(str(source.secret), body),
        "X-Delivery-Id": uuid.uuid4().hex,
    }
    start = time.perf_counter()
    r = http.post(source.url, content=body, headers=headers)
    elapsed = time.perf_counter() - start
    if r.status_code != 202 or r.json()["matched"] != FAN_OUT:
        raise RuntimeError(f"event delivery: {r.status_code} {r.text[:300]}")
    return elapsed


def _send_webhooks(http: httpx.Client, hooks: list[Any]) -> float:
    start = time.perf_counter()
    for hook in hooks:
        body = _body()
        headers = {
            "Content-Type": "application/json",
            "X-Signature-256": _signature(str(hook.webhook_secret), body),
            "X-Delivery-Id": uuid.uuid4().hex,
        }
        r = http.post(f"/v1/hooks/{hook.id}", content=body, headers=headers)
        if r.status_code != 202:
            raise RuntimeError(f"webhook: {r.status_code} {r.text[:300]}")
    return time.perf_counter() - start


def _queued(s: BenchStack, trigger: str) -> int:
    with s.services.db.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Run)
                .where(Run.trigger == trigger, Run.status == RunStatus.QUEUED)
            )
            or 0
        )


def _clear_runs(s: BenchStack) -> None:
    with s.services.db.write() as session:
        session.execute(delete(WebhookDelivery))
        session.execute(delete(EventDelivery))
        session.execute(delete(Run))


def _one_round(s: BenchStack, http: httpx.Client, source: Any, hooks: list[Any], i: int) -> Any:
    """Both sides once (alternating which goes first), each checked: 100 queued runs."""
    times: dict[str, float] = {}
    for side in ("event", "webhook") if i % 2 == 0 else ("webhook", "event"):
        if side == "event":
            times[side] = _send_event(http, source)
        else:
            times[side] = _send_webhooks(http, hooks)
        queued = _queued(s, side)
        if queued != FAN_OUT:
            raise RuntimeError(f"{side}: {queued} queued runs after the answer, not {FAN_OUT}")
    _clear_runs(s)
    return times["event"], times["webhook"]


def _fan_out(s: BenchStack, repetitions: int) -> dict[str, Any]:
    source, hooks = _fan_out_setup(s)
    with _live_server(s) as http:
        for i in range(2):  # warm up: connections, caches, first-request costs
            _one_round(s, http, source, hooks, i)
        rounds = [_one_round(s, http, source, hooks, i) for i in range(repetitions)]
    events = [e for e, _ in rounds]
    webhooks = [w for _, w in rounds]
    event_s, webhook_s = statistics.median(events), statistics.median(webhooks)
    return {
        "automations": FAN_OUT,
        "repetitions": repetitions,
        "fan_out_ms_median": round(event_s * 1000, 2),
        "fan_out_ms": [round(v * 1000, 2) for v in events],
        "webhooks_total_ms_median": round(webhook_s * 1000, 2),
        "webhooks_total_ms": [round(v * 1000, 2) for v in webhooks],
        "webhook_ms_per_call": round(webhook_s * 1000 / FAN_OUT, 3),
        "fan_out_ms_per_run": round(event_s * 1000 / FAN_OUT, 3),
        "ratio_webhooks_to_fan_out": round(webhook_s / event_s, 2),
        "ratio_per_round": [round(w / e, 2) for e, w in rounds],
        "goal_ratio": 10,
    }


# ---- notification latency -------------------------------------------------------


class Receiver:
    """A threaded HTTP receiver on 127.0.0.1: the time each notification arrived."""

    def __init__(self) -> None:
        self.received: dict[str, float] = {}  # run id -> time.time() at arrival
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.time()
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                run = json.loads(body).get("run") or {}
                with receiver.lock:
                    receiver.received.setdefault(str(run.get("id")), arrived)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def wait_for(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.count()} of {n} notifications arrived")
            time.sleep(0.002)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _latencies(s: BenchStack, receiver: Receiver, run_ids: list[str]) -> list[float]:
    with s.services.db.read() as session:
        rows = session.execute(
            select(Run.id, Run.status, Run.finished_at).where(Run.id.in_(run_ids))
        ).all()
    if any(status != RunStatus.FAILED for _, status, _ in rows):
        raise RuntimeError(f"expected failed runs, got {sorted({r.status for r in rows})}")
    out = []
    for run_id, _, finished_at in rows:
        if finished_at is None:
            raise RuntimeError(f"run {run_id} failed but has no finished_at")
        # Aware (UTC) from the column type: timestamp() is comparable with time.time().
        out.append(receiver.received[run_id] - finished_at.timestamp())
    return out


def _one_at_a_time(s: BenchStack, receiver: Receiver, aid: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        before = receiver.count()
        ids.append(s.services.dispatcher.dispatch(s.caller, aid, DispatchRequest()).id)
        receiver.wait_for(before + 1, timeout=30)
    return ids


def _burst(s: BenchStack, receiver: Receiver, aid: str, n: int) -> list[str]:
    before = receiver.count()
    ids = [s.services.dispatcher.dispatch(s.caller, aid, DispatchRequest()).id for _ in range(n)]
    receiver.wait_for(before + n, timeout=120)
    return ids


def _start_worker(s: BenchStack) -> tuple[Any, str]:
    try:
        worker = build_worker(s.services)
    except SandboxError:  # no usable bubblewrap here: run unsandboxed, and say so
        s.services.settings = replace(s.services.settings, sandbox="none")
        worker = build_worker(s.services)
    worker.start()
    return worker, s.services.settings.sandbox


def _notification(s: BenchStack, runs: int) -> dict[str, Any]:
    receiver = Receiver()
    try:
        channel = ChannelCreate(name="bench", url=receiver.url, events=["run.failed"])
        s.services.channels.create(s.caller, channel)
        ref = s.services.blobs.upload(s.caller.org_id, targz({"main.py": FAILING_SCRIPT})).ref
        aid = s.services.automations.create(
            s.caller, AutomationCreate(name="failing", tarball=ref, concurrency=WIDE)
        ).id
        s.services.start_listener()  # as serve: LISTEN on PostgreSQL, nothing on SQLite
        deliverer = s.services.deliverer().start()
        worker, sandbox = _start_worker(s)
        try:
            _one_at_a_time(s, receiver, aid, 5)  # warm up: tarball cache, pools, connections
            sequential = _latencies(s, receiver, _one_at_a_time(s, receiver, aid, runs))
            burst = _latencies(s, receiver, _burst(s, receiver, aid, runs))
        finally:
            worker.stop(grace_s=5)
            deliverer.stop()
    finally:
        receiver.close()
    return {
        "sandbox": sandbox,
        "worker_concurrency": s.services.settings.worker.concurrency,
        "one_at_a_time": _latency_summary(sequential),
        "burst": _latency_summary(burst),
    }


def _latency_summary(values: list[float]) -> dict[str, Any]:
    summary: dict[str, Any] = {"runs": len(values), **summary_ms(values)}
    summary["max_ms"] = round(max(values) * 1000, 2)
    summary["p99_under_1s"] = summary["p99_ms"] < 1000
    return summary


def _with_kind(kind: str, quick: bool) -> dict[str, Any]:
    env = {
        "AUTOMATION_NOTIFY_ALLOW_PRIVATE": "true",
        "AUTOMATION_WORKER_CONCURRENCY": "2",
        "AUTOMATION_POLL_S": "1",
    }
    with stack(kind, **env) as s:
        fan_out = _fan_out(s, 5 if quick else 15)
        notification = _notification(s, 30 if quick else 200)
    return {"fan_out": fan_out, "notification_run_failed": notification}


def run(quick: bool) -> dict[str, Any]:
    results = {kind: _with_kind(kind, quick) for kind in ("sqlite", "postgres")}
    path = write_results("events", {"quick": quick, **results})
    return {"file": str(path), **results}
