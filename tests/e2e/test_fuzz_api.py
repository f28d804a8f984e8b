"""Schemathesis against the live server's own OpenAPI document.

Every operation of ``/schema/openapi.json`` gets a bounded, derandomized set of
generated requests, schema-valid ones and (where a body or query exists)
schema-invalid ones, sent with an admin key. Operations with ids in their
path get most of their examples with the ids of freshly seeded records, so
requests reach the handlers' logic and not only their 404. Two things must hold for every
response: no 5xx (schemathesis'
``not_a_server_error``) and, for every error, the project's one error shape
``{status_code, code, detail, field}`` (DESIGN section 6).

Failures are collected over the whole run rather than stopping at the first,
so one run reports every operation that breaks a rule, each with a curl
command that reproduces it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.failures import FailureGroup

from automation_server.services import Services, build_services
from tests.support import LiveServer, live_server, settings_for, targz

ERROR_FIELDS = {"status_code", "code", "detail", "field"}
# Path parameters given real ids (fresh records for each operation, DELETE
# included); key_id stays generated, so the fuzzer never deletes its own key.
SEEDED_PARAMS = ("automation_id", "run_id", "experiment_id", "name")
REQUEST_TIMEOUT_S = 15.0
# The per-key rate limit would answer most of a fuzzing run with 429.
SERVER_ENV = {"AUTOMATION_RATE_LIMIT_PER_MINUTE": "1000000"}


@schemathesis.check
def has_project_error_shape(ctx: CheckContext, response: Any, case: Case[Any]) -> bool | None:
    """Every 4xx/5xx body is exactly ``{status_code, code, detail, field}``."""
    if response.status_code < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"error response is not JSON: {response.content[:200]!r}") from None
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    assert set(body) == ERROR_FIELDS, f"error body keys {sorted(body)} != {sorted(ERROR_FIELDS)}"
    assert body["status_code"] == response.status_code, (
        f"body says {body['status_code']}, response is {response.status_code}"
    )
    assert isinstance(body["code"], str) and body["code"], f"bad code {body['code']!r}"
    assert isinstance(body["detail"], str) and body["detail"], f"bad detail {body['detail']!r}"
    assert body["field"] is None or isinstance(body["field"], str), f"bad field {body['field']!r}"
    return None


@dataclass
class Tally:
    """What one fuzzing run sent and saw."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


@dataclass
class Target:
    backend: str
    server: LiveServer
    key: str
    http: httpx.Client
    ref: str
    seeded: int = 0

    def fresh_ids(self) -> dict[str, str]:
        """New seeded records: an earlier operation may have disabled or deleted the last."""
        self.seeded += 1
        return _seed(self.http, self.ref, f"fuzz-seed-{self.seeded}")


def _upload(http: httpx.Client) -> str:
    up = http.post("/v1/uploads", content=targz({"main.py": "print('fuzz')"}))
    assert up.status_code == 201, up.text
    return str(up.json()["ref"])


def _seed(http: httpx.Client, ref: str, name: str) -> dict[str, str]:
    """An experiment automation with a finished (cancelled) run, for real path ids."""
    auto = http.post(
        "/v1/automations",
        json={
            "name": name,
            "experiment_id": "exp-fuzz",
            "variants": [
                {"name": "control", "weight": 50, "tarball": ref},
                {"name": "treatment", "weight": 50, "tarball": ref},
            ],
        },
    )
    assert auto.status_code == 201, auto.text
    run = http.post(f"/v1/automations/{auto.json()['id']}/dispatch", json={})
    assert run.status_code == 202, run.text
    # Finished, so `logs?follow=true` on it ends at once (no worker runs here).
    cancel = http.post(f"/v1/runs/{run.json()['id']}/cancel")
    assert cancel.status_code == 202, cancel.text
    return {
        "automation_id": auto.json()["id"],
        "run_id": run.json()["id"],
        "experiment_id": "exp-fuzz",
        "name": "control",
    }


@pytest.fixture
def target(data_dir: Path, request: pytest.FixtureRequest) -> Iterator[Target]:
    database_url = request.getfixturevalue(request.param)
    services: Services = build_services(settings_for(data_dir, database_url, env=SERVER_ENV))
    try:
        with live_server(services) as server:
            key = server.new_key("fuzz", "admin")
            http = server.client(key)
            yield Target(
                {"pg_url": "postgres"}.get(request.param, "sqlite"),
                server,
                key,
                http,
                _upload(http),
            )
    finally:
        services.close()


