"""Plugin preset end to end: built-in and uploaded plugins running in bubblewrap."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.presets_support import (
    StubLLM,
    create_preset,
    llm_env,
    preset_stack,
    reply_for,
    run_variant,
    running_stub,
    unique,
)
from tests.support import SqliteDatabases

USER_PLUGIN = """
def run(context, config):
    context.log("greeting " + config["who"])
    return {
        "outputs": {"greeting": f"hello {config['who']} from {context.run['variant']}",
                    "seen": context.payload.get("n")},
        "metrics": {"answer": 42},
    }
"""
USER_SCHEMA = """{"type": "object", "properties": {"who": {"type": "string"}},
 "required": ["who"], "additionalProperties": false, "description": "Greets."}"""


@pytest.fixture(scope="module")
def stub() -> Iterator[StubLLM]:
    with running_stub() as running:
        yield running


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, sqlite_databases: SqliteDatabases
) -> Iterator[Stack]:
    yield from preset_stack(tmp_path_factory, sqlite_databases)


def plugin_files(stack: Stack, digest: str) -> set[str]:
    """The files under ``plugins/`` in a variant's stored tarball."""
    data = stack.services.blobs.read(digest)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.removeprefix("plugins/") for m in tar if m.name.startswith("plugins/")}


def plugin_names(stack: Stack, digest: str) -> set[str]:
    return {name.split("/")[0] for name in plugin_files(stack, digest)}


def test_plugins_run_in_order_and_report_prefixed_results(stack: Stack, stub: StubLLM) -> None:
    model = unique("plugin-model")
    prompt = "Status {{ results.fetch.outputs.status }} for {{ payload.who }}"
    automation = create_preset(
        stack,
        "plugin",
        {
            "name": unique("pipeline"),
            "experiment_id": unique("pipeline-exp"),
            **llm_env(stub),
            "variants": [
                {
                    "name": "full",
                    "weight": 1,
                    "model": model,
                    "plugins": [
                        {"name": "fetch", "config": {"url": stub.url + "/ping"}},
                        {"name": "llm", "config": {"prompt": prompt}},
                        {
                            "name": "command",
                            "config": {"argv": ["python3", "-c", "print('x' * 9)"]},
                        },
                        {
                            "name": "expect",
                            "config": {
                                "text": "{{ results.llm.outputs.reply }}",
                                "contains": ["200", "ada"],
                                "regex": "^nope",
                            },
                        },
                        {"name": "command", "config": {"argv": ["true"]}},
                    ],
                },
                {
                    "name": "light",
                    "weight": 1,
                    "model": model,
                    "plugins": [
                        {"name": "command", "config": {"argv": ["true"]}},
                    ],
                },
            ],
        },
    )
    full, light = automation["variants"]
    assert plugin_names(stack, full["digest"]) == {"fetch", "llm", "command", "expect"}
    assert plugin_names(stack, light["digest"]) == {"command"}
    assert full["source"]["preset"] == "plugin"
    assert full["source"]["config"]["plugins"][0] == {
        "name": "fetch",
        "config": {"url": stub.url + "/ping"},
    }

    run = run_variant(stack, automation, "full", {"who": "ada"})

    assert run["status"] == "succeeded", stack.log(run["id"])
    outputs, metrics = run["outputs"], run["metrics"]
    assert outputs["plugins"] == ["fetch", "llm", "command", "expect", "command-2"]
    # llm saw fetch's result: it ran after fetch, and its prompt was rendered.
    (call,) = stub.chats(model)
    assert call["body"]["messages"][-1]["content"] == "Status 200 for ada"
    assert outputs["llm.reply"] == reply_for(model, "Status 200 for ada")
    assert metrics["fetch.status"] == 200
    assert metrics["fetch.latency_ms"] > 0
    assert metrics["llm.total_tokens"] > 0
    assert metrics["command.exit_code"] == 0
    assert metrics["command.stdout_bytes"] == 10
    assert metrics["command-2.exit_code"] == 0
    assert metrics["expect.score"] == pytest.approx(2 / 3)
    assert outputs["expect.failed"] == ["regex '^nope'"]


