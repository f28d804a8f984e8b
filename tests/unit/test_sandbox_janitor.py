"""The sandbox's janitor: cleanups run in order, off the caller's thread, failures logged."""

from __future__ import annotations

import threading

from structlog.testing import capture_logs

from automation_server.sandbox.janitor import Janitor


def test_jobs_run_in_order_in_another_thread() -> None:
    janitor = Janitor()
    done: list[tuple[int, str]] = []
    for i in range(5):
        janitor.later(lambda i=i: done.append((i, threading.current_thread().name)))
    assert janitor.wait_idle(5)
    assert [i for i, _ in done] == [0, 1, 2, 3, 4]
    assert {name for _, name in done} == {"sandbox-janitor"}


def test_a_failing_job_is_logged_and_later_ones_still_run() -> None:
    janitor = Janitor()
    done: list[str] = []

    def broken() -> None:
        raise OSError("device busy")

    with capture_logs() as logs:
        janitor.later(broken)
        janitor.later(lambda: done.append("after"))
        assert janitor.wait_idle(5)
    assert done == ["after"]
    assert any(entry["event"] == "sandbox.cleanup_failed" for entry in logs)


def test_wait_idle_times_out_while_a_job_is_stuck() -> None:
    janitor = Janitor()
    release = threading.Event()
    janitor.later(lambda: release.wait(5))
    assert not janitor.wait_idle(0.05)
    release.set()
    assert janitor.wait_idle(5)
