"""The per-variant entries of a summary and their comparisons with the control."""

from __future__ import annotations

from typing import Any

from automation_server.experiments import stats
from automation_server.experiments.sketch import quantile

ALPHA = 0.05
GroupKey = tuple[int | None, str]  # (revision or None, variant)


def variant_item(
    key: GroupKey,
    g: dict[str, Any],
    metrics: dict[str, stats.MeanStats],
    durations: dict[int, int],
    by: str,
) -> dict[str, Any]:
    finished = {s: int(g[s]) for s in ("succeeded", "failed", "timed_out", "cancelled", "skipped")}
    # Measured outcomes (origin "run") only: a lost worker says nothing about the variant.
    trials = finished["succeeded"] + finished["failed"] + finished["timed_out"]
    infra = int(g["infrastructure_failures"])
    finished["failed"] += infra  # by status, as the runs show
    wilson = stats.wilson_interval(finished["succeeded"], trials)
    item: dict[str, Any] = {"variant": key[1]}
    if by == "revision":
        item["revision"] = key[0]
    item.update(
        {
            "runs_assigned": int(g["assigned"]),
            "runs_finished": finished,
            "infrastructure_failures": infra,
            "success_rate": {
                "estimate": finished["succeeded"] / trials if trials else None,
                "interval": list(wilson) if wilson else None,
                "successes": finished["succeeded"],
                "trials": trials,
                "method": "wilson",
            },
            "duration_ms": {
                "count": g["duration"].count,
                "p50": quantile(durations, 0.5),
                "p95": quantile(durations, 0.95),
                "mean": g["duration"].mean,
            },
            "metrics": {name: _metric_item(m) for name, m in sorted(metrics.items())},
            "vs_control": None,
        }
    )
    return item


def _metric_item(m: stats.MeanStats) -> dict[str, Any]:
    interval = stats.t_interval(m)
    return {
        "count": m.count,
        "mean": m.mean,
        "interval": list(interval) if interval else None,
        "method": "student-t",
    }


def _rates(g: dict[str, Any]) -> tuple[int, int]:
    trials = int(g["succeeded"] + g["failed"] + g["timed_out"])
    return int(g["succeeded"]), trials


def comparison(
    base: dict[str, Any],
    other: dict[str, Any],
    base_metrics: dict[str, stats.MeanStats],
    metrics: dict[str, stats.MeanStats],
) -> dict[str, Any]:
    s_c, n_c = _rates(base)
    s_v, n_v = _rates(other)
    rate = _compare(
        stats.MeanStats.from_successes(s_c, n_c), stats.MeanStats.from_successes(s_v, n_v)
    )
    _clip_to_rate_range(rate)
    rate["prob_better"] = stats.prob_beats_control_rate(s_c, n_c, s_v, n_v) if n_c and n_v else None
    rate["prob_better_method"] = "beta(1,1) posteriors"
    out: dict[str, Any] = {"success_rate": rate, "metrics": {}}
    for name in sorted(set(metrics) & set(base_metrics)):
        cmp = _compare(base_metrics[name], metrics[name])
        cmp["prob_better"] = stats.prob_beats_control_mean(base_metrics[name], metrics[name])
        cmp["prob_better_method"] = "normal approximation"
        out["metrics"][name] = cmp
    return out


def _clip_to_rate_range(comparison: dict[str, Any]) -> None:
    """A difference of two rates lies in [-1, 1]: intervals are cut there (still valid,
    since the true difference cannot lie outside)."""
    for part in (comparison.get("difference"), comparison.get("always_valid")):
        if part and part.get("interval"):
            low, high = part["interval"]
            part["interval"] = [max(-1.0, low), min(1.0, high)]


def _compare(a: stats.MeanStats, b: stats.MeanStats) -> dict[str, Any]:
    """Welch difference (b - a) and its always-valid mSPRT interval."""
    diff = stats.welch_diff(a, b)
    if diff is None:
        point = b.mean - a.mean if a.mean is not None and b.mean is not None else None
        return {
            "difference": {"estimate": point, "interval": None, "method": "welch"},
            "always_valid": None,
        }
    tuning = stats.default_tau2(a, b, alpha=ALPHA)
    always: dict[str, Any] | None = None
    if tuning is not None:
        low, high = stats.msprt_interval(
            diff.estimate, diff.std_error**2, tau2=tuning.tau2, alpha=ALPHA
        )
        always = {"interval": [low, high], **tuning.to_json()}
    return {"difference": diff.to_json(), "always_valid": always}
