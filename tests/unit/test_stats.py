"""Wilson, mean/variance, t and Welch intervals: against raw-sample computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from automation_server.errors import Invalid
from automation_server.experiments.stats import MeanStats, t_interval, welch_diff, wilson_interval


def stats_of(values: np.ndarray) -> MeanStats:
    """What the SQL aggregate gives: COUNT, SUM, SUM of squares."""
    return MeanStats.of(values)


def with_moments(n: int, mean: float, variance: float) -> MeanStats:
    return MeanStats.from_moments(n, mean, variance)


def wilson_by_quadratic(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson bounds as the roots in p of (p_hat - p)^2 = z^2 p (1 - p) / n."""
    z = sps.norm.ppf(1 - (1 - confidence) / 2)
    p_hat, k = successes / n, z * z / n
    roots = np.roots([1 + k, -(2 * p_hat + k), p_hat * p_hat])
    low, high = sorted(float(r.real) for r in roots)
    return low, high


# --- Wilson ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        # Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3.
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_wilson_matches_published_values(
    successes: int, n: int, expected: tuple[float, float]
) -> None:
    interval = wilson_interval(successes, n)
    assert interval is not None
    assert interval[0] == pytest.approx(expected[0], abs=5e-5)
    assert interval[1] == pytest.approx(expected[1], abs=5e-5)


@given(
    st.integers(min_value=1, max_value=100_000).flatmap(
        lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
    ),
    st.sampled_from([0.8, 0.9, 0.95, 0.99]),
)
@settings(deadline=None)
def test_wilson_equals_roots_of_the_score_equation(counts: tuple[int, int], conf: float) -> None:
    successes, n = counts
    interval = wilson_interval(successes, n, conf)
    assert interval is not None
    expected = wilson_by_quadratic(successes, n, conf)
    assert interval == pytest.approx(expected, abs=1e-9)


@given(
    st.integers(min_value=1, max_value=10**9).flatmap(
        lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
    )
)
@settings(deadline=None)
def test_wilson_is_inside_unit_interval_and_contains_the_rate(counts: tuple[int, int]) -> None:
    successes, n = counts
    interval = wilson_interval(successes, n)
    assert interval is not None
    low, high = interval
    assert 0.0 <= low <= successes / n <= high <= 1.0


def test_wilson_edges_are_exact_at_zero_and_all_successes() -> None:
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    all_ok = wilson_interval(10, 10)
    assert all_ok is not None
    assert all_ok[1] == 1.0


def test_wilson_widens_with_confidence() -> None:
    narrow, wide = wilson_interval(40, 100, 0.9), wilson_interval(40, 100, 0.99)
    assert narrow is not None and wide is not None
    assert wide[0] < narrow[0] and narrow[1] < wide[1]


def test_wilson_has_no_interval_without_runs() -> None:
    assert wilson_interval(0, 0) is None


@pytest.mark.parametrize(("successes", "n"), [(5, 4), (-1, 4), (0, -1)])
def test_wilson_rejects_impossible_counts(successes: int, n: int) -> None:
    with pytest.raises(Invalid):
        wilson_interval(successes, n)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95.0, math.nan])
def test_rejects_confidence_outside_open_unit_interval(confidence: float) -> None:
    with pytest.raises(Invalid):
        wilson_interval(1, 2, confidence)
    with pytest.raises(Invalid):
        t_interval(MeanStats(3, 1.0, 2.0), confidence)


# --- mean, variance, t-interval ------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 30, 1000])
def test_mean_variance_and_t_interval_match_raw_samples(n: int) -> None:
    values = np.random.default_rng(n).normal(12.5, 3.0, n)
    summary = stats_of(values)
    assert summary.mean == pytest.approx(values.mean(), rel=1e-12)
    assert summary.variance == pytest.approx(values.var(ddof=1), rel=1e-9)
    expected = sps.t.interval(0.95, n - 1, loc=values.mean(), scale=sps.sem(values))
    assert t_interval(summary) == pytest.approx(expected, rel=1e-9)
    expected_99 = sps.t.interval(0.99, n - 1, loc=values.mean(), scale=sps.sem(values))
    assert t_interval(summary, 0.99) == pytest.approx(expected_99, rel=1e-9)


def test_variance_survives_a_large_mean() -> None:
    # mean^2 / variance = 1e8: the one-pass formula loses 8 of ~16 digits.
    values = np.random.default_rng(0).normal(1e4, 1.0, 10_000)
    assert stats_of(values).variance == pytest.approx(values.var(ddof=1), rel=1e-6)


@given(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.integers(min_value=2, max_value=1000),
)
def test_constant_data_has_zero_variance_never_negative(value: float, n: int) -> None:
    summary = MeanStats.of([value] * n)
    assert summary.variance == 0.0
    interval = t_interval(summary)
    assert interval is not None
    assert interval[0] == interval[1] == pytest.approx(value)


def test_too_few_observations_give_none() -> None:
    assert MeanStats(0).mean is None
    assert MeanStats(1, 4.0).variance is None
    assert t_interval(MeanStats(1, 4.0)) is None


def test_rejects_impossible_sums() -> None:
    with pytest.raises(Invalid):
        MeanStats(-1, 0.0, 0.0)
    with pytest.raises(Invalid):
        MeanStats(3, 1.0, -2.0)
    with pytest.raises(Invalid):
        MeanStats(3, math.inf, 2.0)


