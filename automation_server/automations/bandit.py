"""Bandit allocation: after every ``every_runs`` randomly assigned outcomes of the
current revision, each variant's weight becomes its probability of being the best.

The probability comes from Thompson sampling over every run the server assigned
to the automation (all revisions, outcomes of origin ``run`` only: the rollups
hold nothing else), in the direction declared for the metric. Each weight is at
least ``min_weight``; together they make 10000. The new weights are a new
revision with a ``reweight`` decision, so every allocation stays on record.
No reweight while the current revision's sample ratio is flagged (the
assignment itself is in doubt), and a champion ends the bandit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from automation_server.automations.store import VariantDraft
from automation_server.experiments import stats
from automation_server.experiments.policy import SUCCESS_RATE, ArmStats
from automation_server.experiments.stats.thompson import (
    DRAWS,
    Posterior,
    mean_posteriors,
    prob_best,
    weights_from,
)


@dataclass(frozen=True)
class Reweight:
    drafts: list[VariantDraft]
    best: str
    facts: dict[str, Any]

    @property
    def reason(self) -> str:
        shares = ", ".join(f"{name} {w}" for name, w in self.facts["weights"].items())
        return (
            f"bandit on {self.facts['metric']}: weights set to each variant's probability "
            f"of being the best ({shares})"
        )


def seed_for(automation_id: str, revision: int) -> int:
    """The generator's seed: the same automation and revision draw the same numbers."""
    digest = hashlib.sha256(f"{automation_id}:{revision}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def plan_reweight(
    allocation: Mapping[str, Any],
    metrics: Mapping[str, Any],
    drafts: list[VariantDraft],
    arms: Mapping[str, ArmStats],
    seed: int,
) -> Reweight:
    metric = str(allocation["metric"])
    names = [d.name for d in drafts]
    posteriors = _posteriors(metric, metrics, [arms.get(n) for n in names])
    probabilities = prob_best(posteriors, seed)
    weights = weights_from(probabilities, int(allocation["min_weight"]))
    new = [replace(d, weight=w) for d, w in zip(drafts, weights, strict=True)]
    best = names[max(range(len(names)), key=lambda i: probabilities[i])]
    facts = {
        "metric": metric,
        "method": "thompson sampling",
        "draws": DRAWS,
        "seed": seed,
        "prob_best": dict(zip(names, probabilities, strict=True)),
        "weights": dict(zip(names, weights, strict=True)),
        "runs": {n: (arms[n].trials if n in arms else 0) for n in names},
        "min_weight": int(allocation["min_weight"]),
    }
    return Reweight(new, best, facts)


def _posteriors(
    metric: str, metrics: Mapping[str, Any], arms: list[ArmStats | None]
) -> list[Posterior]:
    if metric == SUCCESS_RATE:
        return [Posterior.rate(a.successes, a.trials) if a else Posterior.rate(0, 0) for a in arms]
    lower = (metrics.get(metric) or {}).get("direction") == "lower"
    values = [(a.metrics.get(metric) if a else None) or stats.MeanStats(0) for a in arms]
    return mean_posteriors(values, lower_is_better=lower)
