"""The ``automation`` CLI against a real server: every command, its JSON, its errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from automation_sdk.cli import main
from automation_sdk.client import Client
from automation_sdk.models import Upload
from click.testing import CliRunner, Result

from tests.e2e.sdk_server import AUTOMATION_CLI, Served, serve
from tests.support import free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("cli")) as s:
        yield s


@pytest.fixture(scope="module")
def key(served: Served) -> str:
    return served.new_key("acme")


@pytest.fixture
def cli(served: Served, key: str) -> Any:
    runner = CliRunner()
    env = {"AUTOMATION_URL": served.base_url, "AUTOMATION_API_KEY": key, "COLUMNS": "200"}

    def invoke(*args: str, **kwargs: Any) -> Result:
        return runner.invoke(main, list(args), env=env, catch_exceptions=False, **kwargs)

    return invoke


@pytest.fixture
def api(served: Served, key: str) -> Iterator[Client]:
    with Client(served.base_url, key) as client:
        yield client


@pytest.fixture
def uploads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the tarballs the CLI uploads (the real upload still happens)."""
    sizes: list[int] = []
    real = Client.upload

    def counting(self: Client, data: bytes) -> Upload:
        sizes.append(len(data))
        return real(self, data)

    monkeypatch.setattr(Client, "upload", counting)
    return sizes


def _code(root: Path, name: str, body: str) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "main.py").write_text(body)
    return path


def _name() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ---- pack ----------------------------------------------------------------------


def test_pack_prints_a_stable_digest_and_writes_the_tarball(cli: Any, tmp_path: Path) -> None:
    src = _code(tmp_path, "src", "print(1)\n")
    first = cli("pack", str(src), "-o", str(tmp_path / "a.tar.gz"))
    assert first.exit_code == 0
    digest = first.stdout.strip()
    data = (tmp_path / "a.tar.gz").read_bytes()
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    os.utime(src / "main.py", (1, 1))
    assert cli("pack", str(src)).stdout.strip() == digest
    packed = _json(cli("pack", str(src), "--json"))
    assert packed["digest"] == digest and packed["size"] == len(data)


# ---- deploy --------------------------------------------------------------------


def test_deploy_twice_without_change_uploads_nothing_and_keeps_the_revision(
    cli: Any, api: Client, uploads: list[int], tmp_path: Path
) -> None:
    a, b = _code(tmp_path, "a", "print('a')\n"), _code(tmp_path, "b", "print('b')\n")
    name = _name()
    args = ["deploy", name, "--experiment", f"{name}-exp"]
    args += ["--variant", f"control={a}:50", "--variant", f"terse={b}:50"]
    created = cli(*args)
    assert created.exit_code == 0, created.output
    assert "created automation" in created.stdout and len(uploads) == 2
    auto = api.find_automation(name)
    assert auto is not None and auto.revision == 1
    assert [(v.name, v.weight) for v in auto.variants] == [("control", 50), ("terse", 50)]

    again = cli(*args)
    assert again.exit_code == 0 and "up to date" in again.stdout
    assert len(uploads) == 2  # nothing new uploaded
    assert api.get_automation(auto.id).revision == 1
    assert [r.revision for r in api.revisions(auto.id)] == [1]


def test_changing_one_directory_uploads_one_tarball_and_makes_one_revision(
    cli: Any, api: Client, uploads: list[int], tmp_path: Path
) -> None:
    a, b = _code(tmp_path, "a", "print('a')\n"), _code(tmp_path, "b", "print('b')\n")
    name = _name()
    args = ["deploy", name, "--experiment", "e1", "--variant", f"control={a}:50"]
    args += ["--variant", f"terse={b}:50"]
    assert cli(*args).exit_code == 0
    before = api.find_automation(name)
    assert before is not None
    uploads.clear()

    (b / "main.py").write_text("print('b2')\n")
    changed = cli(*args)
    assert changed.exit_code == 0, changed.output
    assert len(uploads) == 1 and "uploaded terse" in changed.stdout
    after = api.get_automation(before.id)
    assert after.revision == before.revision + 1
    assert after.variant("control") == before.variant("control")
    assert after.variant("terse").digest != before.variant("terse").digest  # type: ignore[union-attr]

    # A weight change alone uploads nothing and makes one more revision.
    reweighted = cli("deploy", name, "--variant", f"control={a}:90", "--variant", f"terse={b}:10")
    assert reweighted.exit_code == 0 and len(uploads) == 1
    latest = api.get_automation(before.id)
    assert latest.revision == after.revision + 1
    assert {v.name: v.weight for v in latest.variants} == {"control": 90, "terse": 10}


