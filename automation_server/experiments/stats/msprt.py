"""Always-valid intervals: the mixture sequential probability ratio test."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

from scipy import optimize

from automation_server.errors import Invalid
from automation_server.experiments.stats.checks import check_probability, finite
from automation_server.experiments.stats.moments import MeanStats


def msprt_interval(
    diff: float, variance_of_diff: float, *, tau2: float, alpha: float = 0.05
) -> tuple[float, float]:
    """Always-valid (1 - alpha) interval for a difference of means, from the mSPRT.

    Model: the estimate D of theta is N(theta, V), V = s_a^2/n_a + s_b^2/n_b.
    The mixture sequential probability ratio test of H0: theta = theta0 mixes
    the alternative over theta ~ N(theta0, tau2) (N(0, tau2) for the "no
    difference" null theta0 = 0)::

        Lambda(theta0) = integral phi(D; t, V) phi(t; theta0, tau2) dt / phi(D; theta0, V)
                       = phi(D; theta0, V + tau2) / phi(D; theta0, V)
                       = sqrt(V / (V + tau2)) * exp((D - theta0)^2 tau2 / (2 V (V + tau2)))

    Under H0, Lambda is a nonnegative martingale with mean 1, so by Ville's
    inequality P(Lambda ever >= 1/alpha) <= alpha at every look, however many.
    The interval is the set of theta0 the test has not rejected,
    Lambda(theta0) < 1/alpha; taking logs and solving for (D - theta0)^2::

        D -+ sqrt( V (V + tau2) / tau2 * ( ln((V + tau2) / V) + 2 ln(1/alpha) ) )

    With V = 2 sigma^2 / n this is the interval of Johari, Koomen, Pekelis and
    Walsh, "Always valid inference: continuous monitoring of A/B tests",
    Operations Research 70(3) (2022) 1806-1821; it is the normal-mixture
    boundary of Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform,
    nonparametric, nonasymptotic confidence sequences", Annals of Statistics
    49(2) (2021) 1055-1080. The guarantee is exact for normal data with known
    variances and asymptotic when, as here, V uses the sample variances.

    V == 0 gives the zero-width limit (D, D); callers with constant data get
    None from :func:`welch_diff` and should not ask.
    """
    check_probability(alpha, "alpha")
    if not (math.isfinite(tau2) and tau2 > 0.0):
        raise Invalid(f"tau2 must be a positive number, got {tau2!r}", code="invalid_tau2")
    if not (math.isfinite(variance_of_diff) and variance_of_diff >= 0.0):
        raise Invalid("variance_of_diff must be a number >= 0", code="invalid_variance")
    if not math.isfinite(diff):
        raise Invalid("diff must be a finite number", code="invalid_diff")
    v = variance_of_diff
    if v == 0.0:
        return diff, diff
    half = math.sqrt(v * (v + tau2) / tau2 * (math.log1p(tau2 / v) + 2.0 * math.log(1.0 / alpha)))
    return diff - half, diff + half


@cache
def optimal_tau2_ratio(alpha: float = 0.05) -> float:
    """r* = tau2 / V at which the mSPRT interval is narrowest for a given V.

    Writing r = tau2 / V, the squared half-width over V is
    f(r) = (1 + 1/r) (ln(1 + r) + 2 ln(1/alpha)); f'(r) = 0 gives
    r = ln(1 + r) + 2 ln(1/alpha), solved here with ``scipy.optimize.brentq``
    (r* = 8.21 at alpha = 0.05). The minimum is f(r*) = 1 + r*, which exceeds
    z_{1-alpha/2}^2: the always-valid interval is always wider than the
    fixed-sample one.
    """
    check_probability(alpha, "alpha")
    two_log = 2.0 * math.log(1.0 / alpha)
    # g(r) = r - ln(1 + r) - 2 ln(1/alpha) is negative at 0 and positive at 2 ln(1/a) + 1e6.
    root = optimize.brentq(lambda r: r - math.log1p(r) - two_log, 1e-12, two_log + 1e6)
    return float(root)


DEFAULT_TARGET_N = 100
"""Runs per variant at which the default tau2 makes the always-valid interval narrowest."""


@dataclass(frozen=True, slots=True)
class MsprtTuning:
    """The mixing variance of the mSPRT and how it was chosen (stated in API responses)."""

    tau2: float
    alpha: float
    target_n: int
    pooled_variance: float

    def to_json(self) -> dict[str, Any]:
        return {
            "method": "msprt-normal-mixture",
            "mixing_distribution": "normal(theta0, tau2), centred on each tested difference",
            "tau2": finite(self.tau2),
            "alpha": self.alpha,
            "target_n_per_variant": self.target_n,
            "pooled_variance": finite(self.pooled_variance),
            "rule": (
                "tau2 = r*(alpha) * 2 * pooled_variance / target_n with "
                "r* = ln(1 + r*) + 2 ln(1/alpha): the interval is narrowest when "
                "each variant has target_n observations"
            ),
        }


def default_tau2(
    a: MeanStats, b: MeanStats, *, target_n: int = DEFAULT_TARGET_N, alpha: float = 0.05
) -> MsprtTuning | None:
    """Data-driven mixing variance: tau2 = r*(alpha) * 2 * sigma^2 / target_n.

    sigma^2 is the pooled per-observation variance
    ((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / (n_a + n_b - 2), so tau2 is in the
    metric's own units squared and scales with it. 2 sigma^2 / target_n is the
    variance of the difference with target_n runs per variant, and r* (see
    :func:`optimal_tau2_ratio`) makes the interval narrowest there. The width is
    forgiving: a look at 10x fewer runs is 1.26x wider than the best possible
    for that look and one at 10x more about 1.07x, so a rough target suffices.
    Johari et al. (2022) likewise match tau2 to the effect sizes or sample
    sizes expected; if an effect of interest delta is known, ``tau2 =
    delta**2`` is the other common choice. tau2 depends on the data only
    through the variance, never the difference itself: the same plug-in as V
    in :func:`msprt_interval`, exact as the variance estimate settles.

    None when the pooled variance is undefined or zero (fewer than 2 runs on a
    side, or both sides constant).
    """
    check_probability(alpha, "alpha")
    if target_n < 1:
        raise Invalid("target_n must be >= 1", code="invalid_target_n")
    if a.count < 2 or b.count < 2:
        return None
    var_a, var_b = a.variance, b.variance
    assert var_a is not None and var_b is not None
    pooled = ((a.count - 1) * var_a + (b.count - 1) * var_b) / (a.count + b.count - 2)
    if pooled <= 0.0:
        return None
    tau2 = optimal_tau2_ratio(alpha) * 2.0 * pooled / target_n
    return MsprtTuning(tau2=tau2, alpha=alpha, target_n=target_n, pooled_variance=pooled)
