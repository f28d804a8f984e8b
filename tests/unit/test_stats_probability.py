"""Probability that a variant beats the control: exact, Monte Carlo and symmetry checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special
from scipy import stats as sps

from automation_server.errors import Invalid
from automation_server.experiments.stats import (
    MeanStats,
    prob_beats_control_mean,
    prob_beats_control_rate,
)


def closed_form(s_c: int, n_c: int, s_v: int, n_v: int) -> float:
    """P(p_v > p_c) for Beta posteriors as a finite sum (Evan Miller, 2015, "Formulas
    for Bayesian A/B testing"): sum_{i < a_v} B(a_c + i, b_c + b_v) /
    ((b_v + i) B(1 + i, b_v) B(a_c, b_c)), in logs for large counts."""
    a_c, b_c, a_v, b_v = 1 + s_c, 1 + n_c - s_c, 1 + s_v, 1 + n_v - s_v
    i = np.arange(a_v)
    terms = (
        special.betaln(a_c + i, b_c + b_v)
        - np.log(b_v + i)
        - special.betaln(1 + i, b_v)
        - special.betaln(a_c, b_c)
    )
    return float(np.exp(special.logsumexp(terms)))


def monte_carlo(s_c: int, n_c: int, s_v: int, n_v: int, draws: int = 4_000_000) -> float:
    rng = np.random.default_rng(s_c + 7 * n_v)
    p_c = rng.beta(1 + s_c, 1 + n_c - s_c, draws)
    p_v = rng.beta(1 + s_v, 1 + n_v - s_v, draws)
    return float((p_v > p_c).mean())


CASES = [
    (0, 0, 0, 0),
    (5, 10, 7, 10),
    (0, 5, 5, 5),
    (30, 100, 38, 100),
    (300, 1000, 330, 1000),
    (3000, 10_000, 3100, 10_000),
    (4000, 10_000, 2000, 4_000),
    (30_000, 100_000, 30_500, 100_000),
    # One side flat, the other concentrated, in both orders.
    (0, 0, 0, 12_730),
    (0, 12_730, 0, 0),
    (2, 100_000, 1, 3),
    (1, 3, 2, 100_000),
]


@pytest.mark.parametrize("case", CASES)
def test_rate_probability_equals_the_closed_form(case: tuple[int, int, int, int]) -> None:
    assert prob_beats_control_rate(*case) == pytest.approx(closed_form(*case), abs=1e-7)


@pytest.mark.parametrize(
    "case", [(5, 10, 7, 10), (300, 1000, 330, 1000), (4000, 10_000, 2000, 4_000)]
)
def test_rate_probability_agrees_with_monte_carlo(case: tuple[int, int, int, int]) -> None:
    # 4e6 draws: the Monte Carlo standard error is at most 2.5e-4, a quarter of the tolerance.
    assert prob_beats_control_rate(*case) == pytest.approx(monte_carlo(*case), abs=1e-3)


def test_rate_probability_stays_accurate_for_millions_of_runs() -> None:
    # Posterior sd of the difference ~ 7.1e-4; the difference 1e-3 is 1.41 sd.
    s_c, n_c, s_v, n_v = 500_000, 1_000_000, 501_000, 1_000_000
    sd = np.sqrt(2 * 0.25 / n_c)
    normal = float(sps.norm.cdf((s_v - s_c) / n_c / sd))
    assert prob_beats_control_rate(s_c, n_c, s_v, n_v) == pytest.approx(normal, abs=1e-4)


def counts() -> st.SearchStrategy[tuple[int, int]]:
    return st.integers(min_value=0, max_value=50_000).flatmap(
        lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
    )


@given(counts(), counts())
@settings(deadline=None, max_examples=60)
def test_rate_probabilities_of_both_orders_sum_to_one(
    control: tuple[int, int], variant: tuple[int, int]
) -> None:
    forward = prob_beats_control_rate(*control, *variant)
    backward = prob_beats_control_rate(*variant, *control)
    assert 0.0 <= forward <= 1.0
    assert forward + backward == pytest.approx(1.0, abs=1e-6)


@given(counts())
@settings(deadline=None, max_examples=30)
def test_identical_rates_are_a_coin_flip(observed: tuple[int, int]) -> None:
    assert prob_beats_control_rate(*observed, *observed) == pytest.approx(0.5, abs=1e-6)


def test_more_successes_never_lower_the_probability() -> None:
    probabilities = [prob_beats_control_rate(40, 100, s, 100) for s in range(0, 101, 10)]
    assert probabilities == sorted(probabilities)
    assert probabilities[0] < 1e-6 and probabilities[-1] > 1 - 1e-6


def test_rate_probability_rejects_impossible_counts() -> None:
    with pytest.raises(Invalid):
        prob_beats_control_rate(11, 10, 1, 10)


# --- metrics: normal approximation ---------------------------------------


def stats_of(values: np.ndarray) -> MeanStats:
    return MeanStats.of(values)


def test_mean_probability_matches_normal_approximation_from_raw_samples() -> None:
    rng = np.random.default_rng(11)
    a, b = rng.normal(3.0, 1.0, 80), rng.normal(3.2, 2.0, 60)
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    expected = float(sps.norm.cdf((b.mean() - a.mean()) / se))
    assert prob_beats_control_mean(stats_of(a), stats_of(b)) == pytest.approx(expected, rel=1e-9)


def moments() -> st.SearchStrategy[MeanStats]:
    def build(n: int, mean: float, variance: float) -> MeanStats:
        return MeanStats.from_moments(n, mean, variance)

    return st.builds(
        build,
        st.integers(min_value=2, max_value=10_000),
        st.floats(min_value=-100, max_value=100),
        st.floats(min_value=1e-2, max_value=1e2),
    )


@given(moments(), moments())
@settings(deadline=None)
def test_mean_probabilities_are_probabilities_that_sum_to_one(a: MeanStats, b: MeanStats) -> None:
    forward, backward = prob_beats_control_mean(a, b), prob_beats_control_mean(b, a)
    assert forward is not None and backward is not None
    assert 0.0 <= forward <= 1.0
    assert forward + backward == pytest.approx(1.0, abs=1e-9)


def test_mean_probability_is_undefined_without_spread_or_data() -> None:
    constant = MeanStats(5, 1.0, 0.0)
    assert prob_beats_control_mean(constant, constant) is None
    assert prob_beats_control_mean(MeanStats(1, 1.0), MeanStats(9, 1.0, 3.0)) is None
