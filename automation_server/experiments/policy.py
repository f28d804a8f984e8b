"""Champion/challenger decisions from sufficient statistics (pure: no database).

The ``auto_promote`` policy of an automation names a metric (``success_rate``
or a reported metric), a good direction, a minimum number of finished runs per
variant, an alpha, and guardrails. Decisions use the always-valid (mSPRT)
interval, so the server may evaluate after every finished run without
inflating the false-promotion rate: with alpha = 0.05 an A/A test promotes a
challenger in at most about 5% of experiments, however many looks it takes.

- rollback: a challenger whose guardrail metric regressed by more than
  ``max_regression`` (the whole always-valid interval of the regression lies
  above it) gets weight 0;
- promote: a challenger whose primary-metric interval excludes zero in the
  good direction becomes the champion;
- nothing is decided while a sample-ratio mismatch is flagged, or before both
  sides have ``min_runs_per_variant`` observations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from automation_server.experiments import stats

SUCCESS_RATE = "success_rate"


@dataclass(frozen=True)
class ArmStats:
    """What the policy needs to know about one variant in the current revision."""

    successes: int
    trials: int
    metrics: Mapping[str, stats.MeanStats] = field(default_factory=dict)

    def metric(self, name: str) -> stats.MeanStats | None:
        if name == SUCCESS_RATE:
            return stats.MeanStats.from_successes(self.successes, self.trials)
        return self.metrics.get(name)


@dataclass(frozen=True)
class Verdict:
    action: Literal["promote", "rollback", "none"]
    variant: str | None
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


def always_valid(
    control: stats.MeanStats, challenger: stats.MeanStats, alpha: float
) -> tuple[float, float, float] | None:
    """(estimate, low, high) of challenger - control with the mSPRT interval, or None."""
    diff = stats.welch_diff(control, challenger)
    tuning = stats.default_tau2(control, challenger, alpha=alpha)
    if diff is None or tuning is None:
        return None
    low, high = stats.msprt_interval(
        diff.estimate, diff.std_error**2, tau2=tuning.tau2, alpha=alpha
    )
    return diff.estimate, low, high


def _enough(policy: Mapping[str, Any], *metrics: stats.MeanStats | None) -> bool:
    minimum = int(policy.get("min_runs_per_variant", 50))
    return all(m is not None and m.count >= minimum for m in metrics)


def _guardrail_breach(
    policy: Mapping[str, Any], control: ArmStats, challenger: ArmStats
) -> tuple[str, dict[str, Any]] | None:
    alpha = float(policy.get("alpha", 0.05))
    for rail in policy.get("guardrails", []):
        c, v = control.metric(rail["metric"]), challenger.metric(rail["metric"])
        if not _enough(policy, c, v):
            continue
        assert c is not None and v is not None
        interval = always_valid(c, v, alpha)
        if interval is None:
            continue
        estimate, low, high = interval
        # Regression is measured in the bad direction: positive means worse.
        reg_low, reg_high = (-high, -low) if rail["direction"] == "higher" else (low, high)
        if reg_low > float(rail["max_regression"]):
            return rail["metric"], {
                "metric": rail["metric"],
                "estimate": estimate,
                "always_valid": [low, high],
                "regression_interval": [reg_low, reg_high],
                "max_regression": rail["max_regression"],
            }
    return None


def _wins(
    policy: Mapping[str, Any], control: ArmStats, challenger: ArmStats
) -> dict[str, Any] | None:
    metric = str(policy["metric"])
    c, v = control.metric(metric), challenger.metric(metric)
    if not _enough(policy, c, v):
        return None
    assert c is not None and v is not None
    interval = always_valid(c, v, float(policy.get("alpha", 0.05)))
    if interval is None:
        return None
    estimate, low, high = interval
    better = low > 0 if policy.get("direction", "higher") == "higher" else high < 0
    if not better:
        return None
    return {
        "metric": metric,
        "estimate": estimate,
        "always_valid": [low, high],
        "alpha": policy.get("alpha", 0.05),
        "direction": policy.get("direction", "higher"),
    }


def evaluate_policy(
    policy: Mapping[str, Any],
    control: tuple[str, ArmStats],
    challengers: Sequence[tuple[str, ArmStats]],
    *,
    srm_flagged: bool,
) -> Verdict:
    """At most one decision: rollbacks (guardrails) first, then a promotion."""
    if srm_flagged:
        return Verdict("none", None, "sample-ratio mismatch flagged: no decision")
    control_name, control_stats = control
    for name, arm in challengers:
        breach = _guardrail_breach(policy, control_stats, arm)
        if breach is not None:
            metric, details = breach
            return Verdict(
                "rollback",
                name,
                f"guardrail '{metric}' regressed beyond {details['max_regression']} "
                f"against '{control_name}' (always-valid interval)",
                details,
            )
    for name, arm in challengers:
        won = _wins(policy, control_stats, arm)
        if won is not None:
            low, high = won["always_valid"]
            return Verdict(
                "promote",
                name,
                f"'{won['metric']}' beats '{control_name}': always-valid "
                f"{100 * (1 - float(won['alpha'])):g}% interval of the difference "
                f"[{low:.4g}, {high:.4g}] excludes 0",
                won,
            )
    return Verdict("none", None, "no challenger is decisively better or worse yet")
