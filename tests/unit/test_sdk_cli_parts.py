"""Pieces of the CLI that need no server: variant specs and the experiment table."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from automation_sdk.deploy import VariantSource, parse_variant
from automation_sdk.render import experiment_view
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


SUMMARY = {
    "experiment_id": "exp-1",
    "control": "control",
    "variants": [
        {
            "variant": "control",
            "runs": 100,
            "by_status": {"succeeded": 80, "failed": 20},
            "success_rate": {"rate": 0.8, "interval": [0.71, 0.87]},
            "duration_ms": {"p50": 812, "p95": 1500},
            "metrics": {"score": {"count": 80, "mean": 0.5, "interval": [0.45, 0.55]}},
            "vs_control": None,
        },
        {
            "variant": "fast",
            "runs": 98,
            "by_status": {"succeeded": 90, "timed_out": 8},
            "success_rate": {"rate": 0.918, "interval": [0.84, 0.96]},
            "duration_ms": {"p50": 400, "p95": 900},
            "metrics": {"score": {"count": 90, "mean": 0.7, "interval": [0.66, 0.74]}},
            "vs_control": {
                "success_rate": {
                    "difference": {"estimate": 0.118, "interval": [0.02, 0.21]},
                    "prob_better": 0.993,
                },
                "metrics": {
                    "score": {
                        "difference": {"estimate": 0.2, "interval": [0.14, 0.26]},
                        "prob_better": 0.9999,
                    }
                },
            },
        },
    ],
    "srm": {"flagged": True, "p_value": 0.0002},
}


def _text(summary: dict) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(experiment_view(summary))
    return console.export_text()


def test_experiment_view_shows_rates_intervals_comparisons_and_srm() -> None:
    text = _text(SUMMARY)
    assert "91.8% [84.0%, 96.0%]" in text  # success rate with its Wilson interval
    assert "11.8% [2.0%, 21.0%]" in text and "99.3%" in text  # vs control, P(better)
    assert "0.7 [0.66, 0.74]" in text and "0.2 [0.14, 0.26]" in text  # metric mean, diff
    assert "812 ms" in text and "1.5 s" in text  # p50, p95
    assert "FLAGGED" in text


def test_experiment_view_by_revision_and_sparse_data() -> None:
    periods = {
        "experiment_id": "e",
        "revisions": [
            {"revision": 1, "variants": SUMMARY["variants"], "srm": {"flagged": False}},
            {"revision": 2, "variants": [{"variant": "control", "runs": 0}]},
        ],
    }
    text = _text(periods)
    assert "revision 1" in text and "revision 2" in text and "not flagged" in text
