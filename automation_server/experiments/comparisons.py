"""The per-variant entries of a summary and their comparisons with the control."""

from __future__ import annotations

from typing import Any

from automation_server.experiments import stats
from automation_server.experiments.sketch import quantile

ALPHA = 0.05
GroupKey = tuple[int | None, str]  # (revision or None, variant)
# Declared metrics of the experiment's automations: {"latency_ms": {"direction": "lower"}}.
Declared = dict[str, dict[str, Any]]


def direction_of(declared: Declared, metric: str) -> str:
    return str((declared.get(metric) or {}).get("direction") or "higher")


def metric_facts(declared: Declared, names: set[str]) -> dict[str, dict[str, Any]]:
    """Each metric's direction and unit, as the summary echoes them."""
    return {
        name: {
            "direction": direction_of(declared, name),
            "unit": declared.get(name, {}).get("unit"),
        }
        for name in sorted(names | set(declared))
    }


def variant_item(
    key: GroupKey,
    g: dict[str, Any],
    metrics: dict[str, stats.MeanStats],
    durations: dict[int, int],
    by: str,
    declared: Declared,
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
            "metrics": {
                name: _metric_item(m, declared, name) for name, m in sorted(metrics.items())
            },
            "vs_control": None,
        }
    )
    return item


def _metric_item(m: stats.MeanStats, declared: Declared, name: str) -> dict[str, Any]:
    interval = stats.t_interval(m)
    return {
        "count": m.count,
        "mean": m.mean,
        "interval": list(interval) if interval else None,
        "method": "student-t",
        "direction": direction_of(declared, name),
        "unit": declared.get(name, {}).get("unit"),
    }


def _rates(g: dict[str, Any]) -> tuple[int, int]:
    trials = int(g["succeeded"] + g["failed"] + g["timed_out"])
    return int(g["succeeded"]), trials


def comparison(
    base: dict[str, Any],
    other: dict[str, Any],
    base_metrics: dict[str, stats.MeanStats],
    metrics: dict[str, stats.MeanStats],
    declared: Declared,
) -> dict[str, Any]:
    """The variant against the control; ``prob_better`` is the probability that the
    variant is better in the metric's declared direction."""
    s_c, n_c = _rates(base)
    s_v, n_v = _rates(other)
    rate = _compare(
        stats.MeanStats.from_successes(s_c, n_c), stats.MeanStats.from_successes(s_v, n_v)
    )
    _clip_to_rate_range(rate)
    rate["prob_better"] = stats.prob_beats_control_rate(s_c, n_c, s_v, n_v) if n_c and n_v else None
    rate["prob_better_method"] = "beta(1,1) posteriors"
    rate["direction"] = "higher"
    out: dict[str, Any] = {"success_rate": rate, "metrics": {}}
    for name in sorted(set(metrics) & set(base_metrics)):
        cmp = _compare(base_metrics[name], metrics[name])
        higher = stats.prob_beats_control_mean(base_metrics[name], metrics[name])
        lower_is_better = direction_of(declared, name) == "lower"
        cmp["prob_better"] = 1.0 - higher if lower_is_better and higher is not None else higher
        cmp["prob_better_method"] = "normal approximation"
        cmp["direction"] = direction_of(declared, name)
        out["metrics"][name] = cmp
    return out


def adjust_for_many(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Holm's adjustment over every difference with a p-value in the response (each
    treatment's success rate and each metric against the control), written beside each
    one as ``adjusted_p_value``; always-valid intervals have no p-value and are left out."""
    differences = [part["difference"] for item in items for part in _parts(item)]
    tested = [d for d in differences if d.get("p_value") is not None]
    adjusted = stats.holm_adjust([d["p_value"] for d in tested])
    for difference in differences:
        difference["adjusted_p_value"] = None
    for difference, value in zip(tested, adjusted, strict=True):
        difference["adjusted_p_value"] = value
    return {"method": "holm", "comparisons": len(tested)}


def _parts(item: dict[str, Any]) -> list[dict[str, Any]]:
    versus = item.get("vs_control")
    if not versus:
        return []
    return [versus["success_rate"], *versus["metrics"].values()]


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
