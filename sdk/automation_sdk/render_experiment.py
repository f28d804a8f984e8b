"""``automation experiment``: the summary's typed records as tables.

Per revision (with ``--by-revision``) or for the whole experiment: one table
of outcomes per variant, one per metric, then the sample-ratio checks. Each
comparison shows its raw and Holm-adjusted p-value and whether the variant
reads better or worse than the control in the metric's declared direction.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from automation_sdk.models import Automation
from automation_sdk.render import duration
from automation_sdk.summary import (
    Comparison,
    ExperimentSummary,
    Interval,
    MetricFacts,
    SrmCheck,
    VariantSummary,
)

# P(better) at or beyond these reads as better / worse (the dashboard uses the same).
BETTER_AT = 0.95
WORSE_AT = 0.05
STATUSES = ("succeeded", "failed", "timed_out", "cancelled", "skipped")


def experiment_view(summary: ExperimentSummary) -> RenderableType:
    parts: list[RenderableType] = []
    for revision, variants in _periods(summary):
        label = summary.experiment_id + (f", revision {revision}" if revision is not None else "")
        parts.append(_outcomes(variants, label, summary.control))
        names = sorted({name for v in variants for name in v.metrics})
        parts += [_metric(variants, name, summary) for name in names]
    parts += [_srm_line(check) for check in summary.srm] or [
        Text("sample ratio mismatch: no randomly assigned runs yet")
    ]
    if summary.multiple_comparisons and summary.multiple_comparisons.comparisons:
        count = summary.multiple_comparisons.comparisons
        parts.append(
            Text(
                f"Holm p: the p-values adjusted ({summary.multiple_comparisons.method}) over "
                f"all {count} comparisons above; read significance from it, not from p.",
                style="dim",
            )
        )
    return Group(*parts)


def allocation_line(auto: Automation) -> str:
    """How traffic is split now: fixed weights or the bandit, with the current weights."""
    shares = ", ".join(f"{v.name} {v.weight}" for v in auto.variants)
    a = auto.allocation
    if a.get("mode") == "bandit":
        return (
            f"bandit on {a.get('metric')} (reweights every {a.get('every_runs')} runs, "
            f"min weight {a.get('min_weight')}), revision {auto.revision} weights: {shares}"
        )
    return f"fixed weights, revision {auto.revision}: {shares}"


def _periods(summary: ExperimentSummary) -> list[tuple[int | None, list[VariantSummary]]]:
    if summary.by != "revision":
        return [(None, summary.variants)]
    revisions = sorted({v.revision or 0 for v in summary.variants})
    return [(r, [v for v in summary.variants if (v.revision or 0) == r]) for r in revisions]


def _outcomes(variants: list[VariantSummary], label: str, control: str) -> Table:
    table = Table(title=f"Experiment {label}  (control: {control})", title_justify="left")
    for name in ("variant", "runs", "by status", "platform failures", "success rate [95% CI]"):
        table.add_column(name)
    _comparison_columns(table)
    table.add_column("p50", justify="right")
    table.add_column("p95", justify="right")
    for v in variants:
        rate = v.success_rate
        versus = v.vs_control.success_rate if v.vs_control else None
        table.add_row(
            v.variant,
            str(v.runs_assigned),
            _by_status(v.runs_finished),
            str(v.infrastructure_failures),
            _with_interval(rate.estimate, rate.interval, _pct)
            + f" ({rate.successes}/{rate.trials})",
            *_comparison_cells(versus, _pct, v.variant == control),
            duration(v.duration_ms.p50),
            duration(v.duration_ms.p95),
        )
    return table


def _metric(variants: list[VariantSummary], name: str, summary: ExperimentSummary) -> Table:
    facts = summary.metrics.get(name) or MetricFacts()
    unit = f" {facts.unit}" if facts.unit else ""
    way = "lower is better" if facts.direction == "lower" else "higher is better"
    table = Table(
        title=f"metric {name}{f' ({facts.unit})' if facts.unit else ''}, {way}",
        title_justify="left",
    )
    table.add_column("variant")
    table.add_column("n", justify="right")
    table.add_column("mean [95% CI]")
    _comparison_columns(table)
    for v in variants:
        stat = v.metrics.get(name)
        versus = v.vs_control.metrics.get(name) if v.vs_control else None
        table.add_row(
            v.variant,
            str(stat.count if stat else 0),
            _with_interval(stat.mean, stat.interval, _num) + unit if stat else "-",
            *_comparison_cells(versus, _num, v.variant == summary.control),
        )
    return table


def _comparison_columns(table: Table) -> None:
    table.add_column("vs control [95% CI]")
    table.add_column("P(better)", justify="right")
    table.add_column("p", justify="right")
    table.add_column("Holm p", justify="right")
    table.add_column("reading")


def _comparison_cells(
    cmp: Comparison | None, fmt: Callable[[float | None], str], is_control: bool
) -> list[str | Text]:
    if cmp is None:
        return ["(control)" if is_control else "-", "-", "-", "-", ""]
    diff = cmp.difference
    return [
        _with_interval(diff.estimate, diff.interval, fmt),
        _pct(cmp.prob_better),
        _p(diff.p_value),
        _p(diff.adjusted_p_value),
        _reading(cmp.prob_better),
    ]


def _reading(prob_better: float | None) -> Text:
    if prob_better is None:
        return Text("")
    if prob_better >= BETTER_AT:
        return Text("better", style="bold green")
    if prob_better <= WORSE_AT:
        return Text("worse", style="bold red")
    return Text("unclear", style="dim")


def _by_status(finished: dict[str, int]) -> str:
    counts = [f"{finished[s]} {s.replace('_', ' ')}" for s in STATUSES if finished.get(s)]
    return ", ".join(counts) or "none finished"


def _srm_line(check: SrmCheck) -> Text:
    where = f"sample ratio mismatch, revision {check.revision}"
    observed = ", ".join(f"{v} {n}" for v, n in check.observed.items())
    if not check.applicable:
        return Text(f"{where}: not tested ({check.reason or 'not enough runs'})", style="dim")
    if check.flagged:
        return Text(
            f"{where}: FLAGGED (p = {_p(check.p_value)}; observed {observed}): the split does "
            "not follow the weights; check assignment before trusting these numbers",
            style="bold red",
        )
    return Text(
        f"{where}: not flagged (p = {_p(check.p_value)}; observed {observed})", style="green"
    )


def _with_interval(
    value: float | None, interval: Interval | None, fmt: Callable[[float | None], str]
) -> str:
    text = fmt(value)
    if interval and len(interval) == 2:
        text += f" [{fmt(interval[0])}, {fmt(interval[1])}]"
    return text


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"
