"""Prometheus metrics for operators (``GET /metrics``).

Counters and histograms are per process (each worker and API process exposes
its own, as Prometheus expects); queue depth and running runs are read from the
database at scrape time through the partial indexes on queued/running rows.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from automation_server.db.engine import Database
from automation_server.db.models import Run
from automation_server.ids import utcnow

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)


class QueueCollector(Collector):
    """Runs queued (all, and due now) and running, from the database at scrape time."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        runs = GaugeMetricFamily(
            "automation_runs_active", "Runs queued or running", labels=["status"]
        )
        due = GaugeMetricFamily("automation_queue_depth", "Queued runs that are due now")
        try:
            with self._db.read() as session:
                counts = dict(
                    session.execute(
                        select(Run.status, func.count())
                        .where(Run.status.in_(("queued", "running")))
                        .group_by(Run.status)
                    ).all()
                )
                depth = (
                    session.scalar(
                        select(func.count())
                        .select_from(Run)
                        .where(Run.status == "queued", Run.available_at <= utcnow())
                    )
                    or 0
                )
        except Exception:  # a scrape must not fail because the database is down
            return
        for status in ("queued", "running"):
            runs.add_metric([status], counts.get(status, 0))
        due.add_metric([], depth)
        yield runs
        yield due


class Metrics:
    def __init__(self, db: Database | None = None) -> None:
        self.registry = CollectorRegistry()
        self.runs_dispatched = Counter(
            "automation_runs_dispatched_total",
            "Runs created, by trigger",
            ["trigger"],
            registry=self.registry,
        )
        self.runs_finished = Counter(
            "automation_runs_finished_total",
            "Runs that reached a final status",
            ["status"],
            registry=self.registry,
        )
        self.dispatch_latency = Histogram(
            "automation_dispatch_latency_seconds",
            "Time from a run being queued to a worker starting it",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "automation_run_duration_seconds",
            "Time a run spent executing, by status",
            ["status"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.sandbox_failures = Counter(
            "automation_sandbox_failures_total",
            "Runs that could not be started in the sandbox",
            registry=self.registry,
        )
        if db is not None:
            self.registry.register(QueueCollector(db))
