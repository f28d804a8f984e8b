"""Many comparisons at once: Holm's step-down adjustment of p-values.

With a control, two treatments and two metrics a summary holds six p-values;
read one by one at 5 %, the chance that at least one is "significant" by luck
alone is near 26 %. Holm (1979, "A simple sequentially rejective multiple test
procedure") controls that family-wise error rate for any dependence between
the tests, and is uniformly more powerful than Bonferroni: sort the m p-values,
multiply the i-th smallest by (m - i + 1), make the sequence non-decreasing,
cap it at 1. Rejecting where the adjusted value is below alpha is exactly
Holm's procedure at level alpha.
"""

from __future__ import annotations

from collections.abc import Sequence

from automation_server.errors import Invalid


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given (ties get equal adjusted values)."""
    for p in p_values:
        if not 0.0 <= p <= 1.0:
            raise Invalid(f"a p-value must lie in [0, 1], got {p}")
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
