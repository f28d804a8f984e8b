"""Experiments: list, per-variant summary with intervals, time series."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.params import FromPath, FromQuery

from automation_server.api.deps import CallerDep, ServicesDep


class ExperimentController(Controller):
    path = "/experiments"
    tags = ["experiments"]

    @get("/", sync_to_thread=True)
    def list_experiments(self, services: ServicesDep, caller: CallerDep) -> dict[str, Any]:
        """Experiments of the organization with run counts and last activity."""
        return services.experiments.list_all(caller)

    @get("/{experiment_id:str}", sync_to_thread=True)
    def summary(
        self,
        experiment_id: FromPath[str],
        services: ServicesDep,
        caller: CallerDep,
        by: FromQuery[str] = "variant",
        control: FromQuery[str | None] = None,
        include_forced: FromQuery[bool] = False,
    ) -> dict[str, Any]:
        """Per-variant summary (or per revision with `by=revision`): runs, success rate with a
        Wilson interval, duration p50/p95, metrics with t-intervals, and against the control a
        Welch difference, P(better) and an always-valid (mSPRT) interval; sample-ratio check."""
        return services.experiments.summary(
            caller, experiment_id, by=by, control=control, include_forced=include_forced
        )

    @get("/{experiment_id:str}/timeseries", sync_to_thread=True)
    def timeseries(
        self,
        experiment_id: FromPath[str],
        services: ServicesDep,
        caller: CallerDep,
        metric: FromQuery[str | None] = None,
        bucket: FromQuery[str] = "1h",
        since: FromQuery[str | None] = None,
        until: FromQuery[str | None] = None,
        include_forced: FromQuery[bool] = False,
    ) -> dict[str, Any]:
        """Per-variant series in UTC-aligned buckets (1m 5m 15m 1h 6h 1d); empty buckets are 0."""
        return services.experiments.timeseries(
            caller,
            experiment_id,
            metric=metric,
            bucket=bucket,
            since=since,
            until=until,
            include_forced=include_forced,
        )
