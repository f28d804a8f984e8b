"""Preset requests the server refuses: 400 for the schema, 422 naming variant and field.

Nothing here runs code, so one live server without a worker serves the module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from automation_server.automations.schemas import AutomationCreate
from automation_server.presets.schemas import PluginPresetCreate, PromptPresetCreate
from automation_server.services import build_services
from tests.support import SqliteDatabases, live_server, settings_for, targz

PROMPT_VARIANTS = [
    {"name": "a", "weight": 1, "model": "m", "prompt": "hello"},
    {"name": "b", "weight": 1, "model": "m", "prompt": "hi {{ payload.x }}"},
]
PLUGIN_VARIANTS = [
    {
        "name": "a",
        "weight": 1,
        "model": "m",
        "plugins": [{"name": "command", "config": {"argv": ["true"]}}],
    },
    {
        "name": "b",
        "weight": 1,
        "model": "m",
        "plugins": [{"name": "fetch", "config": {"url": "http://example.com/"}}],
    },
]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, sqlite_databases: SqliteDatabases
) -> Iterator[Any]:
    data_dir: Path = tmp_path_factory.mktemp("var")
    services = build_services(settings_for(data_dir, sqlite_databases.fresh()))
    try:
        with live_server(services) as live:
            yield live
    finally:
        services.close()


@pytest.fixture(scope="module")
def http(server: Any) -> httpx.Client:
    return server.client(server.new_key("acme"))  # type: ignore[no-any-return]


def body(kind: str, **changes: Any) -> dict[str, Any]:
    variants = PROMPT_VARIANTS if kind == "prompt" else PLUGIN_VARIANTS
    result: dict[str, Any] = {"name": "v", "experiment_id": "exp", "variants": variants}
    result.update(changes)
    return result


def variant(kind: str, index: int, **changes: Any) -> list[dict[str, Any]]:
    """The kind's variants with variant ``index`` changed (a key set to None is removed)."""
    variants = [dict(v) for v in (PROMPT_VARIANTS if kind == "prompt" else PLUGIN_VARIANTS)]
    variants[index].update(changes)
    variants[index] = {k: v for k, v in variants[index].items() if v is not None}
    return variants


def plugins(*entries: dict[str, Any]) -> list[dict[str, Any]]:
    return variant("plugin", 1, plugins=list(entries))