def test_deploy_a_bare_directory_with_trigger_env_secret_and_timeout(
    cli: Any, api: Client, tmp_path: Path
) -> None:
    src = _code(tmp_path, "src", "print('x')\n")
    name = _name()
    result = cli(
        "deploy", name, str(src), "--cron", "0 9 * * 1-5", "--timezone", "Europe/Berlin",
        "--env", "LEVEL=debug", "--secret", "TOKEN=s3cret", "--timeout", "45",
        "--entrypoint", "python3 -u main.py", "--json",
    )  # fmt: skip
    auto = _json(result)
    assert auto["name"] == name and [v["name"] for v in auto["variants"]] == ["default"]
    assert auto["trigger"]["schedule"] == "0 9 * * 1-5"
    assert auto["trigger"]["timezone"] == "Europe/Berlin" and auto["next_run_at"]
    assert auto["env"] == {"LEVEL": "debug"} and auto["secrets"] == ["TOKEN"]
    assert auto["timeout_s"] == 45
    assert auto["variants"][0]["entrypoint"] == ["python3", "-u", "main.py"]
    assert "s3cret" not in result.stdout

    switched = _json(cli("deploy", name, str(src), "--interval", "3600", "--json"))
    assert switched["trigger"]["type"] == "interval" and switched["revision"] == 1


def test_deploy_webhook_shows_the_secret_once(cli: Any, tmp_path: Path) -> None:
    src = _code(tmp_path, "src", "pass\n")
    result = cli("deploy", _name(), str(src), "--webhook")
    assert result.exit_code == 0 and "webhook secret" in result.stdout
    assert "whsec_" in result.stdout


