"""SQLAlchemy models: the whole schema in one place.

Every change here needs an Alembic migration in ``migrations/versions`` (a test
compares the two). Partial indexes carry both ``postgresql_where`` and
``sqlite_where``: with only one, the other database silently builds a full index.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from automation_server.db.types import JsonType, UTCDateTime
from automation_server.statuses import FailureOrigin, RunStatus, check_constraint

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(36)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JsonType}


def _partial(where: str) -> dict[str, Any]:
    """Index kwargs for a partial index on both databases."""
    return {"postgresql_where": text(where), "sqlite_where": text(where)}


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Blob(Base):
    """A content-addressed tarball; the bytes live in the object store."""

    __tablename__ = "blobs"

    digest: Mapped[str] = mapped_column(String(80), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    files: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]


class BlobOwner(Base):
    """Which organizations uploaded a blob: only they may reference it."""

    __tablename__ = "blob_owners"

    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(80), ForeignKey("blobs.digest"), primary_key=True)
    created_at: Mapped[datetime]


class Automation(Base):
    __tablename__ = "automations"
    __table_args__ = (
        Index(
            "uq_automations_org_name_live",
            "org_id",
            "name",
            unique=True,
            **_partial("deleted_at IS NULL"),
        ),
        Index(
            "ix_automations_due",
            "next_run_at",
            **_partial("enabled AND deleted_at IS NULL AND next_run_at IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(200))
    trigger: Mapped[dict[str, Any]]
    trigger_type: Mapped[str] = mapped_column(String(16))
    schedule_anchor: Mapped[datetime]
    experiment_id: Mapped[str | None] = mapped_column(String(200))
    champion: Mapped[str | None] = mapped_column(String(63))
    revision: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean)
    timeout_s: Mapped[int] = mapped_column(Integer)
    network: Mapped[str] = mapped_column(String(16))
    limits: Mapped[dict[str, Any]]
    concurrency: Mapped[dict[str, Any]]
    # concurrency.max_running as a column, so the claim query can compare it in SQL.
    max_running: Mapped[int] = mapped_column(Integer, default=1)
    retry: Mapped[dict[str, Any]]
    misfire: Mapped[dict[str, Any]]
    auto_promote: Mapped[dict[str, Any] | None]
    # Declared metrics: {"latency_ms": {"direction": "lower", "unit": "ms"}}.
    metrics: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    # {"mode": "fixed"} or {"mode": "bandit", "metric", "every_runs", "min_weight"}.
    allocation: Mapped[dict[str, Any]] = mapped_column(JsonType, default=lambda: {"mode": "fixed"})
    assignment_key_path: Mapped[str | None] = mapped_column(String(500))
    env: Mapped[dict[str, Any]]
    webhook_secret: Mapped[str | None] = mapped_column(Text)  # encrypted
    next_run_at: Mapped[datetime | None]
    missed_ticks: Mapped[int] = mapped_column(Integer, default=0)
    last_run_id: Mapped[str | None] = mapped_column(ID)
    last_run_status: Mapped[str | None] = mapped_column(String(16))
    # The event source of an ``event`` trigger (the trigger holds its name for display).
    event_source_id: Mapped[str | None] = mapped_column(ID, index=True)
    # Auto-disable: 0 never; else after this many consecutive failures of origin ``run``.
    disable_after_failures: Mapped[int] = mapped_column(Integer, default=0)
    failure_streak: Mapped[int] = mapped_column(Integer, default=0)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class AutomationSecret(Base):
    __tablename__ = "automation_secrets"

    automation_id: Mapped[str] = mapped_column(ID, ForeignKey("automations.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Variant(Base):
    """The current definition of one variant; history lives in revisions."""

    __tablename__ = "variants"
    __table_args__ = (
        Index(
            "uq_variants_automation_name_live",
            "automation_id",
            "name",
            unique=True,
            **_partial("deleted_at IS NULL"),
        ),
        # At most one champion per automation, enforced by the database.
        Index(
            "uq_variants_one_champion",
            "automation_id",
            unique=True,
            **_partial("is_champion AND deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    automation_id: Mapped[str] = mapped_column(ID, ForeignKey("automations.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    position: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer)
    tarball_digest: Mapped[str] = mapped_column(String(80), ForeignKey("blobs.digest"))
    entrypoint: Mapped[list[str]] = mapped_column(JsonType)
    env: Mapped[dict[str, Any]]
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[dict[str, Any]]
    # {"lines": [...], "source": "body" | "requirements.txt"}, or null without any.
    requirements: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    # The locked environment they resolved to (see environments/lock.py).
    environment_digest: Mapped[str | None] = mapped_column(String(80))
    is_champion: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class Revision(Base):
    """An immutable snapshot of the variants, weights, champion and experiment."""

    __tablename__ = "revisions"

    automation_id: Mapped[str] = mapped_column(ID, ForeignKey("automations.id"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[str | None] = mapped_column(String(200))
    champion: Mapped[str | None] = mapped_column(String(63))
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JsonType)
    actor: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class Run(Base):
    """The queue entry and the history record in one row."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("automation_id", "scheduled_for", name="uq_runs_automation_tick"),
        Index(
            "uq_runs_idempotency",
            "automation_id",
            "idempotency_key",
            unique=True,
            **_partial("idempotency_key IS NOT NULL"),
        ),
        Index("ix_runs_org_created", "org_id", "created_at", "id"),
        Index("ix_runs_org_automation_created", "org_id", "automation_id", "created_at", "id"),
        Index(
            "ix_runs_org_experiment_created",
            "org_id",
            "experiment_id",
            "variant",
            "created_at",
            "id",
        ),
        Index("ix_runs_org_status_created", "org_id", "status", "created_at", "id"),
        Index("ix_runs_queued", "available_at", "id", **_partial("status = 'queued'")),
        # The claim's per-automation seek: an automation's oldest queued runs.
        Index(
            "ix_runs_automation_queued",
            "automation_id",
            "available_at",
            "id",
            **_partial("status = 'queued'"),
        ),
        # Running runs per automation (the claim's free slots; SQLite reads no
        # implication from the IN list of ix_runs_automation_active).
        Index("ix_runs_automation_running", "automation_id", **_partial("status = 'running'")),
        Index("ix_runs_running_lease", "lease_expires_at", **_partial("status = 'running'")),
        Index(
            "ix_runs_automation_active",
            "automation_id",
            "status",
            "available_at",
            "id",
            **_partial("status IN ('queued', 'running')"),
        ),
        CheckConstraint(check_constraint(RunStatus, "status"), name="status"),
        CheckConstraint(
            f"failure_origin IS NULL OR {check_constraint(FailureOrigin, 'failure_origin')}",
            name="failure_origin",
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id"))
    automation_id: Mapped[str] = mapped_column(ID, ForeignKey("automations.id"))
    automation_revision: Mapped[int] = mapped_column(Integer)
    experiment_id: Mapped[str | None] = mapped_column(String(200))
    variant: Mapped[str] = mapped_column(String(63))
    assignment: Mapped[dict[str, Any]]
    assignment_method: Mapped[str] = mapped_column(String(16))
    tarball_digest: Mapped[str] = mapped_column(String(80))
    # The variant's locked Python environment, fixed at dispatch (null: none).
    environment_digest: Mapped[str | None] = mapped_column(String(80))
    trigger: Mapped[str] = mapped_column(String(16))
    scheduled_for: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16))
    # Whose fault the final failure was ("run" or "infrastructure"); null otherwise.
    failure_origin: Mapped[str | None] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # Attempts lost to the platform: they do not use up the user's retry.max_attempts.
    infra_failures: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JsonType)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]]
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    available_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(ID)
    lease_expires_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    metrics: Mapped[dict[str, Any]]
    outputs: Mapped[dict[str, Any]]
    log_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    log_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    sandbox: Mapped[str | None] = mapped_column(String(16))
    limits: Mapped[dict[str, Any] | None]


