"""The experiment summary (``GET /v1/experiments/{id}``) as typed records.

The CLI renders these, never guessed keys: a field the server renames breaks
decoding (and the tests that decode real responses), not the picture.
Defaults let an older server's response decode.
"""

from __future__ import annotations

from msgspec import field

from automation_sdk.models import Model

Interval = list[float | None]


class Difference(Model, kw_only=True):
    """Variant minus control, Welch's interval, its p-value and Holm's adjustment of it."""

    estimate: float | None = None
    interval: Interval | None = None
    p_value: float | None = None
    adjusted_p_value: float | None = None
    method: str = "welch"


class AlwaysValid(Model, kw_only=True):
    interval: Interval | None = None
    tau2: float | None = None


class Comparison(Model, kw_only=True):
    difference: Difference = field(default_factory=Difference)
    always_valid: AlwaysValid | None = None
    #: Probability that the variant is better, in the metric's direction.
    prob_better: float | None = None
    prob_better_method: str | None = None
    direction: str = "higher"


class VersusControl(Model, kw_only=True):
    success_rate: Comparison
    metrics: dict[str, Comparison] = field(default_factory=dict)


class SuccessRate(Model, kw_only=True):
    estimate: float | None = None
    interval: Interval | None = None
    successes: int = 0
    trials: int = 0


class Durations(Model, kw_only=True):
    count: int = 0
    p50: float | None = None
    p95: float | None = None
    mean: float | None = None


class MetricStats(Model, kw_only=True):
    count: int = 0
    mean: float | None = None
    interval: Interval | None = None
    direction: str = "higher"
    unit: str | None = None


class VariantSummary(Model, kw_only=True):
    variant: str
    revision: int | None = None
    runs_assigned: int = 0
    runs_finished: dict[str, int] = field(default_factory=dict)
    #: Runs the platform could not run (left out of every statistic).
    infrastructure_failures: int = 0
    success_rate: SuccessRate = field(default_factory=SuccessRate)
    duration_ms: Durations = field(default_factory=Durations)
    metrics: dict[str, MetricStats] = field(default_factory=dict)
    vs_control: VersusControl | None = None


class SrmCheck(Model, kw_only=True):
    """Sample-ratio mismatch of one revision's randomly assigned runs."""

    automation_id: str
    revision: int
    observed: dict[str, int] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    applicable: bool = True
    flagged: bool = False
    p_value: float | None = None
    reason: str | None = None


class MetricFacts(Model, kw_only=True):
    direction: str = "higher"
    unit: str | None = None


class MultipleComparisons(Model, kw_only=True):
    method: str = "holm"
    comparisons: int = 0


class ExperimentSummary(Model, kw_only=True):
    experiment_id: str
    by: str = "variant"
    control: str
    include_forced: bool = False
    metrics: dict[str, MetricFacts] = field(default_factory=dict)
    variants: list[VariantSummary] = field(default_factory=list)
    srm: list[SrmCheck] = field(default_factory=list)
    srm_flagged: bool = False
    multiple_comparisons: MultipleComparisons | None = None
