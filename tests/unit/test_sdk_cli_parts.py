"""Pieces of the CLI that need no server: variant specs and the experiment view's decoding
(the view against a real server's summaries: tests/integration/test_experiment_readings.py)."""

from __future__ import annotations

import io
from pathlib import Path

import msgspec
import pytest
from automation_sdk.deploy import VariantSource, parse_variant
from automation_sdk.render_experiment import experiment_view
from automation_sdk.summary import ExperimentSummary
from rich.console import Console


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("control=./a:50", VariantSource("control", Path("./a"), 50)),
        ("terse=b", VariantSource("terse", Path("b"), None)),
        ("./dir", VariantSource("default", Path("./dir"), None)),
        ("./dir:7", VariantSource("default", Path("./dir"), 7)),
        ("x=some:dir:0", VariantSource("x", Path("some:dir"), 0)),
        ("v=with:colon", VariantSource("v", Path("with:colon"), None)),
    ],
)
def test_parse_variant(spec: str, expected: VariantSource) -> None:
    assert parse_variant(spec) == expected


@pytest.mark.parametrize("spec", ["Capital=./a", "a=./x:20000", "a="])
def test_parse_variant_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_variant(spec)


def test_an_older_servers_summary_without_the_new_fields_still_decodes_and_renders() -> None:
    """A server from before directions and Holm: fields default, the view still renders."""
    body = {
        "experiment_id": "e",
        "control": "control",
        "variants": [
            {"variant": "control", "runs_assigned": 3, "runs_finished": {"succeeded": 3}},
            {"variant": "b", "runs_assigned": 0},
        ],
    }
    summary = msgspec.convert(body, ExperimentSummary)
    assert summary.metrics == {} and summary.multiple_comparisons is None
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(experiment_view(summary))
    text = console.export_text()
    assert "3 succeeded" in text and "none finished" in text
    assert "no randomly assigned runs yet" in text