class Worker(Base):
    """A worker process, for leases and for operators (``GET /v1/workers``)."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer)
    running: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """Deliveries seen per automation (``X-Delivery-Id``): a replay is not run twice."""

    __tablename__ = "webhook_deliveries"

    automation_id: Mapped[str] = mapped_column(ID, ForeignKey("automations.id"), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    run_id: Mapped[str] = mapped_column(ID)
    created_at: Mapped[datetime]


class ExperimentRollup(Base):
    """Sufficient statistics per (experiment, automation, revision, variant, method),
    kept current in the transactions that queue and finish runs, so summaries read
    a handful of rows instead of every run."""

    __tablename__ = "experiment_rollups"

    org_id: Mapped[str] = mapped_column(ID, primary_key=True)
    experiment_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    automation_id: Mapped[str] = mapped_column(ID, primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, primary_key=True)
    variant: Mapped[str] = mapped_column(String(63), primary_key=True)
    method: Mapped[str] = mapped_column(String(16), primary_key=True)
    assigned: Mapped[int] = mapped_column(BigInteger, default=0)
    succeeded: Mapped[int] = mapped_column(BigInteger, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, default=0)
    timed_out: Mapped[int] = mapped_column(BigInteger, default=0)
    cancelled: Mapped[int] = mapped_column(BigInteger, default=0)
    skipped: Mapped[int] = mapped_column(BigInteger, default=0)
    # Failed runs of origin "infrastructure": shown, never counted as the variant's failures.
    infrastructure_failures: Mapped[int] = mapped_column(BigInteger, default=0)
    # Durations as (n, mean, M2), merged with Chan's formula (see experiments/moments.py).
    duration_count: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_mean: Mapped[float] = mapped_column(Float, default=0.0)
    duration_m2: Mapped[float] = mapped_column(Float, default=0.0)
    first_at: Mapped[datetime | None]
    last_at: Mapped[datetime | None]


class ExperimentMetricRollup(Base):
    """Count, mean and M2 (sum of squared deviations) of one reported metric, same grouping."""

    __tablename__ = "experiment_metric_rollups"

    org_id: Mapped[str] = mapped_column(ID, primary_key=True)
    experiment_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    automation_id: Mapped[str] = mapped_column(ID, primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, primary_key=True)
    variant: Mapped[str] = mapped_column(String(63), primary_key=True)
    method: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    mean: Mapped[float] = mapped_column(Float, default=0.0)
    m2: Mapped[float] = mapped_column(Float, default=0.0)


class ExperimentDurationBucket(Base):
    """Run durations as a mergeable log-bucket sketch (see experiments/sketch.py)."""

    __tablename__ = "experiment_duration_buckets"

    org_id: Mapped[str] = mapped_column(ID, primary_key=True)
    experiment_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    automation_id: Mapped[str] = mapped_column(ID, primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, primary_key=True)
    variant: Mapped[str] = mapped_column(String(63), primary_key=True)
    method: Mapped[str] = mapped_column(String(16), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class RunMetric(Base):
    """One metric of one finished run: time series read this table, not run JSON."""

    __tablename__ = "run_metrics"
    __table_args__ = (
        Index("ix_run_metrics_series", "org_id", "experiment_id", "name", "created_at"),
    )

    run_id: Mapped[str] = mapped_column(ID, ForeignKey("runs.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    org_id: Mapped[str] = mapped_column(ID)
    experiment_id: Mapped[str | None] = mapped_column(String(200))
    variant: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime]
    value: Mapped[float] = mapped_column(Float)


class Decision(Base):
    """A promotion, rollback or bandit reweight, with who, why and the experiment summary
    at that moment (a reweight's also holds the bandit's draws under ``bandit``)."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_automation_created", "automation_id", "created_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id"))
    automation_id: Mapped[str] = mapped_column(ID, ForeignKey("automations.id"))
    kind: Mapped[str] = mapped_column(String(16))
    variant: Mapped[str] = mapped_column(String(63))
    reason: Mapped[str] = mapped_column(Text)
    automatic: Mapped[bool] = mapped_column(Boolean)
    actor: Mapped[str] = mapped_column(String(200))
    revision: Mapped[int] = mapped_column(Integer)
    summary: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]


