"""Sample-ratio mismatch: assignment counts against the weights."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats as sps

from automation_server.errors import Invalid
from automation_server.experiments.stats.checks import check_probability, finite

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
            "p_value": finite(self.p_value),
            "statistic": finite(self.statistic),
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
    check_probability(threshold, "threshold")
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
