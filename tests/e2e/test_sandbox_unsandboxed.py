"""AUTOMATION_SANDBOX=none keeps the executor contract without isolation; the factory."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from automation_server.errors import SandboxError
from automation_server.sandbox.factory import make_executor
from automation_server.sandbox.unsandboxed import UnsandboxedExecutor
from tests.e2e.sandbox_support import SMALL, SYSTEM_PYTHON, Background, make_spec, run
from tests.support import skip_or_fail

GRACE_S = 0.5


@pytest.fixture
def executor() -> UnsandboxedExecutor:
    if not SYSTEM_PYTHON.exists():
        skip_or_fail(f"{SYSTEM_PYTHON} is missing")
    return UnsandboxedExecutor(grace_s=GRACE_S)


def test_runs_with_the_same_environment_contract(
    tmp_path: Path, executor: UnsandboxedExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVER_ONLY_TOKEN", "must-not-leak")
    spec = make_spec(
        tmp_path,
        {
            "main.py": """
            import json, os, sys
            import automation_sdk
            out = os.environ["AUTOMATION_OUTPUT_DIR"]
            open(os.path.join(out, "report.jsonl"), "w").write("{}\\n")
            print(json.dumps({"env": dict(os.environ), "cwd": os.getcwd(),
                              "python": os.path.realpath(sys.executable),
                              "payload": json.load(open(os.environ["AUTOMATION_PAYLOAD"]))}))
            """
        },
        env={"AUTOMATION_RUN_ID": "r1", "STYLE": "terse"},
    )
    outcome = run(executor, spec)
    assert (outcome.status, outcome.sandbox, outcome.exit_code) == ("succeeded", "none", 0)
    report = json.loads(outcome.log)
    expected = {"AUTOMATION_RUN_ID", "STYLE", "AUTOMATION_PAYLOAD", "AUTOMATION_OUTPUT_DIR"}
    expected |= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONPATH", "PWD"}
    assert set(report["env"]) == expected
    assert report["env"]["AUTOMATION_OUTPUT_DIR"] == str(spec.output_dir)
    assert report["cwd"] == str(spec.workdir)
    assert report["python"] == str(SYSTEM_PYTHON.resolve())
    assert report["payload"] == {"hello": "world"}
    assert (spec.output_dir / "report.jsonl").exists()


def test_exit_code_and_missing_entrypoint(tmp_path: Path, executor: UnsandboxedExecutor) -> None:
    outcome = run(executor, make_spec(tmp_path, {"main.py": "raise SystemExit(3)\n"}))
    assert (outcome.status, outcome.exit_code, outcome.error) == ("failed", 3, "exit code 3")
    outcome = run(executor, make_spec(tmp_path, {}, argv=("python3", "run.py")))
    assert (outcome.status, outcome.error) == (
        "failed",
        "entrypoint 'run.py' not found in the tarball",
    )


def test_timeout_kills_the_process_group_after_the_grace(
    tmp_path: Path, executor: UnsandboxedExecutor
) -> None:
    spec = make_spec(
        tmp_path,
        {
            "main.py": """
            import os, signal, subprocess, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            child = subprocess.Popen(["sleep", "60"])
            print(child.pid, flush=True)
            while True:
                time.sleep(0.05)
            """
        },
        timeout_s=0.5,
    )
    start = time.monotonic()
    outcome = run(executor, spec)
    assert outcome.status == "timed_out"
    assert outcome.error == f"timed out after 0.5 s; killed {GRACE_S:g} s after SIGTERM"
    assert time.monotonic() - start < 0.5 + GRACE_S + 2
    child = int(outcome.log.split()[0])
    assert not _alive(child), "the child in the run's process group survived"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_cancel_and_log_cap(tmp_path: Path, executor: UnsandboxedExecutor) -> None:
    limits = replace(SMALL, max_log_bytes=1000)
    source = (
        "import time\nprint('x' * 5000, flush=True)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    )
    background = Background(executor, make_spec(tmp_path, {"main.py": source}, limits=limits))
    background.wait_for_output("ready")
    background.cancel.set()
    outcome = background.result()
    assert outcome.status == "cancelled"
    assert outcome.log_truncated and outcome.log_bytes == 5001 + 6 and len(outcome.log) <= 1000
    assert outcome.log.endswith(b"ready\n")


def test_factory_gives_the_requested_executor(tmp_path: Path) -> None:
    none = make_executor("none", grace_s=1.0)
    assert none.name == "none" and "NO SANDBOX" in none.describe()
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        make_executor("bwrap", bwrap_path=str(tmp_path / "no-such-bwrap"))
    with pytest.raises(SandboxError, match="AUTOMATION_SANDBOX=none"):
        make_executor("bwrap", bwrap_path=str(tmp_path / "no-such-bwrap"))
    with pytest.raises(SandboxError, match="unknown sandbox"):
        make_executor("docker")  # type: ignore[arg-type]
    with pytest.raises(SandboxError, match="unknown bubblewrap settings: colour"):
        make_executor("bwrap", colour="blue")


def test_factory_refuses_a_bwrap_that_cannot_create_namespaces() -> None:
    # Outside pytest's private tmp dir: the probe runs it as the first run uid.
    directory = Path(tempfile.mkdtemp(prefix="fake-bwrap-"))
    directory.chmod(0o755)
    fake = directory / "bwrap"
    fake.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && exit 0\n'
        "echo 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    try:
        with pytest.raises(SandboxError, match="No permissions to creating new namespace"):
            make_executor("bwrap", bwrap_path=str(fake))
    finally:
        shutil.rmtree(directory)
