"""Prompt preset end to end: real server, worker and bubblewrap, a stub model endpoint."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.presets_support import (
    COMPLETION_TOKENS,
    StubLLM,
    create_preset,
    llm_env,
    preset_stack,
    reply_for,
    run_variant,
    running_stub,
    unique,
)
from tests.e2e.sandbox_support import host_address
from tests.support import SqliteDatabases, skip_or_fail


@pytest.fixture(scope="module")
def stub() -> Iterator[StubLLM]:
    with running_stub() as running:
        yield running


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, sqlite_databases: SqliteDatabases
) -> Iterator[Stack]:
    yield from preset_stack(tmp_path_factory, sqlite_databases)


def test_each_variant_calls_its_own_model_with_its_rendered_prompt(
    stack: Stack, stub: StubLLM
) -> None:
    model_a, model_b = unique("model-a"), unique("model-b")
    automation = create_preset(
        stack,
        "prompt",
        {
            "name": unique("triage"),
            "experiment_id": unique("triage-exp"),
            **llm_env(stub),
            "variants": [
                {
                    "name": "control",
                    "weight": 50,
                    "model": model_a,
                    "prompt": "Summarize ticket {{ payload.ticket.id }}: {{ payload.ticket.text }}",
                },
                {
                    "name": "terse",
                    "weight": 50,
                    "model": model_b,
                    "prompt": "TL;DR {{ payload.ticket.text }}",
                    "system_prompt": "Answer in five words for {{ run.variant }}.",
                    "temperature": 0.2,
                    "max_tokens": 50,
                },
            ],
        },
    )
    payload = {"ticket": {"id": 7, "text": "disk is full"}}
    runs = {name: run_variant(stack, automation, name, payload) for name in ("control", "terse")}

    for name, run in runs.items():
        assert run["status"] == "succeeded", (run, stack.log(run["id"]))
        assert run["variant"] == name
    (call_a,) = stub.chats(model_a)
    (call_b,) = stub.chats(model_b)
    assert call_a["path"] == "/v1/chat/completions"
    assert call_a["headers"]["authorization"] == "Bearer sk-test-0123456789"
    assert call_a["body"]["messages"] == [
        {"role": "user", "content": "Summarize ticket 7: disk is full"}
    ]
    assert "temperature" not in call_a["body"]
    assert call_b["body"]["messages"] == [
        {"role": "system", "content": "Answer in five words for terse."},
        {"role": "user", "content": "TL;DR disk is full"},
    ]
    assert (call_b["body"]["temperature"], call_b["body"]["max_tokens"]) == (0.2, 50)

    control = runs["control"]
    sent = "Summarize ticket 7: disk is full"
    assert control["outputs"]["reply"] == reply_for(model_a, sent)
    words = len(sent.split())
    assert control["metrics"]["prompt_tokens"] == words
    assert control["metrics"]["completion_tokens"] == COMPLETION_TOKENS
    assert control["metrics"]["total_tokens"] == words + COMPLETION_TOKENS
    assert control["metrics"]["latency_ms"] > 0
    assert runs["terse"]["outputs"]["reply"] == reply_for(model_b, "TL;DR disk is full")


def test_variants_record_their_preset_source_and_own_tarballs(stack: Stack, stub: StubLLM) -> None:
    automation = create_preset(
        stack,
        "prompt",
        {
            "name": unique("sources"),
            "experiment_id": unique("sources-exp"),
            **llm_env(stub),
            "variants": [
                {"name": "a", "weight": 1, "model": "m", "prompt": "one"},
                {"name": "b", "weight": 1, "model": "m", "prompt": "two", "temperature": 1},
            ],
        },
    )
    a, b = automation["variants"]
    assert a["source"] == {
        "kind": "preset",
        "preset": "prompt",
        "config": {"model": "m", "prompt": "one"},
    }
    assert b["source"]["config"] == {"model": "m", "prompt": "two", "temperature": 1}
    assert a["digest"] != b["digest"]
    assert a["entrypoint"] == ["python3", "main.py"]
    assert automation["network"] == "host"


def test_upstream_error_fails_the_run_with_its_status(stack: Stack, stub: StubLLM) -> None:
    model = unique("fail-500")
    automation = create_preset(
        stack,
        "prompt",
        {"name": unique("broken"), **llm_env(stub), "model": model, "prompt": "hello"},
    )
    run = run_variant(stack, automation, "default", {})

    assert run["status"] == "failed"
    assert run["exit_code"] == 1
    assert "HTTP 500" in run["outputs"]["error"]
    assert run["outputs"]["upstream_status"] == 500
    assert "HTTP 500" in stack.log(run["id"])
    assert "upstream exploded" in stack.log(run["id"])
    assert "reply" not in run["outputs"]
    assert len(stub.chats(model)) == 1


def test_missing_payload_field_fails_the_run_naming_it(stack: Stack, stub: StubLLM) -> None:
    model = unique("strict")
    automation = create_preset(
        stack,
        "prompt",
        {
            "name": unique("strict"),
            **llm_env(stub),
            "model": model,
            "prompt": "Ticket: {{ payload.ticket }}",
        },
    )
    assert [v["name"] for v in automation["variants"]] == ["default"]

    run = run_variant(stack, automation, "default", {"other": 1})

    assert run["status"] == "failed"
    assert "ticket" in run["outputs"]["error"]
    assert "prompt" in stack.log(run["id"])
    assert stub.chats(model) == []


def test_identical_preset_requests_give_identical_digests(stack: Stack, stub: StubLLM) -> None:
    def create(name: str, variant: dict[str, Any]) -> str:
        body = {"name": name, **llm_env(stub), **variant}
        return str(create_preset(stack, "prompt", body)["variants"][0]["digest"])

    config = {"model": "m", "prompt": "Hi {{ payload.who }}", "temperature": 0.5}
    first = create(unique("same-1"), config)
    # Same fields in another order, other automation fields: the same tarball.
    second = create(unique("same-2"), dict(reversed(config.items())))
    other = create(unique("other"), {**config, "temperature": 0.6})

    assert first == second
    assert other != first


def test_default_egress_network_reaches_the_model(stack: Stack) -> None:
    address = host_address()
    if address is None or shutil.which("slirp4netns") is None:
        skip_or_fail("needs slirp4netns and a non-loopback host address to stand in for the model")
    model = unique("egress")
    with running_stub(address) as outside:
        automation = create_preset(
            stack,
            "prompt",
            {
                "name": unique("egress"),
                "env": {"LLM_BASE_URL": outside.base_url},
                "model": model,
                "prompt": "over {{ payload.via }}",
            },
        )
        assert automation["network"] == "egress"
        run = run_variant(stack, automation, "default", {"via": "slirp"})

    assert run["status"] == "succeeded", stack.log(run["id"])
    assert run["outputs"]["reply"] == reply_for(model, "over slirp")
    assert "authorization" not in outside.chats(model)[0]["headers"]  # no key, no header
