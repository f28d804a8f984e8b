"""Statistics for experiment summaries, computed from SQL sufficient statistics.

Every function takes plain numbers (counts, sums, sums of squares) so the
endpoint can aggregate runs in SQL and never loop over them in Python. The
distributions and numerics come from scipy; every formula below names its
source so the README can cite it. Results are frozen dataclasses whose
``to_json()`` gives JSON-safe dicts (no NaN or infinity: ``None`` instead).

Invalid inputs (negative counts, successes above n, confidence outside (0, 1))
raise :class:`automation_server.errors.Invalid`; "not enough data" is not an
error and gives ``None``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from scipy import integrate, optimize, special
from scipy import stats as sps

from automation_server.errors import Invalid

# Rounding bound of the one-pass variance, as a multiple of n * eps * sum(x^2).
# Summing n terms naively (as SQL SUM may) is off by at most (n - 1) * eps *
# sum(|x|) (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed.,
# section 4.2). With Cauchy-Schwarz, sum(x)^2 / n is then off by at most
# 2 (n - 1) eps sum(x^2) and sum(x^2) by (n - 1) eps sum(x^2), so a deviation
# sum below 3 (n - 1) eps sum(x^2) may be pure rounding. Such data counts as
# constant (its coefficient of variation is below about 3e-8 * sqrt(n), which
# real run metrics do not reach).
_CANCELLATION_FACTOR = 4.0 * sys.float_info.epsilon


def _check_probability(value: float, name: str) -> None:
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise Invalid(
            f"{name} must be strictly between 0 and 1, got {value!r}", code=f"invalid_{name}"
        )


def _check_count(successes: int, n: int) -> None:
    if n < 0 or not 0 <= successes <= n:
        raise Invalid(f"need 0 <= successes <= n, got {successes}/{n}", code="invalid_counts")


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: map them to None (null)."""
    return value if value is not None and math.isfinite(value) else None


def _interval_json(low: float, high: float) -> list[float | None]:
    return [_finite(low), _finite(high)]


