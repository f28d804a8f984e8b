"""What a user sees of the queue: platform failures kept out of experiments, fair claims."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from automation_sdk.cli import main
from click.testing import CliRunner

from tests.e2e.conftest import make_stack, require_bwrap

stack_of = contextmanager(make_stack)


def test_a_sandbox_that_cannot_start_is_an_infrastructure_failure(
    data_dir: Path, database_url: str
) -> None:
    require_bwrap()
    # The interpreter runs are given does not exist: bubblewrap cannot be set up.
    with stack_of(data_dir, database_url, AUTOMATION_RUN_PYTHON="/nonexistent/python3") as stack:
        auto = stack.create(
            name="broken-host",
            experiment_id="platform-exp",
            tarball=stack.upload({"main.py": "print('never runs')"}),
            retry={"max_attempts": 1},
        )
        run = stack.wait(stack.dispatch(auto["id"])["id"], timeout=60)
        assert run["status"] == "failed" and run["failure_origin"] == "infrastructure"
        assert run["attempt"] == 3 and run["duration_ms"] is None  # never started
        assert [a["origin"] for a in run["attempts"]] == ["infrastructure"] * 2
        assert "run interpreter" in run["error"]
        assert "could not start" in stack.log(run["id"])

        summary = stack.http.get("/v1/experiments/platform-exp").json()
        [item] = summary["variants"]
        assert item["infrastructure_failures"] == 1
        assert item["success_rate"]["trials"] == 0  # the variant is not blamed

        key = stack.http.headers["Authorization"].removeprefix("Bearer ")
        out = CliRunner().invoke(
            main, ["--url", stack.server.base_url, "--api-key", key, "runs"], terminal_width=200
        )
        assert out.exit_code == 0, out.output
        assert "failed (platform)" in out.output


def test_a_backlog_at_its_limit_does_not_delay_another_automation(
    data_dir: Path, database_url: str
) -> None:
    """A: max_running 1 and a backlog of one-second runs; B's single run starts at once on
    the worker's other slot instead of waiting behind A's backlog."""
    require_bwrap()
    with stack_of(data_dir, database_url) as stack:
        slow = stack.create(
            name="backlog",
            tarball=stack.upload({"main.py": "import time; time.sleep(1)"}),
            concurrency={"max_running": 1, "on_overlap": "queue"},
        )
        quick = stack.create(name="quick", tarball=stack.upload({"main.py": "print('hi')"}))
        backlog = [stack.dispatch(slow["id"])["id"] for _ in range(8)]
        run = stack.wait(stack.dispatch(quick["id"])["id"], timeout=30)
        assert run["status"] == "succeeded"
        head = stack.http.get(f"/v1/runs/{backlog[0]}").json()
        # B ran while A's first run (one second) was still the only one of A running.
        assert run["finished_at"] < stack.wait(backlog[1], timeout=60)["finished_at"], head
        waited = _seconds(run["created_at"], run["started_at"])
        assert waited < 1.0, waited


def _seconds(earlier: str, later: str) -> float:
    from datetime import datetime

    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return (parse(later) - parse(earlier)).total_seconds()