def test_deploy_invalid_cron_shows_field_and_detail(cli: Any, tmp_path: Path) -> None:
    src = _code(tmp_path, "src", "pass\n")
    result = cli("deploy", _name(), str(src), "--cron", "61 * * * *")
    assert result.exit_code == 1
    assert "trigger.schedule" in result.stderr and "minute" in result.stderr
    as_json = cli("deploy", _name(), str(src), "--cron", "61 * * * *", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["field"] == "trigger.schedule"


def test_deploy_usage_errors_exit_2(cli: Any, tmp_path: Path) -> None:
    src = _code(tmp_path, "src", "pass\n")
    assert cli("deploy", "x", str(src), "--cron", "* * * * *", "--manual").exit_code == 2
    assert cli("deploy", "x").exit_code == 2
    assert cli("deploy", "x", "--variant", "Bad=nowhere").exit_code == 2
    twice = cli("deploy", "x", "--variant", f"a={src}", "--variant", f"a={src}")
    assert twice.exit_code == 2 and "unique" in twice.stderr


def test_deploy_declares_metric_directions_and_changes_them_only_when_different(
    cli: Any, api: Client, tmp_path: Path
) -> None:
    src = _code(tmp_path, "src", "pass\n")
    name = _name()
    args = ["deploy", name, str(src), "--metric", "latency_ms=lower:ms", "--metric", "score=higher"]
    assert cli(*args).exit_code == 0
    auto = api.find_automation(name)
    assert auto is not None
    assert auto.metrics == {
        "latency_ms": {"direction": "lower", "unit": "ms"},
        "score": {"direction": "higher"},
    }
    again = cli(*args)
    assert again.exit_code == 0 and "up to date" in again.stdout
    flipped = cli("deploy", name, str(src), "--metric", "latency_ms=higher")
    assert flipped.exit_code == 0
    assert api.get_automation(auto.id).metrics == {"latency_ms": {"direction": "higher"}}
    bad = cli("deploy", name, str(src), "--metric", "latency_ms=sideways")
    assert bad.exit_code == 2 and "NAME=higher|lower[:UNIT]" in bad.stderr
    refused = cli("deploy", name, str(src), "--metric", f"latency_ms=lower:{'u' * 17}")
    assert refused.exit_code == 1 and "metrics.latency_ms.unit" in refused.stderr


def test_deploy_turns_a_bandit_on_and_off(cli: Any, api: Client, tmp_path: Path) -> None:
    a, b = _code(tmp_path, "a", "pass\n"), _code(tmp_path, "b", "pass\n")
    name = _name()
    base = [
        "deploy",
        name,
        "--experiment",
        f"{name}-exp",
        "--variant",
        f"a={a}",
        "--variant",
        f"b={b}",
    ]
    assert cli(*base, "--bandit", "success_rate:20:500").exit_code == 0
    auto = api.find_automation(name)
    assert auto is not None
    assert auto.allocation == {
        "mode": "bandit",
        "metric": "success_rate",
        "every_runs": 20,
        "min_weight": 500,
    }
    assert "up to date" in cli(*base, "--bandit", "success_rate:20:500").stdout
    undeclared = cli(*base, "--bandit", "latency_ms")
    assert undeclared.exit_code == 1 and "allocation.metric" in undeclared.stderr
    declared = cli(*base, "--metric", "latency_ms=lower", "--bandit", "latency_ms")
    assert declared.exit_code == 0
    assert api.get_automation(auto.id).allocation["every_runs"] == 50
    assert cli(*base, "--bandit", "latency_ms:x").exit_code == 2
    assert cli(*base, "--bandit", "off").exit_code == 0
    assert api.get_automation(auto.id).allocation == {"mode": "fixed"}


# ---- dispatch, runs, logs, list ----------------------------------------------------


@pytest.fixture
def greeter(cli: Any, tmp_path: Path) -> str:
    code = (
        "import sys\n"
        "from automation_sdk import context, report\n"
        "n = context.payload.get('n', 1)\n"
        "print('hello', n, 'from', context.variant)\n"
        "report.metric('doubled', n * 2)\n"
        "sys.exit(0 if n >= 0 else 4)\n"
    )
    src = _code(tmp_path, "greeter", code)
    name = _name()
    assert cli("deploy", name, str(src)).exit_code == 0
    return name


def test_dispatch_wait_shows_status_exit_code_and_metrics(
    cli: Any, greeter: str, tmp_path: Path
) -> None:
    (tmp_path / "p.json").write_text('{"n": 5}')
    result = cli("dispatch", greeter, "--payload", f"@{tmp_path / 'p.json'}", "--wait")
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.stdout and "doubled" in result.stdout and "10" in result.stdout


def test_dispatch_wait_exits_1_when_the_run_fails(cli: Any, greeter: str) -> None:
    result = cli("dispatch", greeter, "--payload", '{"n": -1}', "--wait", "--json")
    assert result.exit_code == 1
    run = json.loads(result.stdout)
    assert run["status"] == "failed" and run["exit_code"] == 4


def test_dispatch_without_wait_queues_and_json_is_the_run(cli: Any, greeter: str) -> None:
    run = _json(cli("dispatch", greeter, "--variant", "default", "--json"))
    assert run["status"] in ("queued", "running", "succeeded")
    assert run["assignment"]["method"] == "forced"
    same = [
        _json(cli("dispatch", greeter, "--idempotency-key", "k1", "--json"))["id"] for _ in range(2)
    ]
    assert same[0] == same[1]


def test_dispatch_bad_payload_is_a_usage_error(cli: Any, greeter: str) -> None:
    assert cli("dispatch", greeter, "--payload", "[1, 2]").exit_code == 2
    assert cli("dispatch", greeter, "--payload", "{nope").exit_code == 2
    assert cli("dispatch", "no-such-automation").exit_code == 1


def test_runs_table_and_json(cli: Any, greeter: str) -> None:
    ran = _json(cli("dispatch", greeter, "--wait", "--json"))
    table = cli("runs", "--automation", greeter, "--limit", "5")
    assert table.exit_code == 0
    assert ran["id"] in table.stdout and greeter in table.stdout and "succeeded" in table.stdout
    listed = _json(cli("runs", "--automation", greeter, "--status", "succeeded", "--json"))
    assert ran["id"] in [r["id"] for r in listed["items"]]
    assert {r["status"] for r in listed["items"]} == {"succeeded"}
    one = _json(cli("runs", "--limit", "1", "--json"))
    assert len(one["items"]) == 1


def test_logs_and_follow(cli: Any, greeter: str) -> None:
    run = _json(cli("dispatch", greeter, "--payload", '{"n": 3}', "--json"))
    followed = cli("logs", run["id"], "--follow")
    assert followed.exit_code == 0 and followed.stdout == "hello 3 from default\n"
    assert cli("logs", run["id"]).stdout == "hello 3 from default\n"
    chunks = [json.loads(line) for line in cli("logs", run["id"], "--json").stdout.splitlines()]
    assert "".join(c["log"] for c in chunks) == "hello 3 from default\n"
    missing = cli("logs", str(uuid.uuid4()))
    assert missing.exit_code == 1 and "404" in missing.stderr


def test_list_shows_automations(cli: Any, greeter: str) -> None:
    assert greeter in cli("list").stdout
    names = [a["name"] for a in _json(cli("list", "--json"))["items"]]
    assert greeter in names


# ---- global options and errors -----------------------------------------------------


def test_global_options_work_before_and_after_the_command(served: Served, key: str) -> None:
    runner = CliRunner()
    env = {"AUTOMATION_URL": "http://127.0.0.1:9", "AUTOMATION_API_KEY": "ak_bad_key"}
    after = runner.invoke(
        main, ["runs", "--json", "--url", served.base_url, "--api-key", key], env=env
    )
    before = runner.invoke(
        main, ["--json", "--url", served.base_url, "--api-key", key, "runs"], env=env
    )
    assert after.exit_code == before.exit_code == 0, after.output + before.output
    assert json.loads(after.stdout) == json.loads(before.stdout)


def test_unreachable_server_says_how_to_start_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        main, ["runs"], env={"AUTOMATION_URL": url, "AUTOMATION_API_KEY": "k"}
    )
    assert result.exit_code == 1
    assert f"cannot reach {url}" in result.stderr and "make serve" in result.stderr