# --- success rate ---------------------------------------------------------


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion, without continuity correction.

    With p = successes / n and z = Phi^-1(1 - (1 - confidence) / 2)::

        (p + z^2/(2n) -+ z * sqrt(p(1-p)/n + z^2/(4n^2))) / (1 + z^2/n)

    Source: E. B. Wilson, "Probable inference, the law of succession, and
    statistical inference", JASA 22 (1927) 209-212; Newcombe, Statistics in
    Medicine 17 (1998) 857-872, method 3. None when n == 0.
    """
    _check_count(successes, n)
    _check_probability(confidence, "confidence")
    if n == 0:
        return None
    z = float(sps.norm.ppf(1.0 - (1.0 - confidence) / 2.0))
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n)) / (1.0 + z2n)
    # At p = 0 (or 1) the exact bound is 0 (or 1); rounding would give 1e-17 off it.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


# --- means ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeanStats:
    """Sufficient statistics of one sample: n, sum(x), sum(x^2)."""

    count: int
    sum: float
    sum_sq: float

    def __post_init__(self) -> None:
        if self.count < 0 or not (math.isfinite(self.sum) and math.isfinite(self.sum_sq)):
            raise Invalid("need count >= 0 and finite sums", code="invalid_stats")
        if self.sum_sq < 0:
            raise Invalid("a sum of squares cannot be negative", code="invalid_stats")

    @classmethod
    def from_successes(cls, successes: int, n: int) -> MeanStats:
        """The 0/1 outcomes of a success rate: sum = sum of squares = successes."""
        _check_count(successes, n)
        return cls(count=n, sum=float(successes), sum_sq=float(successes))

    @property
    def mean(self) -> float | None:
        """sum / n; None if n == 0."""
        return self.sum / self.count if self.count else None

    @property
    def variance(self) -> float | None:
        """Sample variance (ddof=1): (sum(x^2) - sum(x)^2 / n) / (n - 1); None if n < 2.

        The one-pass formula cancels catastrophically when mean^2 >> variance
        (it loses about log10(mean^2 / variance) significant digits), so the
        result can come out slightly negative or as tiny noise for constant
        data. A deviation sum below the rounding bound ``4 n eps sum(x^2)``
        (eps = 2.2e-16) is therefore reported as 0, never as noise or a
        negative number.
        Source: Chan, Golub and LeVeque, "Algorithms for computing the sample
        variance", The American Statistician 37 (1983) 242-247.
        """
        if self.count < 2:
            return None
        deviations = self.sum_sq - self.sum * (self.sum / self.count)
        if deviations <= _CANCELLATION_FACTOR * self.count * self.sum_sq:
            return 0.0
        return deviations / (self.count - 1)

    def to_json(self) -> dict[str, Any]:
        variance = self.variance
        return {
            "count": self.count,
            "mean": _finite(self.mean),
            "sd": None if variance is None else _finite(math.sqrt(variance)),
        }


def t_interval(stats: MeanStats, confidence: float = 0.95) -> tuple[float, float] | None:
    """Student t interval for the mean: mean -+ t_{1-a/2, n-1} * s / sqrt(n).

    Source: W. S. Gosset ("Student"), Biometrika 6 (1908) 1-25; any textbook,
    e.g. Casella and Berger, Statistical Inference, 2nd ed., section 9.2.
    None if n < 2. Constant data (variance 0) gives the zero-width interval
    [mean, mean] that the formula yields.
    """
    _check_probability(confidence, "confidence")
    mean, variance = stats.mean, stats.variance
    if mean is None or variance is None:
        return None
    t = float(sps.t.ppf(1.0 - (1.0 - confidence) / 2.0, stats.count - 1))
    half = t * math.sqrt(variance / stats.count)
    return mean - half, mean + half


@dataclass(frozen=True, slots=True)
class Diff:
    """A difference of means b - a with its Welch interval."""

    estimate: float
    low: float
    high: float
    std_error: float
    df: float
    p_value: float
    confidence: float

    def to_json(self) -> dict[str, Any]:
        return {
            "estimate": _finite(self.estimate),
            "interval": _interval_json(self.low, self.high),
            "std_error": _finite(self.std_error),
            "df": _finite(self.df),
            "p_value": _finite(self.p_value),
            "confidence": self.confidence,
            "method": "welch",
        }


def welch_diff(a: MeanStats, b: MeanStats, confidence: float = 0.95) -> Diff | None:
    """Difference b - a with Welch's unequal-variance t interval and two-sided p-value.

    With v_i = s_i^2 / n_i::

        se = sqrt(v_a + v_b)
        df = (v_a + v_b)^2 / (v_a^2 / (n_a - 1) + v_b^2 / (n_b - 1))   (Welch-Satterthwaite)
        interval = (mean_b - mean_a) -+ t_{1-a/2, df} * se

    Sources: B. L. Welch, Biometrika 34 (1947) 28-35; F. E. Satterthwaite,
    Biometrics Bulletin 2 (1946) 110-114. For success rates pass
    :meth:`MeanStats.from_successes` (0/1 outcomes), the unpooled Wald-type
    difference of proportions with a t quantile.

    None when the interval is undefined: fewer than 2 observations on either
    side, or both samples constant (se = 0 makes df 0/0, and a zero-width
    interval would claim a certainty that two samples cannot give, e.g. 10/10
    against 10/10 successes). The caller still has both means for the point
    difference. One constant side is fine: df becomes n_other - 1.
    """
    _check_probability(confidence, "confidence")
    if a.count < 2 or b.count < 2:
        return None
    va, vb = _squared_se(a), _squared_se(b)
    se2 = va + vb
    if se2 <= 0.0:
        return None
    se = math.sqrt(se2)
    df = se2 * se2 / (va * va / (a.count - 1) + vb * vb / (b.count - 1))
    estimate = _mean(b) - _mean(a)
    t = float(sps.t.ppf(1.0 - (1.0 - confidence) / 2.0, df))
    p_value = float(2.0 * sps.t.sf(abs(estimate) / se, df))
    return Diff(estimate, estimate - t * se, estimate + t * se, se, df, p_value, confidence)


def _mean(stats: MeanStats) -> float:
    mean = stats.mean
    assert mean is not None  # callers check count >= 2 first
    return mean


def _squared_se(stats: MeanStats) -> float:
    """s^2 / n, the variance of the sample mean (callers check count >= 2)."""
    variance = stats.variance
    assert variance is not None
    return variance / stats.count


# --- probability to beat the control ---------------------------------------


def prob_beats_control_rate(s_c: int, n_c: int, s_v: int, n_v: int) -> float:
    """P(p_v > p_c) with independent Beta(1 + s, 1 + n - s) posteriors (uniform priors).

    P(p_v > p_c) = integral_0^1 f_v(x) F_c(x) dx = E[F_c(p_v)]. Substituting
    x = F_v^-1(u) gives integral_0^1 F_c(F_v^-1(u)) du, and by symmetry the
    same probability is 1 - integral_0^1 F_v(F_c^-1(u)) du. We integrate over
    the quantiles of the narrower posterior, so the integrand is the CDF of
    the wider one: bounded, monotone and free of the spikes (pdf form) or
    steps (the other substitution) that adaptive quadrature can step over once
    one side has many runs. F is ``scipy.special.betainc``, F^-1
    ``betaincinv`` and the integral ``scipy.integrate.quad`` over the
    quantiles 1e-10 .. 1 - 1e-10 (absolute error below 1e-8 against the
    closed-form sum in the tests).
    Source: Bayesian A/B testing with conjugate Beta-binomial posteriors,
    Gelman et al., Bayesian Data Analysis, 3rd ed., chapter 2.
    """
    _check_count(s_c, n_c)
    _check_count(s_v, n_v)
    control = (1.0 + s_c, 1.0 + n_c - s_c)
    variant = (1.0 + s_v, 1.0 + n_v - s_v)
    if _beta_variance(*variant) <= _beta_variance(*control):
        return _expected_cdf(control, at=variant)
    return 1.0 - _expected_cdf(variant, at=control)


def _beta_variance(a: float, b: float) -> float:
    return a * b / ((a + b) ** 2 * (a + b + 1.0))


# The integrand lies in [0, 1], so leaving out u < eps and u > 1 - eps changes
# the integral by at most 2 * eps; it also keeps quad away from the extreme
# quantiles, where F^-1 of a skewed Beta runs up a wall within 1e-15 of u = 1.
_QUANTILE_EPS = 1e-10
# Break points that make quad look into both tails: a posterior's whole
# contribution can sit in the last 1e-4 of the other's quantiles, which the
# first 21-point rule over [0, 1] would sample once or not at all.
_TAIL_BREAKS = (1e-8, 1e-6, 1e-4, 1e-2, 0.5, 1 - 1e-2, 1 - 1e-4, 1 - 1e-6, 1 - 1e-8)


def _expected_cdf(cdf_of: tuple[float, float], *, at: tuple[float, float]) -> float:
    """E[F(X)] with F the Beta(cdf_of) CDF and X ~ Beta(at): integral_0^1 F(F_at^-1(u)) du."""

    def integrand(u: float) -> float:
        return float(special.betainc(*cdf_of, special.betaincinv(*at, u)))

    value, _error = integrate.quad(
        integrand,
        _QUANTILE_EPS,
        1.0 - _QUANTILE_EPS,
        points=_TAIL_BREAKS,
        epsabs=1e-10,
        epsrel=1e-10,
        limit=200,
    )
    # The left-out top slice, where the integrand is between F(F_at^-1(1 - eps)) and 1.
    value += _QUANTILE_EPS * integrand(1.0 - _QUANTILE_EPS)
    return min(1.0, max(0.0, float(value)))


def prob_beats_control_mean(a: MeanStats, b: MeanStats) -> float | None:
    """P(mu_b > mu_a) by the normal approximation Phi((mean_b - mean_a) / se).

    se = sqrt(s_a^2/n_a + s_b^2/n_b): the large-sample posterior of the
    difference under flat priors (Gelman et al., Bayesian Data Analysis,
    3rd ed., section 4.1). None when either side has fewer than 2
    observations or both are constant (no spread to scale the difference by).
    """
    if a.count < 2 or b.count < 2:
        return None
    se2 = _squared_se(a) + _squared_se(b)
    if se2 <= 0.0:
        return None
    return float(sps.norm.cdf((_mean(b) - _mean(a)) / math.sqrt(se2)))


# --- always-valid interval (mSPRT) -----------------------------------------


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
    _check_probability(alpha, "alpha")
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
    _check_probability(alpha, "alpha")
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
            "tau2": _finite(self.tau2),
            "alpha": self.alpha,
            "target_n_per_variant": self.target_n,
            "pooled_variance": _finite(self.pooled_variance),
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
    _check_probability(alpha, "alpha")
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


# --- sample ratio mismatch -------------------------------------------------

SRM_MIN_EXPECTED = 5.0
"""Smallest expected count per variant for the chi-square approximation (Cochran's rule)."""


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Outcome of a sample-ratio-mismatch check."""

    applicable: bool
    flagged: bool
    p_value: float | None
    statistic: float | None
    df: int | None
    threshold: float
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "applicable": self.applicable,
            "flagged": self.flagged,
            "p_value": _finite(self.p_value),
            "statistic": _finite(self.statistic),
            "df": self.df,
            "threshold": self.threshold,
            "reason": self.reason,
        }


def srm_check(
    observed: Sequence[int], weights: Sequence[float], threshold: float = 0.001
) -> SrmResult:
    """Pearson chi-square goodness of fit of assignment counts against the weights.

    expected_i = N * w_i / sum(w); statistic = sum((o_i - e_i)^2 / e_i) with
    k - 1 degrees of freedom (``scipy.stats.chisquare``); flagged when
    p < threshold. Zero-weight variants with no runs are left out; a run
    assigned to a zero-weight variant is a mismatch by itself (flagged, p = 0).
    Not applicable with fewer than 2 weighted variants or when an expected
    count is below 5 (Cochran, Biometrics 10 (1954) 417-451), where the
    chi-square approximation is poor. Source for SRM checks in experiments:
    Fabijan et al., "Diagnosing sample ratio mismatch in online controlled
    experiments", KDD 2019.
    """
    _check_probability(threshold, "threshold")
    if len(observed) != len(weights):
        raise Invalid("observed and weights must have the same length", code="invalid_srm")
    if any(o < 0 for o in observed) or any(not (math.isfinite(w) and w >= 0) for w in weights):
        raise Invalid("counts and weights must be >= 0", code="invalid_srm")

    def not_applicable(reason: str) -> SrmResult:
        return SrmResult(False, False, None, None, None, threshold, reason)

    if any(w == 0 and o > 0 for o, w in zip(observed, weights, strict=True)):
        return SrmResult(True, True, 0.0, None, None, threshold, "runs on a zero-weight variant")
    cells = [(o, w) for o, w in zip(observed, weights, strict=True) if w > 0]
    if len(cells) < 2:
        return not_applicable("fewer than 2 variants with weight > 0")
    total = sum(o for o, _ in cells)
    weight_sum = math.fsum(w for _, w in cells)
    expected = [total * w / weight_sum for _, w in cells]
    if min(expected) < SRM_MIN_EXPECTED:
        return not_applicable(f"an expected count is below {SRM_MIN_EXPECTED:g}")
    result = sps.chisquare([o for o, _ in cells], expected)
    p_value = float(result.pvalue)
    return SrmResult(
        True, p_value < threshold, p_value, float(result.statistic), len(cells) - 1, threshold
    )