def closed_objects(document: dict[str, Any]) -> dict[str, Any]:
    """The document with ``additionalProperties: false`` on objects that list properties.

    The server refuses unknown fields (DESIGN section 6: 400), but the served
    document does not say so; left open, most "valid" generated bodies carry a
    random extra key and never get past the 400. Closing them makes the
    generated bodies reach the handlers' own rules.
    """
    for component in document.get("components", {}).get("schemas", {}).values():
        if "properties" in component and "additionalProperties" not in component:
            component["additionalProperties"] = False
    return document


def _strategies(operation: Any, target: Target, n: int) -> list[tuple[str, Any, int]]:
    """(kind, strategy, examples): valid data with real ids, valid data, invalid data."""
    names = {p.name for p in operation.path_parameters}
    out: list[tuple[str, Any, int]] = []
    if names & set(SEEDED_PARAMS):
        real = {k: v for k, v in target.fresh_ids().items() if k in names}
        out.append(("positive+seeded", operation.as_strategy(path_parameters=real), n))
    # Generated ids mostly meet the 404 path: a few examples cover it.
    plain = max(3, n // 3) if out else n
    out.append(("positive", operation.as_strategy(GenerationMode.POSITIVE), plain))
    # Only a body or query can be made schema-invalid; a free string path cannot.
    if len(operation.query) or operation.body:
        out.append(("negative", operation.as_strategy(GenerationMode.NEGATIVE), n))
    return out


def _fuzz(target: Target, max_examples: int) -> Tally:
    tally = Tally()
    base = target.server.base_url
    raw = httpx.get(f"{base}/schema/openapi.json").raise_for_status().json()
    schema = schemathesis.openapi.from_dict(closed_objects(raw))
    headers = {"Authorization": f"Bearer {target.key}"}

    def check(label: str) -> Callable[[Case[Any]], None]:
        def run(case: Case[Any]) -> None:
            response = case.call(base_url=base, headers=headers, timeout=REQUEST_TIMEOUT_S)
            tally.requests += 1
            tally.statuses[response.status_code] += 1
            try:
                case.validate_response(
                    response, checks=[not_a_server_error, has_project_error_shape]
                )
            except FailureGroup as exc:
                tally.failures.setdefault(label, str(exc)[:3000])

        return run

    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # our own schema parses
        for kind, strategy, examples in _strategies(operation, target, max_examples):
            label = f"{operation.label} [{kind}]"
            test = settings(
                max_examples=examples,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(case=strategy)(check(label)))
            try:
                test()
            except Unsatisfiable:
                continue  # nothing schema-invalid to generate for this operation
    return tally


def _report(name: str, tally: Tally, capsys: pytest.CaptureFixture[str]) -> None:
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(tally.statuses.items()))
    with capsys.disabled():
        print(
            f"\nFUZZ {name}: {tally.requests} requests sent, {tally.server_errors} 5xx seen, "
            f"{len(tally.failures)} failing operation(s); statuses {{{statuses}}}"
        )


@pytest.mark.parametrize(
    ("target", "max_examples"),
    [("sqlite_url", 25), pytest.param("pg_url", 8, marks=pytest.mark.postgres)],
    indirect=["target"],
    ids=["sqlite", "postgres"],
)
def test_generated_requests_never_get_a_5xx_and_errors_keep_one_shape(
    target: Target, max_examples: int, capsys: pytest.CaptureFixture[str]
) -> None:
    tally = _fuzz(target, max_examples)
    _report(target.backend, tally, capsys)
    assert tally.requests > 100, "the fuzzer hardly sent anything: is the schema empty?"
    # The seeded ids made handlers do real work, not only answer 404.
    assert tally.statuses[200] and (tally.statuses[201] or tally.statuses[202])
    assert not tally.failures, "\n\n".join(f"{k}:\n{v}" for k, v in tally.failures.items())


def test_an_empty_idempotency_key_never_causes_a_500(data_dir: Path, sqlite_url: str) -> None:
    services = build_services(settings_for(data_dir, sqlite_url))
    try:
        with live_server(services) as server:
            key = server.new_key("acme", "admin")
            http = server.client(key)
            automation_id = _seed(http, _upload(http), "seed")["automation_id"]
            statuses = [
                http.post(
                    f"/v1/automations/{automation_id}/dispatch",
                    json={},
                    headers={"Idempotency-Key": ""},
                ).status_code
                for _ in range(2)
            ]
            # Either reading: '' is no key (two runs, 202 twice) or a 400; never a 500.
            assert all(status < 500 for status in statuses), statuses
    finally:
        services.close()
