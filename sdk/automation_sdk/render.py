"""Rich renderings of API records for the ``automation`` CLI (tables and summaries)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from rich.console import RenderableType
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
    for name in ("name", "trigger", "experiment", "variants", "revision", "last run", "enabled"):
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
            a.name,
            trigger.strip(),
            a.experiment_id or "-",
            variants,
            str(a.revision),
            last,
            _enabled_text(a),
        )
    return table


def _enabled_text(a: Automation) -> Text:
    if a.enabled:
        return Text("enabled")
    if a.disabled_reason:
        return Text(f"auto-disabled: {a.disabled_reason}", style="red")
    return Text("disabled", style="yellow")


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
