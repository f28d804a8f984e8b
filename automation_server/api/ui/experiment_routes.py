"""Experiments: the list, and one experiment's comparison table and overlay charts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from litestar import Controller, Response, get
from litestar.params import FromPath, FromQuery

from automation_server.api.deps import ServicesDep
from automation_server.api.ui import format as fmt
from automation_server.api.ui.chart import Chart, Point, colors_for, line_chart
from automation_server.api.ui.deps import SessionDep
from automation_server.api.ui.render import page
from automation_server.api.ui.views import metric_names, variant_names
from automation_server.automations.schemas import AutomationOut
from automation_server.errors import NotFound
from automation_server.experiments.timeseries import BUCKETS
from automation_server.ids import utcnow
from automation_server.security.accounts import Caller
from automation_server.services import Services

# About this many points per line: enough to see a trend, few enough to read.
TARGET_POINTS = 90
AUTOMATION_SCAN_LIMIT = 500


def auto_bucket(first_run_at: str | None, now: datetime) -> str:
    """The finest bucket that keeps a line under ``TARGET_POINTS`` points."""
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
        return fmt.number(v)

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
        chosen = bucket if bucket in BUCKETS else auto_bucket(entry["first_run_at"], utcnow())
        return page(
            "experiment.html",
            summary=summary,
            entry=entry,
            names=names,
            metrics=metrics,
            colors=colors,
            bucket=chosen,
            buckets=list(BUCKETS),
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
