"""Variants' Python dependencies locked at save: hermetic wheels, real uv, both databases."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from automation_server.services import build_services
from tests.support import LiveServer, live_server, settings_for, targz
from tests.wheels import make_sdist, make_wheel


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    d = tmp_path / "wheels"
    make_wheel(d, "greet", "1.0", requires=["shout>=2"])
    make_wheel(d, "greet", "2.0")
    make_wheel(d, "shout", "2.1")
    make_sdist(d, "legacy", "1.0", tmp_path / "setup-py-ran")
    return d


@pytest.fixture
def server(data_dir: Path, database_url: str, wheelhouse: Path) -> Iterator[LiveServer]:
    env = {"AUTOMATION_PACKAGE_INDEX_URL": "none", "AUTOMATION_PACKAGE_FIND_LINKS": wheelhouse}
    services = build_services(settings_for(data_dir, database_url, env=env))
    try:
        with live_server(services) as live:
            yield live
    finally:
        services.close()


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


def upload(http: httpx.Client, files: dict[str, str]) -> str:
    r = http.post("/v1/uploads", content=targz({"main.py": "print(1)", **files}))
    assert r.status_code == 201, r.text
    return str(r.json()["ref"])


def create(http: httpx.Client, name: str, **body: Any) -> httpx.Response:
    return http.post("/v1/automations", json={"name": name, **body})


def test_requirements_lock_into_an_environment_with_its_transitive_packages(
    http: httpx.Client,
) -> None:
    ref = upload(http, {})
    r = create(
        http, "envs", variants=[{"name": "a", "tarball": ref, "requirements": ["greet==1.0"]}]
    )
    assert r.status_code == 201, r.text
    variant = r.json()["variants"][0]
    env = variant["environment"]
    assert env["digest"].startswith("sha256:") and env["python"].startswith("3.")
    assert env["packages"] == [
        {"name": "greet", "version": "1.0"},
        {"name": "shout", "version": "2.1"},
    ]
    assert variant["requirements"] == ["greet==1.0"] and variant["requirements_source"] == "body"
    lock = http.get(f"/v1/environments/{env['digest']}")
    assert lock.status_code == 200 and lock.headers["content-type"].startswith("text/plain")
    assert "sha256:" + hashlib.sha256(lock.content).hexdigest() == env["digest"]
    assert lock.text.splitlines()[0].startswith("greet==1.0 --hash=sha256:")
    run = http.post(f"/v1/automations/{r.json()['id']}/dispatch").json()
    assert run["environment_digest"] == env["digest"]


def test_a_requirements_file_and_an_equal_list_share_one_digest_across_automations(
    http: httpx.Client, server: LiveServer
) -> None:
    from_file = create(
        http, "from-file", tarball=upload(http, {"requirements.txt": "# pins\ngreet==1.0\n"})
    )
    from_list = create(
        http,
        "from-list",
        variants=[{"name": "x", "tarball": upload(http, {}), "requirements": ["greet==1.0"]}],
    )
    assert from_file.status_code == 201, from_file.text
    a = from_file.json()["variants"][0]
    b = from_list.json()["variants"][0]
    assert a["requirements_source"] == "requirements.txt"
    assert a["environment"]["digest"] == b["environment"]["digest"]
    other = server.client(server.new_key("other-org"))
    assert other.get(f"/v1/environments/{a['environment']['digest']}").status_code == 404


def test_unchanged_requirements_keep_the_lock_and_changed_ones_make_a_revision(
    http: httpx.Client,
) -> None:
    ref = upload(http, {})
    auto = create(
        http, "patch-env", variants=[{"name": "a", "tarball": ref, "requirements": ["greet==1.0"]}]
    ).json()
    same = http.patch(
        f"/v1/automations/{auto['id']}",
        json={"variants": [{"name": "a", "requirements": ["greet==1.0"]}]},
    )
    assert same.status_code == 200 and same.json()["revision"] == auto["revision"]
    changed = http.patch(
        f"/v1/automations/{auto['id']}",
        json={"variants": [{"name": "a", "requirements": ["greet==2.0"]}]},
    ).json()
    assert changed["revision"] == auto["revision"] + 1
    assert changed["variants"][0]["environment"]["packages"] == [
        {"name": "greet", "version": "2.0"}
    ]
    revisions = http.get(f"/v1/automations/{auto['id']}/revisions").json()["items"]
    digests = [r["variants"][0]["environment_digest"] for r in revisions]
    assert digests[0] == changed["variants"][0]["environment"]["digest"] != digests[-1]


BAD_LINES = [
    ("greet==9.9", "unresolvable_requirements", "greet"),
    ("legacy", "source_only_package", "legacy"),
    ("https://example.com/pkg.whl", "invalid_requirements", "URLs"),
    ("greet @ https://example.com/greet.whl", "invalid_requirements", "https"),
    ("./local/pkg", "invalid_requirements", "local paths"),
    ("-e .", "invalid_requirements", "editable"),
    ("-r other.txt", "invalid_requirements", "nested"),
    ("--index-url https://evil.example/simple", "invalid_requirements", "index"),
    ("--extra-index-url https://evil.example/simple", "invalid_requirements", "index"),
    ("--find-links /tmp", "invalid_requirements", "find-links"),
    ("greet===", "invalid_requirements", "line 1"),
]


@pytest.mark.parametrize(("line", "code", "named"), BAD_LINES)
def test_bad_requirements_are_refused_and_nothing_is_created(
    http: httpx.Client, line: str, code: str, named: str, tmp_path: Path
) -> None:
    ref = upload(http, {})
    r = create(http, "refused", variants=[{"name": "a", "tarball": ref, "requirements": [line]}])
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == code and body["field"] == "variants[0].requirements"
    assert named in body["detail"]
    assert http.get("/v1/automations", params={"name": "refused"}).json()["items"] == []
    assert not (tmp_path / "setup-py-ran").exists()  # no package code ever ran


def test_a_bad_requirements_file_is_named_and_an_oversized_one_refused(http: httpx.Client) -> None:
    r = create(http, "file-bad", tarball=upload(http, {"requirements.txt": "greet==1.0\n-e .\n"}))
    assert r.status_code == 422 and "line 2" in r.json()["detail"], r.text
    big = "greet==1.0\n" + "# padding\n" * 7000
    r = create(http, "file-big", tarball=upload(http, {"requirements.txt": big}))
    assert r.status_code == 422 and "65536" in r.json()["detail"], r.text


def test_an_unreachable_index_answers_503_that_says_so(data_dir: Path, database_url: str) -> None:
    env = {
        "AUTOMATION_PACKAGE_INDEX_URL": "http://127.0.0.1:9/simple",
        "AUTOMATION_RESOLVE_TIMEOUT_S": "20",
    }
    services = build_services(settings_for(data_dir, database_url, env=env))
    try:
        with live_server(services) as live:
            http = live.client(live.new_key("acme"))
            ref = upload(http, {})
            r = create(
                http, "offline", variants=[{"name": "a", "tarball": ref, "requirements": ["greet"]}]
            )
            assert r.status_code == 503, r.text
            assert "could not be reached" in r.json()["detail"]
    finally:
        services.close()
