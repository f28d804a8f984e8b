"""Runs end to end: dispatch, real bubblewrap, run records, logs."""

from __future__ import annotations

import json
import time

from automation_server.storage.blobs import blob_key
from tests.e2e.conftest import Stack

REPORTER = """
import json, os
from automation_sdk import context, report
print("marker:", os.environ["MARKER"], "variant:", context.variant, flush=True)
report.metric("score", float(os.environ["SCORE"]))
report.output("env", sorted(os.environ))
report.output("context", {k: v for k, v in context.as_dict().items() if k != "payload"})
report.output("payload", context.payload)
"""

EXPECTED_ENV = {
    "AUTOMATION_RUN_ID",
    "AUTOMATION_ID",
    "AUTOMATION_NAME",
    "AUTOMATION_EXPERIMENT_ID",
    "AUTOMATION_VARIANT",
    "AUTOMATION_REVISION",
    "AUTOMATION_TRIGGER",
    "AUTOMATION_ATTEMPT",
    "AUTOMATION_PAYLOAD",
    "AUTOMATION_OUTPUT_DIR",
    "AUTOMATION_STATE",
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "PYTHONPATH",
    "MARKER",
    "SCORE",
    "SHARED",
    "API_TOKEN",
    "PWD",  # set by bubblewrap to the working directory
}


def test_each_variant_runs_its_own_tarball(stack: Stack) -> None:
    a_ref = stack.upload({"main.py": REPORTER.replace('os.environ["MARKER"]', '"tarball-a"')})
    b_ref = stack.upload({"run.py": REPORTER.replace('os.environ["MARKER"]', '"tarball-b"')})
    auto = stack.create(
        name="ab",
        experiment_id="exp-e2e",
        env={"SHARED": "1", "SCORE": "0.1"},
        secrets={"API_TOKEN": "tok-123456"},
        variants=[
            {"name": "control", "weight": 1, "tarball": a_ref, "env": {"MARKER": "x"}},
            {
                "name": "fast",
                "weight": 1,
                "tarball": b_ref,
                "entrypoint": ["python3", "run.py"],
                "env": {"MARKER": "y", "SCORE": "0.9"},
            },
        ],
    )
    runs = [
        stack.dispatch(auto["id"], variant=v, payload={"n": i})
        for i, v in enumerate(["control", "fast", "control", "fast"])
    ]
    for queued in runs:
        run = stack.wait(queued["id"])
        assert run["status"] == "succeeded", (run, stack.log(run["id"]))
        assert run["exit_code"] == 0 and run["sandbox"] == "bwrap"
        marker = "tarball-a" if run["variant"] == "control" else "tarball-b"
        log = stack.log(run["id"])
        assert f"marker: {marker} variant: {run['variant']}" in log
        assert run["metrics"] == {"score": 0.1 if run["variant"] == "control" else 0.9}
        assert set(run["outputs"]["env"]) == EXPECTED_ENV
        ctx = run["outputs"]["context"]
        assert ctx["run_id"] == run["id"] and ctx["automation_id"] == auto["id"]
        assert ctx["automation_name"] == "ab" and ctx["experiment_id"] == "exp-e2e"
        assert ctx["variant"] == run["variant"] and ctx["revision"] == 1
        assert ctx["trigger"] == "manual" and ctx["attempt"] == 1
        assert run["started_at"] >= run["created_at"] and run["finished_at"] >= run["started_at"]
        assert run["log_bytes"] == len(log.encode())
    payloads = [stack.wait(r["id"])["outputs"]["payload"] for r in runs]
    assert payloads == [{"n": i} for i in range(4)]
    last = stack.http.get(f"/v1/automations/{auto['id']}").json()["last_run"]
    assert last["status"] == "succeeded"


def test_secrets_are_masked_in_stored_logs(stack: Stack) -> None:
    ref = stack.upload({"main.py": "import os; print('token is', os.environ['API_TOKEN'])"})
    auto = stack.create(name="leaky", tarball=ref, secrets={"API_TOKEN": "very-secret-value"})
    run = stack.wait(stack.dispatch(auto["id"])["id"])
    assert run["status"] == "succeeded"
    log = stack.log(run["id"])
    assert "very-secret-value" not in log and "token is [secret]" in log


