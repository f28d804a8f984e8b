"""Issue 10: experiment summary and time series over a large run history on PostgreSQL.

A bulk generator writes N finished runs (1,000,000 in full mode) with metrics
straight into PostgreSQL with ``generate_series``, and fills the rollups the
way the server keeps them (one aggregate per variant), then measures the
summary and time-series latency through the service layer the API calls.
Baseline in the same run: the same summary computed by scanning every run
(``SELECT ... GROUP BY`` over ``runs`` and ``run_metrics``), which is what a
server without rollups would do. It also records the query plans of the run
history listings (issue 4: indexes keep them fast with millions of runs).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from sqlalchemy import text

from automation_server.automations.schemas import AutomationCreate
from automation_server.experiments.sketch import GAMMA
from bench.common import BenchStack, percentile, stack, targz, write_results

EXPERIMENT = "bench-exp"

RUNS_SQL = """
INSERT INTO runs (id, org_id, automation_id, automation_revision, experiment_id, variant,
  assignment, assignment_method, tarball_digest, trigger, status, attempt, attempts,
  payload, available_at, cancel_requested, created_at, started_at, finished_at, duration_ms,
  metrics, outputs, log_bytes, log_truncated, sandbox)
SELECT gen_random_uuid()::text, :org, :aid, 1, :exp, s.variant,
  jsonb_build_object('method', 'random', 'bucket', s.u, 'key', NULL,
                     'weights', jsonb_build_object('control', 50, 'treatment', 50)),
  'random', :digest, 'manual', s.status, 1, '[]'::jsonb, '{}'::jsonb, s.t, false, s.t, s.t,
  s.t + make_interval(secs => s.d / 1000.0), s.d,
  jsonb_build_object('score', s.score), '{}'::jsonb, 0, false, 'bwrap'
FROM (
  SELECT g, u,
    CASE WHEN u < 0.5 THEN 'control' ELSE 'treatment' END AS variant,
    CASE WHEN random() < (CASE WHEN u < 0.5 THEN 0.80 ELSE 0.82 END)
         THEN 'succeeded' ELSE 'failed' END AS status,
    now() - make_interval(secs => g * 2.0) AS t,
    (50 + random() * 2000)::int AS d,
    random() + (CASE WHEN u < 0.5 THEN 0 ELSE 0.01 END) AS score
  FROM (SELECT g, random() AS u FROM generate_series(1, :n) g) raw
) s
"""

METRICS_SQL = """
INSERT INTO run_metrics (run_id, name, org_id, experiment_id, variant, created_at, value)
SELECT id, 'score', org_id, experiment_id, variant, created_at, (metrics->>'score')::float
FROM runs WHERE automation_id = :aid
"""

ROLLUP_SQL = """
INSERT INTO experiment_rollups (org_id, experiment_id, automation_id, revision, variant, method,
  assigned, succeeded, failed, timed_out, cancelled, skipped, duration_count, duration_sum,
  duration_sum_sq, first_at, last_at)
SELECT org_id, experiment_id, automation_id, automation_revision, variant, assignment_method,
  count(*), count(*) FILTER (WHERE status = 'succeeded'),
  count(*) FILTER (WHERE status = 'failed'), 0, 0, 0, count(*), sum(duration_ms),
  sum(duration_ms::float * duration_ms), min(created_at), max(created_at)
FROM runs WHERE automation_id = :aid
GROUP BY org_id, experiment_id, automation_id, automation_revision, variant, assignment_method
"""

METRIC_ROLLUP_SQL = """
INSERT INTO experiment_metric_rollups (org_id, experiment_id, automation_id, revision, variant,
  method, name, count, sum, sum_sq)
SELECT m.org_id, m.experiment_id, r.automation_id, r.automation_revision, m.variant,
  r.assignment_method, m.name, count(*), sum(m.value), sum(m.value * m.value)
FROM run_metrics m JOIN runs r ON r.id = m.run_id WHERE r.automation_id = :aid
GROUP BY 1, 2, 3, 4, 5, 6, 7
"""

SKETCH_SQL = f"""
INSERT INTO experiment_duration_buckets (org_id, experiment_id, automation_id, revision,
  variant, method, bucket, count)
SELECT org_id, experiment_id, automation_id, automation_revision, variant, assignment_method,
  CASE WHEN duration_ms < 1 THEN -1 ELSE ceil(ln(duration_ms) / ln({GAMMA}))::int END, count(*)
FROM runs WHERE automation_id = :aid
GROUP BY 1, 2, 3, 4, 5, 6, 7
"""

MINUTES_SQL = """
INSERT INTO experiment_minutes (org_id, experiment_id, variant, method, minute, runs, finished,
  succeeded)
SELECT org_id, experiment_id, variant, assignment_method,
  floor(extract(epoch FROM created_at) / 60)::bigint, count(*),
  count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'timed_out')),
  count(*) FILTER (WHERE status = 'succeeded')
