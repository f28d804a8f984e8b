"""Experiments: the list, and one experiment's comparison table and charts: each
treatment's cumulative effect against the control, and the per-bucket overlays."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from litestar import Controller, Response, get
from litestar.params import FromPath, FromQuery

from automation_server.api.deps import ServicesDep
from automation_server.api.ui import format as fmt
from automation_server.api.ui.chart import (
    Chart,
    EffectChart,
    EffectValue,
    Point,
    colors_for,
    effect_chart,
    line_chart,
    tick_text,
)
from automation_server.api.ui.deps import SessionDep
from automation_server.api.ui.render import page
from automation_server.api.ui.views import metric_names, variant_names
from automation_server.automations.schemas import AutomationOut
from automation_server.errors import NotFound
from automation_server.experiments.effects import (
    SUCCESS_RATE,
    EffectPoint,
    Effects,
)
from automation_server.experiments.timeseries import BUCKETS
from automation_server.ids import utcnow
from automation_server.security.accounts import Caller
from automation_server.services import Services

# About this many points per line: enough to see a trend, few enough to read.
TARGET_POINTS = 90
AUTOMATION_SCAN_LIMIT = 500


def auto_bucket(first_run_at: str | None, now: datetime) -> str:
    """The finest bucket that keeps a line under ``TARGET_POINTS`` points, from the
    experiment's age: 1 min up to 1.5 h old, then 5 min, 15 min, 1 h, 6 h and 1 day, so
    a chart has roughly 20 to 90 points (a younger experiment fewer, a minute being the
    finest bucket the rollups keep; one older than 90 days more, a day each)."""
    first = fmt.parse_time(first_run_at)
    span = (now - first).total_seconds() if first else 0.0
    for name, step in BUCKETS.items():
        if span / step <= TARGET_POINTS:
            return name
    return list(BUCKETS)[-1]


def automations_of(
    services: Services, caller: Caller, experiment_id: str, known_ids: list[str]
) -> list[AutomationOut]:
    """Live automations running the experiment now or that ran it (deleted ones left out)."""
    current = services.automations.list_page(
        caller, name=None, limit=AUTOMATION_SCAN_LIMIT, cursor=None
    ).items
    found = {a.id: a for a in current if a.experiment_id == experiment_id}
    for automation_id in known_ids:
        if automation_id not in found:
            try:
                found[automation_id] = services.automations.get(caller, automation_id)
            except NotFound:
                continue
    return sorted(found.values(), key=lambda a: a.name)


def _series(data: dict[str, Any], key: str) -> list[tuple[str, list[Point]]]:
    return [
        (s["variant"], [(fmt.parse_time(p["t"]) or utcnow(), p[key]) for p in s["points"]])
        for s in data["series"]
    ]


def charts_for(
    services: Services,
    caller: Caller,
    experiment_id: str,
    *,
    metrics: list[str],
    bucket: str,
    include_forced: bool,
    colors: dict[str, str],
) -> list[tuple[str, Chart]]:
    """One overlay chart per metric, then success rate and runs started; (id, chart) pairs."""

    def series(metric: str | None) -> dict[str, Any]:
        return services.experiments.timeseries(
            caller,
            experiment_id,
            metric=metric,
            bucket=bucket,
            since=None,
            until=None,
            include_forced=include_forced,
        )

    def count_label(v: float) -> str:
        return f"{round(v):,}"  # runs are whole: "9", not "9.00"

    charts: list[tuple[str, Chart]] = []
    for name in metrics:
        data = _series(series(name), "metric_mean")
        charts.append(
            (
                f"metric:{name}",
                line_chart(f"{name} — mean", data, colors=colors, y_label=fmt.number),
            )
        )
    base = series(None)
    rate_label: Callable[[float], str] = lambda v: fmt.percent(v, 0)  # noqa: E731
    charts.append(
        (
            "success_rate",
            line_chart(
                "Success rate",
                _series(base, "success_rate"),
                colors=colors,
                y_label=fmt.percent,
                tick_label=rate_label,
                y_floor=0.0,
                y_ceiling=1.0,
            ),
        )
    )
    charts.append(
        (
            "runs",
            line_chart(
                "Runs started",
                _series(base, "count"),
                colors=colors,
                y_label=count_label,
                y_floor=0.0,
            ),
        )
    )
    return charts


def _signed_tick(value: float, step: float, unit: str = "") -> str:
    """+50 pp, 0, -50 pp (a typographic minus): the axis of a difference is signed."""
    text = tick_text(value, step)
    if text == "0":
        return text
    sign = "" if text.startswith("\u2212") else "+"
    return f"{sign}{text}{unit}"


def _effect_values(effects: Effects) -> list[tuple[str, list[EffectValue]]]:
    def value(p: EffectPoint) -> EffectValue:
        note = f"{p.treatment.count} vs {p.control.count} measured runs"
        return EffectValue(p.t, p.estimate, p.interval, note)

    return [(s.variant, [value(p) for p in s.points]) for s in effects.series]


def effect_charts(
    services: Services,
    caller: Caller,
    experiment_id: str,
    *,
    summary: dict[str, Any],
    bucket: str,
    colors: dict[str, str],
) -> list[tuple[str, EffectChart]]:
    """The success rate's and each metric's cumulative effect chart; (id, chart) pairs."""
    control = summary["control"]
    charts = []
    for measure in [SUCCESS_RATE, *metric_names(summary)]:
        effects = services.effects.effects(
            caller,
            experiment_id,
            measure=measure,
            control=control,
            bucket=bucket,
            include_forced=summary["include_forced"],
        )
        facts = summary["metrics"].get(measure, {})
        charts.append((f"effect:{measure}", _effect_chart(effects, facts, colors)))
    return charts


def _effect_chart(effects: Effects, facts: dict[str, Any], colors: dict[str, str]) -> EffectChart:
    rate = effects.measure == SUCCESS_RATE
    unit = "pp" if rate else str(facts.get("unit") or "")
    name = "Success rate" if rate else effects.measure
    note = ""
    if effects.complete_from is not None:
        note = (
            f"From {effects.complete_from:%Y-%m-%d %H:%M} UTC on: the spread of earlier "
            "minutes is not known (recorded before it was kept)."
        )

    def reading(v: EffectValue) -> str:
        text = fmt.difference(v.estimate, v.interval, points=rate)
        return text if rate or not unit else f"{text} {unit}"

    def tick(value: float, step: float) -> str:
        return _signed_tick(value * 100, step * 100, " pp") if rate else _signed_tick(value, step)

    title = f"{name} ({unit})" if unit else name
    return effect_chart(
        f"{title} against {effects.control}",
        _effect_values(effects),
        colors=colors,
        reading=reading,
        tick_label=tick,
        better="down" if facts.get("direction") == "lower" else "up",
        bounds=(-1.0, 1.0) if rate else None,
        note=note,
    )


class ExperimentPages(Controller):
    path = "/experiments"

    @get("/", sync_to_thread=True)
    def list_experiments(self, services: ServicesDep, ui: SessionDep) -> Response[str]:
        items = services.experiments.list_all(ui.caller)["items"]
        names = {
            a.id: a.name
            for a in services.automations.list_page(
                ui.caller, name=None, limit=AUTOMATION_SCAN_LIMIT, cursor=None
            ).items
        }
        return page(
            "experiments.html", section="experiments", session=ui, experiments=items, names=names
        )

    @get("/{experiment_id:str}", sync_to_thread=True)
    def show(
        self,
        experiment_id: FromPath[str],
        services: ServicesDep,
        ui: SessionDep,
        by: FromQuery[str] = "variant",
        control: FromQuery[str | None] = None,
        include_forced: FromQuery[bool] = False,
        bucket: FromQuery[str | None] = None,
    ) -> Response[str]:
        caller = ui.caller
        entry = next(
            (
                e
                for e in services.experiments.list_all(caller)["items"]
                if e["experiment_id"] == experiment_id
            ),
            None,
        )
        automations = automations_of(
            services, caller, experiment_id, entry["automation_ids"] if entry else []
        )
        common: dict[str, Any] = {
            "section": "experiments",
            "session": ui,
            "experiment_id": experiment_id,
            "automations": automations,
        }
        if entry is None:
            if not automations:
                raise NotFound(f"no experiment '{experiment_id}' in this organization")
            return page("experiment.html", summary=None, **common)
        summary = services.experiments.summary(
            caller, experiment_id, by=by, control=control or None, include_forced=include_forced
        )
        names = variant_names(summary)
        metrics = metric_names(summary)
        colors = colors_for(names)
        automatic = auto_bucket(entry["first_run_at"], utcnow())
        chosen = bucket if bucket in BUCKETS else automatic
        return page(
            "experiment.html",
            summary=summary,
            entry=entry,
            names=names,
            metrics=metrics,
            colors=colors,
            bucket=chosen,
            bucket_asked=bucket if bucket in BUCKETS else None,
            auto_bucket=automatic,
            buckets=list(BUCKETS),
            effect_charts=effect_charts(
                services, caller, experiment_id, summary=summary, bucket=chosen, colors=colors
            ),
            charts=charts_for(
                services,
                caller,
                experiment_id,
                metrics=metrics,
                bucket=chosen,
                include_forced=include_forced,
                colors=colors,
            ),
            promotable={
                name: [a for a in automations if any(v.name == name for v in a.variants)]
                for name in names
            },
            **common,
        )
