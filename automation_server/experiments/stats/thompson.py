"""Bandit allocation: each variant's probability of being the best, as weights.

Thompson sampling (Thompson, Biometrika 25, 1933; Chapelle and Li, NIPS 2011)
gives each variant traffic in proportion to the posterior probability that it
is the best. The probability is estimated by drawing from every variant's
posterior at once and counting how often each draw is the largest:

- success rate: Beta(1 + successes, 1 + failures), a uniform prior;
- a metric: Normal(mean, s²/n), the large-sample posterior of the mean under a
  flat prior, negated when lower is better; a variant with fewer than two
  values gets the pooled mean and variance of all values (one pseudo-run), so
  it is explored rather than starved.

Draws come from a generator seeded by the caller, so a reweight can be
reproduced from its decision record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from automation_server.errors import Invalid
from automation_server.experiments.stats.moments import MeanStats

DRAWS = 20_000
TOTAL_WEIGHT = 10_000


@dataclass(frozen=True)
class Posterior:
    """One variant's posterior: Beta(a, b), or Normal(mean, sd)."""

    kind: str
    a: float
    b: float

    @classmethod
    def rate(cls, successes: int, trials: int) -> Posterior:
        return cls("beta", 1.0 + successes, 1.0 + trials - successes)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "beta":
            return rng.beta(self.a, self.b, size=n)
        return rng.normal(self.a, self.b, size=n)


def mean_posteriors(arms: Sequence[MeanStats], lower_is_better: bool) -> list[Posterior]:
    """Normal posteriors of each arm's mean (sign flipped when lower is better)."""
    pooled = MeanStats(0)
    for arm in arms:
        pooled = pooled.merge(arm)
    if pooled.count < 2 or pooled.mean is None:
        spread, centre = 1.0, 0.0
    else:
        spread, centre = max(pooled.m2 / (pooled.count - 1), 1e-12) ** 0.5, pooled.mean
    sign = -1.0 if lower_is_better else 1.0
    out = []
    for arm in arms:
        if arm.count >= 2 and arm.mean is not None:
            sd = max(arm.m2 / (arm.count - 1), 1e-12) ** 0.5 / arm.count**0.5
            out.append(Posterior("normal", sign * arm.mean, sd))
        else:
            out.append(Posterior("normal", sign * centre, spread))
    return out


def prob_best(posteriors: Sequence[Posterior], seed: int, draws: int = DRAWS) -> list[float]:
    """P(variant i has the largest value), estimated from ``draws`` joint draws."""
    if not posteriors:
        return []
    rng = np.random.default_rng(seed)
    samples = np.stack([p.draw(rng, draws) for p in posteriors])
    winners = np.bincount(np.argmax(samples, axis=0), minlength=len(posteriors))
    return [float(w) / draws for w in winners]


def weights_from(probabilities: Sequence[float], min_weight: int) -> list[int]:
    """Integer weights summing to 10000, each at least ``min_weight``, the rest shared in
    proportion to the probabilities (largest remainders get the leftover units)."""
    k = len(probabilities)
    if k == 0:
        return []
    if min_weight * k > TOTAL_WEIGHT:
        raise Invalid(f"min_weight {min_weight} times {k} variants exceeds {TOTAL_WEIGHT}")
    spare = TOTAL_WEIGHT - min_weight * k
    total = sum(probabilities)
    shares = [spare * (p / total if total > 0 else 1 / k) for p in probabilities]
    floors = [int(s) for s in shares]
    leftover = spare - sum(floors)
    by_remainder = sorted(range(k), key=lambda i: shares[i] - floors[i], reverse=True)
    for i in by_remainder[:leftover]:
        floors[i] += 1
    return [min_weight + f for f in floors]