FROM runs WHERE automation_id = :aid GROUP BY 1, 2, 3, 4, 5
"""

METRIC_MINUTES_SQL = """
INSERT INTO experiment_metric_minutes (org_id, experiment_id, variant, method, name, minute,
  count, sum)
SELECT m.org_id, m.experiment_id, m.variant, r.assignment_method, m.name,
  floor(extract(epoch FROM m.created_at) / 60)::bigint, count(*), sum(m.value)
FROM run_metrics m JOIN runs r ON r.id = m.run_id WHERE r.automation_id = :aid
GROUP BY 1, 2, 3, 4, 5, 6
"""

# What a server without rollups would run for the same summary.
SCAN_SQL = """
SELECT r.variant, count(*), count(*) FILTER (WHERE r.status = 'succeeded'),
  percentile_cont(0.5) WITHIN GROUP (ORDER BY r.duration_ms),
  percentile_cont(0.95) WITHIN GROUP (ORDER BY r.duration_ms),
  avg(m.value), stddev_samp(m.value), count(m.value)
FROM runs r LEFT JOIN run_metrics m ON m.run_id = r.id AND m.name = 'score'
WHERE r.org_id = :org AND r.experiment_id = :exp AND r.assignment_method <> 'forced'
GROUP BY r.variant
"""

PLANS = {
    "runs_newest_first": "SELECT id FROM runs WHERE org_id = :org "
    "ORDER BY created_at DESC, id DESC LIMIT 50",
    "runs_by_experiment_variant": "SELECT id FROM runs WHERE org_id = :org AND experiment_id = "
    ":exp AND variant = 'control' ORDER BY created_at DESC, id DESC "
    "LIMIT 50",
    "runs_by_status": "SELECT id FROM runs WHERE org_id = :org AND status = 'failed' "
    "ORDER BY created_at DESC, id DESC LIMIT 50",
    "queue_claim_candidates": "SELECT id FROM runs WHERE status = 'queued' AND available_at <= "
    "now() ORDER BY available_at, id LIMIT 20",
}


def _generate(s: BenchStack, n: int) -> tuple[str, float]:
    ref = s.services.blobs.upload(s.caller.org_id, targz({"main.py": "1"})).ref
    body = AutomationCreate(name="bulk", tarball=ref, experiment_id=EXPERIMENT)
    automation_id = s.services.automations.create(s.caller, body).id
    params = {
        "org": s.caller.org_id,
        "aid": automation_id,
        "exp": EXPERIMENT,
        "digest": ref.removeprefix("blob:"),
        "n": n,
    }
    start = time.perf_counter()
    with s.services.db.write() as session:
        for sql in (
            RUNS_SQL,
            METRICS_SQL,
            ROLLUP_SQL,
            METRIC_ROLLUP_SQL,
            SKETCH_SQL,
            MINUTES_SQL,
            METRIC_MINUTES_SQL,
        ):
            session.execute(text(sql), params)
    with s.services.db.engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    return automation_id, time.perf_counter() - start


def _timed(fn: Any, repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return {
        "p50_ms": round(percentile(times, 50), 2),
        "p95_ms": round(percentile(times, 95), 2),
        "mean_ms": round(statistics.fmean(times), 2),
    }


def _plans(s: BenchStack) -> dict[str, str]:
    out = {}
    with s.services.db.engine.connect() as conn:
        for name, sql in PLANS.items():
            rows = (
                conn.execute(text("EXPLAIN " + sql), {"org": s.caller.org_id, "exp": EXPERIMENT})
                .scalars()
                .all()
            )
            out[name] = " | ".join(str(r).strip() for r in rows[:3])
    return out


def run(quick: bool) -> dict[str, Any]:
    n = 200_000 if quick else 1_000_000
    with stack("postgres") as s:
        _, generated_s = _generate(s, n)
        experiments = s.services.experiments
        summary = _timed(lambda: experiments.summary(s.caller, EXPERIMENT), 30)
        series = _timed(
            lambda: experiments.timeseries(
                s.caller, EXPERIMENT, metric="score", bucket="1d", since=None, until=None
            ),
            10,
        )
        hourly = _timed(
            lambda: experiments.timeseries(
                s.caller, EXPERIMENT, metric="score", bucket="1h", since=None, until=None
            ),
            10,
        )

        def scan() -> None:
            with s.services.db.read() as session:
                session.execute(text(SCAN_SQL), {"org": s.caller.org_id, "exp": EXPERIMENT}).all()

        baseline = _timed(scan, 5)
        plans = _plans(s)
    results = {
        "runs": n,
        "generate_s": round(generated_s, 1),
        "summary": summary,
        "timeseries_1d_metric": series,
        "timeseries_1h_metric": hourly,
        "baseline_full_scan_summary": baseline,
        "summary_speedup_vs_scan": round(baseline["p50_ms"] / summary["p50_ms"], 1),
        "query_plans": plans,
    }
    path = write_results("experiments_summary", {"quick": quick, **results})
    return {"file": str(path), **results}
