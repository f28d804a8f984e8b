"""Confidence intervals: Wilson for rates, Student t for means, Welch for differences."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scipy import stats as sps

from automation_server.experiments.stats.checks import (
    check_count,
    check_probability,
    finite,
    interval_json,
)
from automation_server.experiments.stats.moments import MeanStats


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion, without continuity correction.

    With p = successes / n and z = Phi^-1(1 - (1 - confidence) / 2)::

        (p + z^2/(2n) -+ z * sqrt(p(1-p)/n + z^2/(4n^2))) / (1 + z^2/n)

    Source: E. B. Wilson, "Probable inference, the law of succession, and
    statistical inference", JASA 22 (1927) 209-212; Newcombe, Statistics in
    Medicine 17 (1998) 857-872, method 3. None when n == 0.
    """
    check_count(successes, n)
    check_probability(confidence, "confidence")
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


def t_interval(stats: MeanStats, confidence: float = 0.95) -> tuple[float, float] | None:
    """Student t interval for the mean: mean -+ t_{1-a/2, n-1} * s / sqrt(n).

    Source: W. S. Gosset ("Student"), Biometrika 6 (1908) 1-25; any textbook,
    e.g. Casella and Berger, Statistical Inference, 2nd ed., section 9.2.
    None if n < 2. Constant data (variance 0) gives the zero-width interval
    [mean, mean] that the formula yields.
    """
    check_probability(confidence, "confidence")
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
            "estimate": finite(self.estimate),
            "interval": interval_json(self.low, self.high),
            "std_error": finite(self.std_error),
            "df": finite(self.df),
            "p_value": finite(self.p_value),
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
    check_probability(confidence, "confidence")
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
