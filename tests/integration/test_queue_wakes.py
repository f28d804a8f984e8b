"""Wake-ups: each change wakes a local subscriber once, and other processes through PostgreSQL.

A wake a worker does not need costs it an empty claim (a write transaction);
these tests count the wakes each subscriber gets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from automation_server.queue.notify import RUNS, Notifier
from automation_server.queue.results import RunResult
from automation_server.services import build_services
from automation_server.statuses import RunStatus
from tests.integration.queue_support import QueueKit
from tests.support import settings_for

SETTLE_S = 0.6  # longer than a PostgreSQL notification takes to come back here


class Wakes:
    def __init__(self, notifier: Notifier) -> None:
        self.count = 0
        self._event = threading.Event()
        notifier.subscribe(RUNS, self._woken)

    def _woken(self, _payload: str) -> None:
        self.count += 1
        self._event.set()

    def wait(self, timeout: float = 10.0) -> bool:
        return self._event.wait(timeout)


@pytest.fixture
def other_process(services: Any, tmp_path: Path) -> Iterator[Any]:
    """A second set of services on the same database, as another process would have."""
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = build_services(settings_for(other_dir, services.settings.database_url))
    other.start_listener()
    yield other
    other.close()


def _listening(services: Any) -> None:
    services.start_listener()
    time.sleep(0.3)  # the listener connects and LISTENs; it wakes everyone once then


def test_a_dispatch_wakes_a_local_subscriber_once(services: Any) -> None:
    _listening(services)
    kit = QueueKit.make(services)
    automation = kit.automation("wake-once")
    wakes = Wakes(services.notifier)
    kit.dispatch(automation)
    assert wakes.wait()
    time.sleep(SETTLE_S)  # PostgreSQL's echo of our own NOTIFY must not count again
    assert wakes.count == 1


def test_a_worker_finishing_its_own_run_wakes_others_not_itself(
    services: Any, other_process: Any
) -> None:
    _listening(services)
    kit = QueueKit.make(services)
    automation = kit.automation("wake-finish")
    kit.dispatch(automation, 2)
    (claimed,) = services.queue.claim("worker-a", 1, 60)
    local, remote = Wakes(services.notifier), Wakes(other_process.notifier)
    services.queue.finish(claimed.run_id, "worker-a", RunResult(RunStatus.SUCCEEDED, 0, None, 5))
    if services.db.is_sqlite:
        # No channel between processes on SQLite: the other side polls.
        time.sleep(SETTLE_S)
        assert (local.count, remote.count) == (0, 0)
        return
    assert remote.wait(), "the automation's next run is claimable: other workers must hear"
    time.sleep(SETTLE_S)
    assert (local.count, remote.count) == (0, 1)


def test_other_processes_hear_a_dispatch_through_postgres(
    services: Any, other_process: Any
) -> None:
    time.sleep(0.3)
    kit = QueueKit.make(services)
    automation = kit.automation("wake-remote")
    remote = Wakes(other_process.notifier)
    kit.dispatch(automation)
    if services.db.is_sqlite:
        # No channel between processes on SQLite: the other side's workers poll.
        assert not remote.wait(SETTLE_S)
        return
    assert remote.wait()
    time.sleep(SETTLE_S)
    assert remote.count == 1


def test_untagged_and_foreign_notifications_are_delivered() -> None:
    notifier = Notifier(postgres=True)
    seen: list[str] = []
    notifier.subscribe("automation_cancel", seen.append)
    notifier.received("automation_cancel", "run-1")  # from a sender without tags
    notifier.received("automation_cancel", "0123456789ab:run-2")  # another notifier's
    notifier.received("automation_cancel", f"{notifier.origin}:run-3")  # our own echo
    assert seen == ["run-1", "run-2"]