class AuditEvent(Base):
    """Who changed what, when, with the state before and after (secret values never)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_org_created", "org_id", "created_at", "id"),
        Index("ix_audit_org_resource", "org_id", "resource_type", "resource_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id"))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]


class ExperimentMinute(Base):
    """Per-minute counts of an experiment's runs (by creation minute): time series read
    these rows, grouped into the requested bucket, instead of scanning runs."""

    __tablename__ = "experiment_minutes"

    org_id: Mapped[str] = mapped_column(ID, primary_key=True)
    experiment_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    variant: Mapped[str] = mapped_column(String(63), primary_key=True)
    method: Mapped[str] = mapped_column(String(16), primary_key=True)
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch seconds // 60
    runs: Mapped[int] = mapped_column(BigInteger, default=0)
    finished: Mapped[int] = mapped_column(BigInteger, default=0)
    succeeded: Mapped[int] = mapped_column(BigInteger, default=0)


class ExperimentMetricMinute(Base):
    """Per-minute count, sum and spread of one metric, for metric time series and the
    cumulative effect charts (which need a variance: ``m2`` = sum((x - mean)^2) with
    mean = sum / count, merged with Chan's formula; NULL where it is not known, for
    minutes written before it existed whose runs retention had deleted)."""

    __tablename__ = "experiment_metric_minutes"

    org_id: Mapped[str] = mapped_column(ID, primary_key=True)
    experiment_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    variant: Mapped[str] = mapped_column(String(63), primary_key=True)
    method: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    sum: Mapped[float] = mapped_column(Float, default=0.0)
    m2: Mapped[float | None] = mapped_column(Float)


class Environment(Base):
    """A locked set of Python packages; the lock text lives in the object store."""

    __tablename__ = "environments"

    digest: Mapped[str] = mapped_column(String(80), primary_key=True)
    python: Mapped[str] = mapped_column(String(32))
    packages: Mapped[list[dict[str, Any]]] = mapped_column(JsonType)
    created_at: Mapped[datetime]


class EnvironmentOwner(Base):
    """Which organizations saved variants with an environment: only they may read its lock."""

    __tablename__ = "environment_owners"

    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(
        String(80), ForeignKey("environments.digest"), primary_key=True
    )
    created_at: Mapped[datetime]


class DeploymentSetting(Base):
    """Facts every process of one deployment must agree on (the secret key's check value)."""

    __tablename__ = "deployment_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class AutomationState(Base):
    """The JSON object an automation's runs carry from one to the next (DESIGN 9.7)."""

    __tablename__ = "automation_states"

    automation_id: Mapped[str] = mapped_column(ID, ForeignKey("automations.id"), primary_key=True)
    state: Mapped[dict[str, Any]]
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]
    updated_by_run: Mapped[str | None] = mapped_column(ID)


