"""Experiments, promotion, cloning and decisions through the SDK and the CLI.

Written to DESIGN sections 6 and 7; the summary's field names are read by
``automation_sdk.render`` (one place to adapt).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from automation_sdk.cli import main
from automation_sdk.client import Client
from automation_sdk.models import Automation
from click.testing import CliRunner

from tests.e2e.sdk_server import Served, serve
from tests.support import targz

CODE = (
    "from automation_sdk import context, report\n"
    "report.metric('score', 1.0 if context.variant == 'b' else 0.5)\n"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("experiments")) as s:
        yield s


@pytest.fixture(scope="module")
def key(served: Served) -> str:
    return served.new_key("acme")


@pytest.fixture(scope="module")
def api(served: Served, key: str) -> Iterator[Client]:
    with Client(served.base_url, key) as client:
        yield client


@pytest.fixture(scope="module")
def experiment(api: Client) -> tuple[Automation, str]:
    """An A/B automation with a dozen finished runs."""
    experiment_id = f"exp-{uuid.uuid4().hex[:8]}"
    ref = api.upload(targz({"main.py": CODE})).ref
    auto = api.create_automation(
        name=f"ab-{uuid.uuid4().hex[:6]}",
        experiment_id=experiment_id,
        variants=[
            {"name": "a", "weight": 50, "tarball": ref},
            {"name": "b", "weight": 50, "tarball": ref},
        ],
    )
    runs = [api.dispatch(auto.id, assignment_key=f"user-{i}") for i in range(12)]
    for run in runs:
        assert api.wait(run.id, timeout=60).status == "succeeded"
    return auto, experiment_id


def _cli(served: Served, key: str, *args: str) -> Any:
    env = {"AUTOMATION_URL": served.base_url, "AUTOMATION_API_KEY": key, "COLUMNS": "200"}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_experiment_summary_names_every_variant(
    api: Client, experiment: tuple[Automation, str]
) -> None:
    _, experiment_id = experiment
    summary = api.experiment(experiment_id)
    text = json.dumps(summary)
    assert '"a"' in text and '"b"' in text and "score" in text
    by_revision = api.experiment(experiment_id, by="revision", control="b")
    assert isinstance(by_revision, dict)


def test_experiments_lists_it(api: Client, experiment: tuple[Automation, str]) -> None:
    _, experiment_id = experiment
    assert experiment_id in json.dumps(api.experiments())


def test_timeseries_answers(api: Client, experiment: tuple[Automation, str]) -> None:
    _, experiment_id = experiment
    assert isinstance(api.timeseries(experiment_id, "score", "1m"), dict)


def test_cli_experiment_table_and_json(
    served: Served, key: str, api: Client, experiment: tuple[Automation, str]
) -> None:
    _, experiment_id = experiment
    table = _cli(served, key, "experiment", experiment_id)
    assert table.exit_code == 0, table.output
    assert "score" in table.stdout and "sample ratio mismatch" in table.stdout
    as_json = _cli(served, key, "experiment", experiment_id, "--json")
    assert json.loads(as_json.stdout) == api.experiment(experiment_id)
    assert _cli(served, key, "experiment", experiment_id, "--by-revision").exit_code == 0


def test_clone_variant_copies_and_overrides(api: Client) -> None:
    ref = api.upload(targz({"main.py": "pass"})).ref
    auto = api.create_automation(name=f"c-{uuid.uuid4().hex[:6]}", tarball=ref)
    cloned = api.clone_variant(auto.id, "default", "copy", weight=0, overrides={"env": {"X": "1"}})
    copy, original = cloned.variant("copy"), cloned.variant("default")
    assert copy is not None and original is not None
    assert (copy.weight, copy.env, copy.digest) == (0, {"X": "1"}, original.digest)
    assert cloned.revision == auto.revision + 1


def test_promote_records_a_decision(served: Served, key: str, api: Client) -> None:
    ref = api.upload(targz({"main.py": "pass"})).ref
    auto = api.create_automation(
        name=f"p-{uuid.uuid4().hex[:6]}",
        experiment_id=f"exp-{uuid.uuid4().hex[:6]}",
        variants=[
            {"name": "a", "weight": 50, "tarball": ref},
            {"name": "b", "weight": 50, "tarball": ref},
        ],
    )
    promoted = api.promote(auto.id, "b", "b scores higher")
    assert promoted.champion == "b" and promoted.revision == auto.revision + 1
    assert {v.name: v.weight for v in promoted.variants}["a"] == 0
    decision = api.decisions(auto.id)[0]
    assert (decision.kind, decision.variant, decision.reason) == ("promote", "b", "b scores higher")
    assert decision.automatic is False

    again = _cli(served, key, "promote", auto.name, "a", "--reason", "roll back to a")
    assert again.exit_code == 0, again.output
    assert "champion" in again.stdout and api.get_automation(auto.id).champion == "a"
    assert _cli(served, key, "promote", auto.name, "nope", "--reason", "x").exit_code == 1