@given(
    st.floats(min_value=-1e3, max_value=1e3),
    st.floats(min_value=1e-3, max_value=1e3),
    st.integers(min_value=2, max_value=10_000),
)
@settings(deadline=None)
def test_t_interval_contains_the_mean_and_narrows_with_n(
    mean: float, variance: float, n: int
) -> None:
    small, large = with_moments(n, mean, variance), with_moments(2 * n, mean, variance)
    small_iv, large_iv = t_interval(small), t_interval(large)
    assert small_iv is not None and large_iv is not None
    assert small_iv[0] <= mean <= small_iv[1]
    assert large_iv[1] - large_iv[0] < small_iv[1] - small_iv[0]


# --- Welch ----------------------------------------------------------------


@pytest.mark.parametrize(("n_a", "n_b", "sd_b"), [(2, 2, 1.0), (10, 40, 3.0), (500, 200, 0.5)])
def test_welch_matches_scipy_ttest_on_raw_samples(n_a: int, n_b: int, sd_b: float) -> None:
    rng = np.random.default_rng(n_a * n_b)
    a, b = rng.normal(10.0, 1.0, n_a), rng.normal(10.4, sd_b, n_b)
    diff = welch_diff(stats_of(a), stats_of(b))
    expected = sps.ttest_ind(b, a, equal_var=False)
    assert diff is not None
    assert diff.estimate == pytest.approx(b.mean() - a.mean(), rel=1e-9)
    assert diff.df == pytest.approx(expected.df, rel=1e-9)
    assert diff.p_value == pytest.approx(expected.pvalue, rel=1e-6)
    ci = expected.confidence_interval(0.95)
    assert (diff.low, diff.high) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_difference_of_success_rates_is_welch_on_zero_one_outcomes() -> None:
    rng = np.random.default_rng(7)
    a, b = (rng.random(300) < 0.30).astype(float), (rng.random(280) < 0.42).astype(float)
    control = MeanStats.from_successes(int(a.sum()), len(a))
    variant = MeanStats.from_successes(int(b.sum()), len(b))
    diff = welch_diff(control, variant, 0.9)
    ci = sps.ttest_ind(b, a, equal_var=False).confidence_interval(0.9)
    assert diff is not None
    assert (diff.low, diff.high) == pytest.approx((ci.low, ci.high), rel=1e-9)


def diff_stats() -> st.SearchStrategy[MeanStats]:
    return st.builds(
        with_moments,
        st.integers(min_value=2, max_value=5000),
        st.floats(min_value=-100, max_value=100),
        st.floats(min_value=1e-2, max_value=1e2),
    )


@given(diff_stats(), diff_stats())
@settings(deadline=None)
def test_welch_diff_is_antisymmetric(a: MeanStats, b: MeanStats) -> None:
    forward, backward = welch_diff(a, b), welch_diff(b, a)
    assert forward is not None and backward is not None
    assert forward.estimate == pytest.approx(-backward.estimate, abs=1e-9)
    assert forward.low == pytest.approx(-backward.high, abs=1e-9)
    assert forward.high == pytest.approx(-backward.low, abs=1e-9)
    assert forward.p_value == pytest.approx(backward.p_value)
    assert forward.low <= forward.estimate <= forward.high


def test_welch_is_undefined_when_both_sides_are_constant() -> None:
    assert welch_diff(MeanStats.from_successes(10, 10), MeanStats.from_successes(10, 10)) is None
    assert welch_diff(with_moments(5, 1.0, 0.0), with_moments(5, 2.0, 0.0)) is None


def test_welch_with_one_constant_side_uses_the_other_sides_df() -> None:
    constant = MeanStats.from_successes(20, 20)
    values = np.random.default_rng(3).normal(0.8, 0.1, 15)
    diff = welch_diff(constant, stats_of(values))
    assert diff is not None
    assert diff.df == pytest.approx(14)
    expected = sps.t.interval(0.95, 14, loc=values.mean() - 1.0, scale=sps.sem(values))
    assert (diff.low, diff.high) == pytest.approx(expected, rel=1e-9)


def test_welch_needs_two_observations_per_side() -> None:
    assert welch_diff(MeanStats(1, 1.0), with_moments(10, 0.0, 1.0)) is None


def test_results_serialise_to_strict_json() -> None:
    diff = welch_diff(with_moments(10, 1.0, 2.0), with_moments(12, 1.5, 1.0))
    assert diff is not None
    for payload in (diff.to_json(), MeanStats(1, 2.0).to_json()):
        text = json.dumps(payload, allow_nan=False)
        assert json.loads(text) == payload
    assert MeanStats(0).to_json() == {"count": 0, "mean": None, "sd": None}


def test_moments_merged_with_chan_keep_precision_for_large_values() -> None:
    """Values near 1e9 with unit spread: (n, mean, M2) merges keep the variance, where the
    one-pass sum(x^2) - sum(x)^2/n formula loses every significant digit."""
    values = np.random.default_rng(3).normal(1e9, 1.0, 5000)
    one_by_one = MeanStats.of(values)
    halves = MeanStats.of(values[:1234]).merge(MeanStats.of(values[1234:]))
    expected = float(values.var(ddof=1))
    assert one_by_one.variance == pytest.approx(expected, rel=1e-6)
    assert halves.variance == pytest.approx(expected, rel=1e-6)
    assert halves.mean == pytest.approx(float(values.mean()), rel=1e-15)
    naive = (float((values * values).sum()) - float(values.sum()) ** 2 / len(values)) / (
        len(values) - 1
    )
    assert abs(naive - expected) > 0.5 * expected  # what the old rollups would have said