def refused(http: httpx.Client, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    r = http.post(f"/v1/preset/{kind}", json=payload)
    assert r.status_code in (400, 422), r.text
    return {"status": r.status_code, **r.json()}


INVALID_422 = [
    ("prompt", variant("prompt", 1, model=None), "variants[1].model", "missing_model"),
    ("prompt", variant("prompt", 1, model=" "), "variants[1].model", "missing_model"),
    ("prompt", variant("prompt", 0, prompt=""), "variants[0].prompt", "empty_prompt"),
    ("prompt", variant("prompt", 0, prompt=None), "variants[0].prompt", "missing_prompt"),
    (
        "prompt",
        variant("prompt", 1, prompt="{{ payload.x "),
        "variants[1].prompt",
        "invalid_template",
    ),
    (
        "prompt",
        variant("prompt", 0, system_prompt="{% if %}"),
        "variants[0].system_prompt",
        "invalid_template",
    ),
    ("plugin", variant("plugin", 1, model=None), "variants[1].model", "missing_model"),
    ("plugin", variant("plugin", 0, plugins=None), "variants[0].plugins", "missing_plugins"),
    ("plugin", plugins({"name": "nope"}), "variants[1].plugins[0].name", "unknown_plugin"),
    (
        "plugin",
        plugins({"name": "fetch", "config": {"url": "ftp://x"}}),
        "variants[1].plugins[0].config.url",
        "invalid_plugin_config",
    ),
    (
        "plugin",
        plugins({"name": "fetch", "config": {}}),
        "variants[1].plugins[0].config.url",
        "invalid_plugin_config",
    ),
    (
        "plugin",
        plugins(
            {"name": "command", "config": {"argv": ["true"]}},
            {"name": "fetch", "config": {"url": "http://x/", "timeout_s": "fast"}},
        ),
        "variants[1].plugins[1].config.timeout_s",
        "invalid_plugin_config",
    ),
    (
        "plugin",
        plugins({"name": "command", "config": {"argv": ["true"], "shell": True}}),
        "variants[1].plugins[0].config.shell",
        "invalid_plugin_config",
    ),
    (
        "plugin",
        plugins({"name": "llm", "config": {"prompt": "{{ oops"}}),
        "variants[1].plugins[0].config.prompt",
        "invalid_plugin_config",
    ),
    (
        "plugin",
        plugins({"name": "expect", "config": {"text": "t", "regex": "("}}),
        "variants[1].plugins[0].config.regex",
        "invalid_plugin_config",
    ),
]


@pytest.mark.parametrize(("kind", "variants", "field", "code"), INVALID_422)
def test_rule_breaking_variants_answer_422_naming_the_field(
    http: httpx.Client, kind: str, variants: list[dict[str, Any]], field: str, code: str
) -> None:
    error = refused(http, kind, body(kind, variants=variants))

    assert (error["status"], error["field"], error["code"]) == (422, field, code)
    assert error["detail"].startswith(field)


def test_template_errors_say_where_in_the_template(http: httpx.Client) -> None:
    error = refused(
        http, "prompt", body("prompt", variants=variant("prompt", 1, prompt="a\n{{ x "))
    )
    assert "line 2" in error["detail"]


@pytest.mark.parametrize(
    ("kind", "changes", "field"),
    [
        ("prompt", {"colour": "red"}, "colour"),
        ("prompt", {"tarball": "blob:sha256:" + "0" * 64}, "tarball"),
        ("prompt", {"entrypoint": ["sh"]}, "entrypoint"),
        ("prompt", {"variants": variant("prompt", 0, tarball="x")}, "tarball"),
        ("prompt", {"variants": variant("prompt", 0, temperature=2.5)}, "temperature"),
        ("prompt", {"variants": variant("prompt", 0, max_tokens=0)}, "max_tokens"),
        ("plugin", {"variants": plugins({"name": "fetch", "url": "http://x/"})}, "url"),
        ("plugin", {"variants": plugins({"name": "Bad Name"})}, "name"),
    ],
)
def test_schema_violations_answer_400(
    http: httpx.Client, kind: str, changes: dict[str, Any], field: str
) -> None:
    error = refused(http, kind, body(kind, **changes))

    assert error["status"] == 400
    assert field in error["detail"]


def test_preset_fields_at_top_level_and_in_variants_conflict(http: httpx.Client) -> None:
    error = refused(http, "prompt", body("prompt", model="m"))
    assert (error["status"], error["field"], error["code"]) == (422, "model", "invalid_variants")


def test_single_variant_errors_name_the_top_level_field(http: httpx.Client) -> None:
    error = refused(http, "prompt", {"name": "single", "model": "m", "prompt": "{{"})
    assert (error["status"], error["field"]) == (422, "prompt")


def test_automation_rules_still_apply(http: httpx.Client) -> None:
    no_experiment = refused(http, "prompt", body("prompt", experiment_id=None))
    assert no_experiment["code"] == "experiment_required"
    host = refused(http, "prompt", body("prompt", network="host"))
    assert host["code"] == "host_network_not_allowed"
    duplicate = refused(http, "plugin", body("plugin", variants=variant("plugin", 1, name="a")))
    assert duplicate["field"] == "variants[1].name"


def test_presets_default_to_egress_network(http: httpx.Client) -> None:
    r = http.post("/v1/preset/prompt", json={"name": "egress", "model": "m", "prompt": "p"})
    assert r.status_code == 201, r.text
    assert r.json()["network"] == "egress"
    assert r.json()["variants"][0]["weight"] == 1


def test_user_plugins_are_checked_when_the_preset_is_created(
    server: Any, http: httpx.Client
) -> None:
    def upload(client: httpx.Client, files: dict[str, str]) -> str:
        r = client.post("/v1/uploads", content=targz(files))
        assert r.status_code == 201, r.text
        return str(r.json()["ref"])

    schema = '{"type": "object", "properties": {"n": {"type": "integer"}}}'
    good = upload(
        http, {"plugin.py": "def run(context, config):\n    return None\n", "schema.json": schema}
    )
    no_run = upload(http, {"plugin.py": "x = 1\n"})
    no_module = upload(http, {"main.py": "print()\n"})
    bad_schema = upload(http, {"plugin.py": "def run(c, k): pass\n", "schema.json": '{"type": 5}'})
    stranger = server.client(server.new_key("other-org"))
    theirs = upload(stranger, {"plugin.py": "def run(context, config):\n    return {}\n"})

    cases = [
        (
            {"name": "mine", "tarball": good, "config": {"n": "x"}},
            "variants[1].plugins[0].config.n",
            "invalid_plugin_config",
        ),
        ({"name": "mine", "tarball": no_run}, "variants[1].plugins[0].tarball", "invalid_plugin"),
        (
            {"name": "mine", "tarball": no_module},
            "variants[1].plugins[0].tarball",
            "invalid_plugin",
        ),
        (
            {"name": "mine", "tarball": bad_schema},
            "variants[1].plugins[0].tarball",
            "invalid_plugin",
        ),
        ({"name": "mine", "tarball": theirs}, "variants[1].plugins[0].tarball", "unknown_blob"),
        ({"name": "fetch", "tarball": good}, "variants[1].plugins[0].name", "plugin_name_taken"),
    ]
    for entry, field, code in cases:
        error = refused(http, "plugin", body("plugin", variants=plugins(entry)))
        assert (error["status"], error["field"], error["code"]) == (422, field, code), entry

    ok = http.post(
        "/v1/preset/plugin",
        json=body(
            "plugin",
            name="ok",
            variants=plugins({"name": "mine", "tarball": good, "config": {"n": 1}}),
        ),
    )
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize("preset", [PromptPresetCreate, PluginPresetCreate])
def test_preset_bodies_take_every_automation_field_but_the_code(preset: type[Any]) -> None:
    automation = set(AutomationCreate.__struct_fields__) - {"variants", "tarball", "entrypoint"}
    fields = set(preset.__struct_fields__)
    assert automation <= fields
    defaults = msgspec.json.decode(msgspec.json.encode(AutomationCreate(name="x")))
    mine = msgspec.json.decode(msgspec.json.encode(preset(name="x")))
    assert {k: mine[k] for k in automation} == {
        **{k: defaults[k] for k in automation},
        "network": "egress",
    }


@pytest.mark.parametrize("kind", ["prompt", "plugin"])
def test_example_bodies_are_accepted(http: httpx.Client, kind: str) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / f"{kind}-ab" / "body.json"
    r = http.post(f"/v1/preset/{kind}", content=example.read_bytes())

    assert r.status_code == 201, r.text
    assert [v["source"]["preset"] for v in r.json()["variants"]] == [kind, kind]