def test_missing_or_bad_key_says_how_to_make_one(served: Served) -> None:
    runner = CliRunner()
    missing = runner.invoke(
        main, ["runs"], env={"AUTOMATION_URL": served.base_url, "AUTOMATION_API_KEY": ""}
    )
    bad = runner.invoke(main, ["runs", "--url", served.base_url, "--api-key", "ak_abcdefgh_nope"])
    for result in (missing, bad):
        assert result.exit_code == 1
        assert "AUTOMATION_API_KEY" in result.stderr and "create-key" in result.stderr


def test_console_script_and_shell_completion(served: Served, key: str) -> None:
    env = {**os.environ, "AUTOMATION_URL": served.base_url, "AUTOMATION_API_KEY": key}
    listed = subprocess.run(
        [AUTOMATION_CLI, "list", "--json"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0 and "items" in json.loads(listed.stdout)
    script = subprocess.run(
        [AUTOMATION_CLI], env={**env, "_AUTOMATION_COMPLETE": "bash_source"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert script.returncode == 0 and "_automation_completion" in script.stdout
    words = subprocess.run(
        [AUTOMATION_CLI],
        env={**env, "_AUTOMATION_COMPLETE": "bash_complete", "COMP_WORDS": "automation dep",
             "COMP_CWORD": "1"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert "deploy" in words.stdout


# ---- environments ----------------------------------------------------------------


def test_deploy_prints_each_variants_environment_and_runs_use_it(cli: Any, tmp_path: Path) -> None:
    script = "import greet, shout\nprint('greet', greet.__version__, 'shout', shout.__version__)\n"
    src = _code(tmp_path, "with-deps", script)
    (src / "requirements.txt").write_text("greet==1.0\n")
    name = _name()
    first = cli("deploy", name, str(src))
    assert first.exit_code == 0, first.output
    assert "variant default: environment" in first.output and "2 packages" in first.output
    again = cli("deploy", name, str(src))
    assert "up to date" in again.output and "revision 1" in again.output
    run = _json(cli("dispatch", name, "--wait", "--json"))
    assert run["status"] == "succeeded" and run["environment_digest"].startswith("sha256:")
    assert "greet 1.0 shout 2.1" in cli("logs", run["id"]).output
    listed = cli("runs", "--automation", name)
    assert run["environment_digest"].removeprefix("sha256:")[:12] in listed.output
