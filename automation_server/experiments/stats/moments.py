"""Sufficient statistics of a sample as (n, mean, M2), merged with Chan's formula.

Rollups keep the count, the mean and M2 (the sum of squared deviations from
the mean) instead of sum(x) and sum(x^2): the one-pass variance
sum(x^2) - sum(x)^2 / n cancels catastrophically when mean^2 >> variance
(durations in ms around 1e9, say), while merging (n, mean, M2) pairs keeps
full precision. Two samples A and B combine as::

    n     = n_a + n_b
    delta = mean_b - mean_a
    mean  = mean_a + delta * n_b / n
    M2    = M2_a + M2_b + delta^2 * n_a * n_b / n

Source: Chan, Golub and LeVeque, "Updating formulae and a pairwise algorithm
for computing sample variances", Stanford CS tech report STAN-CS-79-773
(1979); adding one value x is the same with n_b = 1, mean_b = x, M2_b = 0
(Welford, Technometrics 4 (1962) 419-420).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from automation_server.errors import Invalid
from automation_server.experiments.stats.checks import check_count, finite


@dataclass(frozen=True, slots=True)
class MeanStats:
    """Sufficient statistics of one sample: n, its mean and M2 = sum((x - mean)^2)."""

    count: int
    mean_value: float = 0.0
    m2: float = 0.0

    def __post_init__(self) -> None:
        if self.count < 0 or not (math.isfinite(self.mean_value) and math.isfinite(self.m2)):
            raise Invalid("need count >= 0 and finite moments", code="invalid_stats")
        if self.m2 < 0:
            raise Invalid("a sum of squared deviations cannot be negative", code="invalid_stats")

    @classmethod
    def of(cls, values: Iterable[float]) -> MeanStats:
        """The statistics of the given values (adds them one by one)."""
        out = cls(0)
        for value in values:
            out = out.merge(cls(1, float(value)))
        return out

    @classmethod
    def from_moments(cls, n: int, mean: float, variance: float) -> MeanStats:
        """From a sample's size, mean and sample variance (ddof=1)."""
        return cls(n, mean, max(0.0, variance) * max(0, n - 1))

    @classmethod
    def from_successes(cls, successes: int, n: int) -> MeanStats:
        """The 0/1 outcomes of a success rate: mean s/n, M2 = s (n - s) / n."""
        check_count(successes, n)
        if n == 0:
            return cls(0)
        return cls(n, successes / n, successes * (n - successes) / n)

    def merge(self, other: MeanStats) -> MeanStats:
        """The statistics of both samples together (Chan et al.)."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        n = self.count + other.count
        delta = other.mean_value - self.mean_value
        mean = self.mean_value + delta * other.count / n
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / n
        return MeanStats(n, mean, m2)

    @property
    def mean(self) -> float | None:
        """None if n == 0."""
        return self.mean_value if self.count else None

    @property
    def variance(self) -> float | None:
        """Sample variance (ddof=1) M2 / (n - 1); None if n < 2."""
        if self.count < 2:
            return None
        return self.m2 / (self.count - 1)

    def to_json(self) -> dict[str, Any]:
        variance = self.variance
        return {
            "count": self.count,
            "mean": finite(self.mean),
            "sd": None if variance is None else finite(math.sqrt(variance)),
        }
