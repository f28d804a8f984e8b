"""Rich renderings of API records for the ``automation`` CLI (tables and summaries)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from automation_sdk.models import Automation, Run, Variant

STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "yellow",
    "skipped": "yellow",
    "running": "cyan",
    "queued": "blue",
}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def duration(ms: int | float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


def short_time(stamp: str | None) -> str:
    """``2026-11-24 09:00:01`` (UTC) from an RFC 3339 time."""
    if not stamp:
        return "-"
    try:
        return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp


def short_digest(digest: str | None) -> str:
    return digest.removeprefix("sha256:")[:12] if digest else "-"


def environment_line(variant: Variant) -> str:
    """e.g. ``variant new: environment 3f2a9c0d1e4b (3 packages, Python 3.11.2)``."""
    env = variant.environment
    if env is None:
        return f"variant {variant.name}: no environment (standard library only)"
    count = len(env.packages)
    return (
        f"variant {variant.name}: environment {short_digest(env.digest)} "
        f"({count} package{'s' if count != 1 else ''}, Python {env.python})"
    )


def run_status_text(run: Run) -> Text:
    """The status, marked when the platform (not the program) failed the run."""
    text = status_text(run.status)
    if run.failure_origin == "infrastructure":
        text.append(" (platform)", style="yellow")
    return text


def attempts_text(run: Run) -> str:
    """Earlier attempts, e.g. "1 failed (platform: worker lost), 2 failed (exit 1)"."""
    parts = []
    for a in run.attempts:
        why = a.error or (f"exit {a.exit_code}" if a.exit_code is not None else a.status)
        origin = "platform" if a.origin == "infrastructure" else "program"
        parts.append(f"{a.attempt} {a.status} ({origin}: {why})")
    return ", ".join(parts)


def runs_table(runs: Iterable[Run], automation_name: Callable[[str], str]) -> Table:
    table = Table(title="Runs", title_justify="left")
    table.add_column("id", no_wrap=True)
    for name in ("automation", "variant", "status", "trigger", "environment", "created (UTC)"):
        table.add_column(name)
    table.add_column("duration", justify="right")
    for run in runs:
        table.add_row(
            run.id,
            automation_name(run.automation_id),
            run.variant,
            run_status_text(run),
            run.trigger,
            short_digest(run.environment_digest),
            short_time(run.created_at),
            duration(run.duration_ms),
        )
    return table


def run_summary(run: Run) -> RenderableType:
    """A finished (or queued) run: status, exit code, duration, metrics, outputs."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("run", run.id)
    grid.add_row("variant", f"{run.variant} ({run.assignment.method})")
    grid.add_row("status", run_status_text(run))
    if run.attempts:
        grid.add_row("attempts", attempts_text(run))
    grid.add_row("exit code", "-" if run.exit_code is None else str(run.exit_code))
    grid.add_row("duration", duration(run.duration_ms))
    if run.error:
        grid.add_row("error", Text(run.error, style="red"))
    for name, value in sorted(run.metrics.items()):
        grid.add_row(f"metric {name}", f"{value:g}")
    for key, out in sorted(run.outputs.items()):
        grid.add_row(f"output {key}", str(out))
    return grid


def automations_table(automations: Iterable[Automation]) -> Table:
    table = Table(title="Automations", title_justify="left")
    for name in ("name", "trigger", "experiment", "variants", "revision", "last run"):
        table.add_column(name)
    for a in automations:
        trigger = a.trigger.get("type", "?")
        if trigger == "cron":
            trigger = f"cron {a.trigger.get('schedule')} {a.trigger.get('timezone', '')}"
        elif trigger == "interval":
            trigger = f"every {a.trigger.get('seconds')} s"
        variants = ", ".join(f"{v.name}:{v.weight}" for v in a.variants)
        last = status_text(a.last_run.status) if a.last_run else Text("-")
        table.add_row(
            a.name, trigger.strip(), a.experiment_id or "-", variants, str(a.revision), last
        )
    return table


def automation_summary(auto: Automation) -> RenderableType:
    table = Table(title=f"{auto.name}  (revision {auto.revision})", title_justify="left")
    for name in ("variant", "weight", "digest", "entrypoint", "environment"):
        table.add_column(name)
    for v in auto.variants:
        marker = " (champion)" if v.name == auto.champion else ""
        env = v.environment
        packages = f"{short_digest(env.digest)} ({len(env.packages)} packages)" if env else "-"
        table.add_row(
            v.name + marker, str(v.weight), v.digest[:19], " ".join(v.entrypoint), packages
        )
    return table


# ---- experiment summary ----------------------------------------------------------
#
# The summary's exact field names are the server's (DESIGN section 7). The
# renderer reads them through _pick() with the names below, first match wins,
# so one place adapts it to the server. Shape assumed:
#
#   {"experiment_id": "...", "control": "control",
#    "variants": [{"variant": "control", "runs": 120,
#                  "by_status": {"succeeded": 100, "failed": 20},
#                  "success_rate": {"rate": 0.83, "interval": [0.76, 0.89]},
#                  "duration_ms": {"p50": 812, "p95": 1400},
#                  "metrics": {"score": {"count": 100, "mean": 0.9, "interval": [0.8, 1.0]}},
#                  "vs_control": {"success_rate": {"difference": {"estimate": 0.1,
#                                 "interval": [0.0, 0.2]}, "prob_better": 0.97},
#                                 "metrics": {"score": {...same...}}}}, ...],
#    "srm": {"flagged": false, "p_value": 0.41}}
#
# With ?by=revision: {"revisions": [{"revision": 3, "variants": [...], "srm": {...}}]}.