def test_failing_plugin_stops_the_run_with_its_name(stack: Stack, stub: StubLLM) -> None:
    model = unique("never-called")
    automation = create_preset(
        stack,
        "plugin",
        {
            "name": unique("stops"),
            **llm_env(stub),
            "model": model,
            "plugins": [
                {"name": "fetch", "config": {"url": stub.url + "/ping"}},
                {"name": "command", "config": {"argv": ["sh", "-c", "echo oops >&2; exit 3"]}},
                {"name": "llm", "config": {"prompt": "never sent"}},
            ],
        },
    )
    run = run_variant(stack, automation, "default", {})

    assert run["status"] == "failed"
    assert run["exit_code"] == 1
    assert run["outputs"]["failed_plugin"] == "command"
    assert "plugin 'command' failed" in run["outputs"]["error"]
    assert "exited with 3" in run["outputs"]["error"]
    assert "plugin 'command' failed" in stack.log(run["id"])
    assert run["metrics"]["command.exit_code"] == 3  # recorded before the check failed it
    assert run["metrics"]["fetch.status"] == 200
    assert stub.chats(model) == []


def test_fetch_fails_on_an_error_status(stack: Stack, stub: StubLLM) -> None:
    automation = create_preset(
        stack,
        "plugin",
        {
            "name": unique("fetch-503"),
            **llm_env(stub),
            "model": "m",
            "plugins": [{"name": "fetch", "config": {"url": stub.url + "/status/503"}}],
        },
    )
    run = run_variant(stack, automation, "default", {})

    assert run["status"] == "failed"
    assert run["outputs"]["failed_plugin"] == "fetch"
    assert "HTTP 503" in run["outputs"]["error"]
    assert run["metrics"]["fetch.status"] == 503


def test_user_plugin_from_an_uploaded_tarball(stack: Stack, stub: StubLLM) -> None:
    ref = stack.upload({"plugin.py": USER_PLUGIN, "schema.json": USER_SCHEMA, "notes.txt": "x"})
    automation = create_preset(
        stack,
        "plugin",
        {
            "name": unique("mine"),
            "experiment_id": unique("mine-exp"),
            **llm_env(stub),
            "variants": [
                {
                    "name": "with-mine",
                    "weight": 1,
                    "model": "m",
                    "plugins": [
                        {"name": "command", "config": {"argv": ["true"]}},
                        {"name": "mine", "tarball": ref, "config": {"who": "grace"}},
                    ],
                },
                {
                    "name": "other",
                    "weight": 1,
                    "model": "m",
                    "plugins": [{"name": "mine", "tarball": ref, "config": {"who": "alan"}}],
                },
            ],
        },
    )
    variant = automation["variants"][0]
    assert plugin_names(stack, variant["digest"]) == {"command", "mine"}
    mine = {f for f in plugin_files(stack, variant["digest"]) if f.startswith("mine/")}
    assert mine == {"mine/plugin.py", "mine/schema.json"}  # not notes.txt
    assert variant["source"]["config"]["plugins"][1] == {
        "name": "mine",
        "tarball": ref,
        "config": {"who": "grace"},
    }

    run = run_variant(stack, automation, "with-mine", {"n": 5})

    assert run["status"] == "succeeded", stack.log(run["id"])
    assert run["outputs"]["mine.greeting"] == "hello grace from with-mine"
    assert run["outputs"]["mine.seen"] == 5
    assert run["metrics"]["mine.answer"] == 42
    assert "[mine] greeting grace" in stack.log(run["id"])


def test_lists_the_builtin_plugins_with_their_config_schemas(stack: Stack) -> None:
    r = stack.http.get("/v1/preset/plugins")

    assert r.status_code == 200
    items = {item["name"]: item for item in r.json()["items"]}
    assert {"llm", "fetch", "command", "expect"} <= set(items)
    for item in items.values():
        assert item["description"]
        assert item["config_schema"]["type"] == "object"
    assert items["fetch"]["config_schema"]["required"] == ["url"]
    assert "prompt" in items["llm"]["config_schema"]["properties"]
