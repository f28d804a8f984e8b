"""Holm's step-down adjustment against a table computed by hand."""

from __future__ import annotations

import pytest

from automation_server.automations.validation import effective_policy
from automation_server.errors import Invalid
from automation_server.experiments.stats import holm_adjust

# p-values, and by hand: sorted 0.01 < 0.02 < 0.03 < 0.04 (m = 4) -> 4*0.01 = 0.04,
# 3*0.02 = 0.06, 2*0.03 = 0.06, 1*0.04 = 0.04 -> running max 0.04, 0.06, 0.06, 0.06.
TABLE = [
    ([0.01, 0.04, 0.03, 0.02], [0.04, 0.06, 0.06, 0.06]),
    # ties: 0.02, 0.02, 0.5 -> 3*0.02 = 0.06, 2*0.02 = 0.04 -> 0.06, 0.06; 1*0.5 = 0.5
    ([0.02, 0.5, 0.02], [0.06, 0.5, 0.06]),
    # p = 1 stays 1: sorted 0.001, 0.4, 1 -> 3*0.001, 2*0.4, 1*1
    ([1.0, 0.4, 0.001], [1.0, 0.8, 0.003]),
    # products above 1 are capped: 2*0.6 = 1.2 -> 1, then max(1, 0.7) = 1
    ([0.7, 0.6], [1.0, 1.0]),
    # one comparison: nothing to adjust
    ([0.037], [0.037]),
    ([], []),
    # 0.001, 0.01, 0.02, 0.2, 0.3: 5*0.001 = 0.005, 4*0.01 = 0.04, 3*0.02 = 0.06,
    # 2*0.2 = 0.4, 1*0.3 = 0.3 -> max so far 0.4
    ([0.3, 0.2, 0.02, 0.01, 0.001], [0.4, 0.4, 0.06, 0.04, 0.005]),
]


@pytest.mark.parametrize(("p_values", "expected"), TABLE)
def test_holm_matches_the_hand_computed_table(p_values: list[float], expected: list[float]) -> None:
    assert holm_adjust(p_values) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_holm_refuses_what_is_not_a_p_value(bad: float) -> None:
    with pytest.raises(Invalid):
        holm_adjust([0.1, bad])


def test_auto_promote_uses_the_declared_direction_unless_it_gives_its_own() -> None:
    metrics = {"latency_ms": {"direction": "lower"}, "score": {"direction": "higher"}}
    policy = {
        "metric": "latency_ms",
        "direction": None,
        "guardrails": [
            {"metric": "latency_ms", "max_regression": 5, "direction": None},
            {"metric": "score", "max_regression": 0.1, "direction": "lower"},
            {"metric": "undeclared", "max_regression": 1, "direction": None},
        ],
    }
    effective = effective_policy(policy, metrics)
    assert effective["direction"] == "lower"
    assert [r["direction"] for r in effective["guardrails"]] == ["lower", "lower", "higher"]
    assert effective_policy({"metric": "success_rate"}, metrics)["direction"] == "higher"