def test_exit_code_and_missing_entrypoint_fail_clearly(stack: Stack) -> None:
    ref = stack.upload({"main.py": "import sys; print('bye'); sys.exit(3)"})
    auto = stack.create(name="exit3", tarball=ref)
    run = stack.wait(stack.dispatch(auto["id"])["id"])
    assert (run["status"], run["exit_code"]) == ("failed", 3)
    assert "3" in run["error"]
    missing = stack.create(name="missing", tarball=ref, entrypoint=["python3", "nope.py"])
    run = stack.wait(stack.dispatch(missing["id"])["id"])
    assert run["status"] == "failed" and "nope.py" in run["error"]


def test_timeout_ends_timed_out(stack: Stack) -> None:
    ref = stack.upload({"main.py": "import time\nwhile True: time.sleep(1)"})
    auto = stack.create(name="slow", tarball=ref, timeout_s=1)
    run = stack.wait(stack.dispatch(auto["id"])["id"], timeout=30)
    assert run["status"] == "timed_out"


def test_malformed_report_is_a_clear_run_error(stack: Stack) -> None:
    script = (
        "import os\nopen(os.path.join(os.environ['AUTOMATION_OUTPUT_DIR'], "
        '\'report.jsonl\'), \'w\').write(\'{"type": "metric", "name": "x", '
        '"value": NaN}\\n\')'
    )
    auto = stack.create(name="badreport", tarball=stack.upload({"main.py": script}))
    run = stack.wait(stack.dispatch(auto["id"])["id"])
    assert run["status"] == "failed"
    assert "report.jsonl line 1" in run["error"]


def test_corrupt_tarball_fails_with_a_clear_error(stack: Stack) -> None:
    ref = stack.upload({"main.py": "print('ok')"})
    auto = stack.create(name="corrupt", tarball=ref)
    digest = ref.removeprefix("blob:")
    stack.services.store.put(blob_key(digest), b"tampered bytes")
    run = stack.wait(stack.dispatch(auto["id"])["id"])
    assert run["status"] == "failed"
    assert "corrupt" in run["error"] and digest in run["error"]


def test_run_log_is_served_as_text(stack: Stack) -> None:
    ref = stack.upload({"main.py": "import sys\nprint('out')\nprint('err', file=sys.stderr)"})
    auto = stack.create(name="logs", tarball=ref)
    run = stack.wait(stack.dispatch(auto["id"])["id"])
    r = stack.http.get(f"/v1/runs/{run['id']}/logs")
    assert r.headers["content-type"].startswith("text/plain")
    assert "out" in r.text and "err" in r.text
    assert json.loads(json.dumps(run))["log_truncated"] is False


STATEFUL = """
from automation_sdk import report
seen = report.current_state().get("count", 0)
print("seen", seen, flush=True)
report.state({"count": seen + 1})
"""


def test_state_is_carried_from_one_successful_run_to_the_next(stack: Stack) -> None:
    auto = stack.create(name="stateful", tarball=stack.upload({"main.py": STATEFUL}))
    for expected in (1, 2):
        run = stack.wait(stack.dispatch(auto["id"])["id"])
        assert run["status"] == "succeeded", run
        state = stack.http.get(f"/v1/automations/{auto['id']}/state").json()
        assert state["state"] == {"count": expected} and state["updated_by_run"] == run["id"]
    too_big = "from automation_sdk import report\nreport.state({'x': 'y' * 300000})\n"
    big = stack.create(name="bigstate", tarball=stack.upload({"main.py": too_big}))
    run = stack.wait(stack.dispatch(big["id"])["id"])
    assert run["status"] == "failed" and "AUTOMATION_MAX_STATE_BYTES" in run["error"]


def test_a_finished_status_never_comes_before_its_log(stack: Stack) -> None:
    """The final log is stored while the worker records the result; the record commits
    only once the log is there, even when the store is slow."""
    execution = stack.worker._execution
    store = execution._store
    real_put = store.put

    def slow_put(key: str, data: bytes) -> None:
        if key.startswith("logs/"):
            time.sleep(0.5)
        real_put(key, data)

    store.put = slow_put  # type: ignore[method-assign]
    try:
        auto = stack.create(name="slow-log", tarball=stack.upload({"main.py": "print('end')\n"}))
        run = stack.dispatch(auto["id"])
        finished = stack.wait(run["id"])
        assert finished["status"] == "succeeded", finished
        assert stack.log(run["id"]) == "end\n", "the status said finished before its log"
    finally:
        store.put = real_put  # type: ignore[method-assign]