class EventSource(Base):
    """One signed endpoint (``POST /v1/events/{id}``) whose events fan out to automations."""

    __tablename__ = "event_sources"
    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_event_sources_org_name"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(128))
    # {"header": "X-GitHub-Event"} or {"path": "<JMESPath into the body>"}.
    event_type: Mapped[dict[str, Any]]
    signature_header: Mapped[str] = mapped_column(String(100))
    delivery_id_header: Mapped[str] = mapped_column(String(100))
    secret: Mapped[str] = mapped_column(Text)  # encrypted
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class EventDelivery(Base):
    """Deliveries seen per source: a repeated delivery id gets the first answer again."""

    __tablename__ = "event_deliveries"

    source_id: Mapped[str] = mapped_column(
        ID, ForeignKey("event_sources.id", ondelete="CASCADE"), primary_key=True
    )
    delivery_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    answer: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class NotificationChannel(Base):
    """Where events of an organization are POSTed as signed JSON (DESIGN 9.5)."""

    __tablename__ = "notification_channels"
    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_notification_channels_org_name"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JsonType)
    automation_ids: Mapped[list[str] | None] = mapped_column(JsonType)
    secret: Mapped[str] = mapped_column(Text)  # encrypted
    created_at: Mapped[datetime]


class NotificationDelivery(Base):
    """The outbox: one row per (channel, event), written in the transaction that records
    the event, then POSTed (and retried) by the deliverer."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("channel_id", "event_key", name="uq_notification_deliveries_event"),
        Index(
            "ix_notification_deliveries_due",
            "next_attempt_at",
            **_partial("status = 'pending'"),
        ),
        Index("ix_notification_deliveries_channel", "channel_id", "created_at", "id"),
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id"))
    channel_id: Mapped[str] = mapped_column(
        ID, ForeignKey("notification_channels.id", ondelete="CASCADE")
    )
    event: Mapped[str] = mapped_column(String(64))
    # What makes the event unique for a channel (a run id, "srm:<automation>:<rev>"...).
    event_key: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)  # the exact JSON bytes that are signed and sent
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
