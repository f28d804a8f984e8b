"""Always-valid mSPRT interval: derivation, widths, tuning and repeated looks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize
from scipy import stats as sps

from automation_server.errors import Invalid
from automation_server.experiments.stats import (
    MeanStats,
    default_tau2,
    msprt_interval,
    optimal_tau2_ratio,
)


def mixture_likelihood_ratio(estimate: float, theta0: float, v: float, tau2: float) -> float:
    """Lambda(theta0) by numerical integration over the N(theta0, tau2) mixing density."""
    sd = math.sqrt(tau2)
    numerator, _ = integrate.quad(
        lambda t: sps.norm.pdf(estimate, t, math.sqrt(v)) * sps.norm.pdf(t, theta0, sd),
        theta0 - 12 * sd,
        theta0 + 12 * sd,
        points=[estimate],
        limit=200,
    )
    return numerator / sps.norm.pdf(estimate, theta0, math.sqrt(v))


@pytest.mark.parametrize(
    ("estimate", "v", "tau2", "alpha"),
    [
        (0.3, 0.01, 0.05, 0.05),
        (-2.0, 0.5, 0.1, 0.05),
        (1.0, 0.02, 2.0, 0.01),
        (0.0, 1e-3, 1e-3, 0.2),
    ],
)
def test_interval_ends_where_the_mixture_likelihood_ratio_reaches_one_over_alpha(
    estimate: float, v: float, tau2: float, alpha: float
) -> None:
    low, high = msprt_interval(estimate, v, tau2=tau2, alpha=alpha)
    for end in (low, high):
        assert mixture_likelihood_ratio(estimate, end, v, tau2) == pytest.approx(
            1 / alpha, rel=1e-6
        )
    # Inside the interval the test has not rejected; just outside it has.
    width = high - low
    assert mixture_likelihood_ratio(estimate, low + 0.01 * width, v, tau2) < 1 / alpha
    assert mixture_likelihood_ratio(estimate, high + 0.01 * width, v, tau2) > 1 / alpha


def test_matches_johari_et_al_with_equal_arms() -> None:
    # Johari et al. (2022): theta_hat -+ sqrt(2 s2 (2 s2 + n tau2) / (n^2 tau2)
    #                                        * log((2 s2 + n tau2) / (2 s2 alpha^2)))
    s2, n, tau2, alpha, estimate = 4.0, 250, 0.3, 0.05, 0.7
    half = math.sqrt(
        2
        * s2
        * (2 * s2 + n * tau2)
        / (n * n * tau2)
        * math.log((2 * s2 + n * tau2) / (2 * s2 * alpha**2))
    )
    low, high = msprt_interval(estimate, 2 * s2 / n, tau2=tau2, alpha=alpha)
    assert (low, high) == pytest.approx((estimate - half, estimate + half), rel=1e-12)


@given(
    st.floats(min_value=-1e3, max_value=1e3),
    st.floats(min_value=1e-8, max_value=1e4),
    st.floats(min_value=1e-8, max_value=1e4),
    st.floats(min_value=1e-4, max_value=0.5),
)
@settings(deadline=None)
def test_is_wider_than_the_fixed_sample_interval_and_contains_the_estimate(
    estimate: float, v: float, tau2: float, alpha: float
) -> None:
    low, high = msprt_interval(estimate, v, tau2=tau2, alpha=alpha)
    fixed_half = sps.norm.ppf(1 - alpha / 2) * math.sqrt(v)
    assert low <= estimate <= high
    assert high - estimate > fixed_half
    assert estimate - low > fixed_half


def test_zero_variance_gives_the_zero_width_limit() -> None:
    assert msprt_interval(1.5, 0.0, tau2=1.0) == (1.5, 1.5)


@pytest.mark.parametrize(
    ("v", "tau2", "alpha"),
    [(-1.0, 1.0, 0.05), (1.0, 0.0, 0.05), (1.0, -2.0, 0.05), (1.0, 1.0, 1.0)],
)
def test_rejects_invalid_tuning(v: float, tau2: float, alpha: float) -> None:
    with pytest.raises(Invalid):
        msprt_interval(0.0, v, tau2=tau2, alpha=alpha)


# --- tuning ----------------------------------------------------------------


def half_width(v: float, tau2: float, alpha: float) -> float:
    low, high = msprt_interval(0.0, v, tau2=tau2, alpha=alpha)
    return (high - low) / 2


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1])
def test_optimal_ratio_minimises_the_width(alpha: float) -> None:
    v = 0.37
    best = optimize.minimize_scalar(
        lambda log_tau2: half_width(v, math.exp(log_tau2), alpha),
        bounds=(-10, 10),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert optimal_tau2_ratio(alpha) == pytest.approx(math.exp(best.x) / v, rel=1e-4)


def equal_arms(n: int, mean: float, variance: float) -> MeanStats:
    return MeanStats.from_moments(n, mean, variance)


def test_default_tau2_makes_the_interval_narrowest_at_the_target() -> None:
    a, b = equal_arms(40, 1.0, 2.0), equal_arms(60, 1.2, 2.0)
    tuning = default_tau2(a, b, target_n=500)
    assert tuning is not None
    assert tuning.pooled_variance == pytest.approx(2.0)
    v_at_target = 2 * 2.0 / 500
    best = half_width(v_at_target, tuning.tau2, 0.05)
    assert best < half_width(v_at_target, tuning.tau2 * 1.5, 0.05)
    assert best < half_width(v_at_target, tuning.tau2 / 1.5, 0.05)


def test_default_tau2_scales_with_the_metric_units() -> None:
    small = default_tau2(equal_arms(30, 1.0, 1.0), equal_arms(30, 2.0, 1.0))
    scaled = default_tau2(equal_arms(30, 1000.0, 1e6), equal_arms(30, 2000.0, 1e6))
    assert small is not None and scaled is not None
    assert scaled.tau2 == pytest.approx(small.tau2 * 1e6)


def test_default_tau2_is_undefined_for_constant_or_tiny_samples() -> None:
    assert default_tau2(equal_arms(10, 1.0, 0.0), equal_arms(10, 1.0, 0.0)) is None
    assert default_tau2(MeanStats(1, 1.0), equal_arms(10, 1.0, 1.0)) is None


def test_tuning_states_itself_in_json() -> None:
    tuning = default_tau2(equal_arms(30, 1.0, 1.0), equal_arms(30, 2.0, 1.0))
    assert tuning is not None
    payload = json.loads(json.dumps(tuning.to_json(), allow_nan=False))
    assert payload["tau2"] == pytest.approx(tuning.tau2)
    assert payload["alpha"] == 0.05
    assert payload["target_n_per_variant"] == 100
    assert payload["method"] == "msprt-normal-mixture"


# --- repeated looks (A/A) -----------------------------------------------------


def test_repeated_looks_break_the_fixed_interval_but_not_the_always_valid_one() -> None:
    experiments, looks, per_look = 400, 50, 20
    rng = np.random.default_rng(20261124)

    def cumulative(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        per = values.reshape(experiments, looks, per_look)
        return per.sum(axis=2).cumsum(axis=1), (per * per).sum(axis=2).cumsum(axis=1)

    # A/A: both variants draw from the same normal distribution.
    sum_a, sq_a = cumulative(rng.normal(5.0, 2.0, (experiments, looks * per_look)))
    sum_b, sq_b = cumulative(rng.normal(5.0, 2.0, (experiments, looks * per_look)))
    n = per_look * np.arange(1, looks + 1)

    # The fixed-sample 95% Welch interval, vectorised over experiments and looks.
    var_a = (sq_a - sum_a**2 / n) / (n - 1)
    var_b = (sq_b - sum_b**2 / n) / (n - 1)
    diff = sum_b / n - sum_a / n
    se2 = var_a / n + var_b / n
    df = se2**2 / ((var_a / n) ** 2 / (n - 1) + (var_b / n) ** 2 / (n - 1))
    naive_half = sps.t.ppf(0.975, df) * np.sqrt(se2)
    naive_rate = (np.abs(diff) > naive_half).any(axis=1).mean()

    msprt_rejected = np.zeros(experiments, dtype=bool)
    for e in range(experiments):
        for look in range(looks):
            a = _from_sums(int(n[look]), float(sum_a[e, look]), float(sq_a[e, look]))
            b = _from_sums(int(n[look]), float(sum_b[e, look]), float(sq_b[e, look]))
            tuning = default_tau2(a, b)
            assert tuning is not None
            low, high = msprt_interval(float(diff[e, look]), float(se2[e, look]), tau2=tuning.tau2)
            msprt_rejected[e] |= not low <= 0.0 <= high
    assert naive_rate > 0.2
    assert msprt_rejected.mean() < 0.08


def _from_sums(n: int, total: float, total_sq: float) -> MeanStats:
    mean = total / n
    return MeanStats(n, mean, max(0.0, total_sq - total * mean))