_KEYS: dict[str, tuple[str, ...]] = {
    "variant": ("variant", "name"),
    "runs": ("runs", "assigned", "runs_assigned"),
    "by_status": ("by_status", "finished", "statuses", "status_counts"),
    "success": ("success_rate", "success"),
    "rate": ("rate", "value", "estimate", "mean"),
    "interval": ("interval", "ci", "wilson", "t_interval"),
    "duration": ("duration_ms", "duration"),
    "vs": ("vs_control", "versus_control", "comparison", "vs"),
    "diff": ("difference", "diff", "welch"),
    "prob": ("prob_better", "p_better", "probability_better", "prob_beats_control"),
    "srm": ("srm", "sample_ratio_mismatch"),
}


def _pick(data: Any, key: str) -> Any:
    if not isinstance(data, Mapping):
        return None
    return next((data[k] for k in _KEYS[key] if k in data), None)


def _num(value: Any, pct: bool = False) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    return f"{value * 100:.1f}%" if pct else f"{value:.4g}"


def _interval(value: Any, pct: bool = False) -> str:
    if isinstance(value, Mapping):
        value = [value.get("low"), value.get("high")]
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"[{_num(value[0], pct)}, {_num(value[1], pct)}]"
    return ""


def _estimate(stat: Any, pct: bool = False) -> str:
    """``value [low, high]`` from a stat object (or a bare number)."""
    if isinstance(stat, int | float) and not isinstance(stat, bool):
        return _num(stat, pct)
    text = _num(_pick(stat, "rate"), pct)
    bounds = _interval(_pick(stat, "interval"), pct)
    return f"{text} {bounds}".strip()


def _comparison(stat: Any, pct: bool = False) -> tuple[str, str]:
    """(difference with interval, P(better)) against the control."""
    if not isinstance(stat, Mapping):
        return "-", "-"
    diff = _pick(stat, "diff")
    prob = _pick(stat, "prob")
    return (_estimate(diff, pct) if diff is not None else "-"), _num(prob, pct=True)


def experiment_view(summary: Mapping[str, Any]) -> RenderableType:
    """The summary as tables: outcomes per variant, one table per metric, the SRM flag."""
    periods = summary.get("revisions")
    if isinstance(periods, list) and periods:
        parts: list[RenderableType] = []
        for period in periods:
            label = f"revision {period.get('revision', '?')}"
            parts.append(_experiment_period(period, summary, label))
        return Group(*parts)
    return _experiment_period(summary, summary, str(summary.get("experiment_id", "")))


def _experiment_period(
    period: Mapping[str, Any], summary: Mapping[str, Any], label: str
) -> RenderableType:
    variants = [v for v in period.get("variants") or [] if isinstance(v, Mapping)]
    control = summary.get("control") or (_pick(variants[0], "variant") if variants else None)
    parts: list[RenderableType] = [_outcomes_table(variants, label, control)]
    metric_names = sorted({m for v in variants for m in (v.get("metrics") or {})})
    parts.extend(_metric_table(variants, name, control) for name in metric_names)
    parts.append(_srm_line(_pick(period, "srm") or _pick(summary, "srm")))
    return Group(*parts)


def _outcomes_table(variants: list[Mapping[str, Any]], label: str, control: Any) -> Table:
    table = Table(title=f"Experiment {label}  (control: {control})", title_justify="left")
    for name in ("variant", "runs", "by status", "platform failures", "success rate [95% CI]"):
        table.add_column(name)
    table.add_column("vs control [95% CI]")
    table.add_column("P(better)", justify="right")
    table.add_column("p50", justify="right")
    table.add_column("p95", justify="right")
    for v in variants:
        statuses = _pick(v, "by_status") or {}
        counts = ", ".join(f"{k} {n}" for k, n in sorted(statuses.items()) if n)
        diff, prob = _comparison(_pick(_pick(v, "vs"), "success"), pct=True)
        durations = _pick(v, "duration") or {}
        table.add_row(
            str(_pick(v, "variant")),
            str(_pick(v, "runs") if _pick(v, "runs") is not None else "-"),
            counts or "-",
            str(v.get("infrastructure_failures", "-")),
            _estimate(_pick(v, "success"), pct=True) or "-",
            diff,
            prob,
            duration(durations.get("p50")),
            duration(durations.get("p95")),
        )
    return table


def _metric_table(variants: list[Mapping[str, Any]], metric: str, control: Any) -> Table:
    table = Table(title=f"metric {metric}", title_justify="left")
    table.add_column("variant")
    table.add_column("n", justify="right")
    table.add_column("mean [95% CI]")
    table.add_column(f"vs {control} [95% CI]")
    table.add_column("P(better)", justify="right")
    for v in variants:
        stat = (v.get("metrics") or {}).get(metric) or {}
        versus = (_pick(v, "vs") or {}).get("metrics") or {}
        diff, prob = _comparison(versus.get(metric))
        count = stat.get("count") if isinstance(stat, Mapping) else None
        table.add_row(str(_pick(v, "variant")), str(count or 0), _estimate(stat) or "-", diff, prob)
    return table


def _srm_line(srm: Any) -> Text:
    if not isinstance(srm, Mapping):
        return Text("sample ratio mismatch: not computed")
    p_value = _num(srm.get("p_value"))
    if srm.get("flagged"):
        return Text(
            f"sample ratio mismatch: FLAGGED (p = {p_value}): the split does not follow "
            "the weights; check assignment before trusting these numbers",
            style="bold red",
        )
    return Text(f"sample ratio mismatch: not flagged (p = {p_value})", style="green")
