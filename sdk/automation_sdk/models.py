"""Response records of the HTTP API, as the client decodes them.

These mirror the server's responses (DESIGN section 6) but are the SDK's own:
the SDK installs without the server. Unknown fields from a newer server are
ignored, and fields a client rarely needs have defaults so an older server
that lacks them still decodes. Statuses and triggers are plain strings (not
enums) for the same reason.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct, field

FINISHED = frozenset({"succeeded", "failed", "timed_out", "cancelled", "skipped"})


class Model(Struct, kw_only=True):
    """Base: keyword-only fields, unknown fields ignored on decode."""

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON-able data."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        return data


class Upload(Model, kw_only=True):
    ref: str
    digest: str
    size: int
    files: int


class Package(Model, kw_only=True):
    name: str
    version: str


class Environment(Model, kw_only=True):
    """A variant's locked Python packages; ``Client.environment_lock`` gives the lock."""

    digest: str
    python: str
    packages: list[Package] = field(default_factory=list)


class Variant(Model, kw_only=True):
    name: str
    weight: int
    tarball: str
    digest: str
    entrypoint: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    requirements: list[str] | None = None
    requirements_source: str | None = None
    environment: Environment | None = None


class LastRun(Model, kw_only=True):
    id: str
    status: str


class Automation(Model, kw_only=True):
    id: str
    name: str
    trigger: dict[str, Any]
    experiment_id: str | None = None
    variants: list[Variant] = field(default_factory=list)
    champion: str | None = None
    revision: int
    enabled: bool = True
    timeout_s: int | None = None
    network: str = "none"
    limits: dict[str, Any] = field(default_factory=dict)
    concurrency: dict[str, Any] = field(default_factory=dict)
    retry: dict[str, Any] = field(default_factory=dict)
    misfire: dict[str, Any] = field(default_factory=dict)
    auto_promote: dict[str, Any] | None = None
    #: Declared metrics: {"latency_ms": {"direction": "lower", "unit": "ms"}}.
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: {"mode": "fixed"} or {"mode": "bandit", "metric", "every_runs", "min_weight"}.
    allocation: dict[str, Any] = field(default_factory=lambda: {"mode": "fixed"})
    assignment_key_path: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""
    next_run_at: str | None = None
    last_run: LastRun | None = None
    missed_ticks: int = 0
    #: 0 never; else disabled after that many consecutive failures of the program.
    disable_after_failures: int = 0
    consecutive_failures: int = 0
    #: Why the server disabled it (auto-disable), until it is enabled again.
    disabled_reason: str | None = None
    # Only in a webhook automation's create response and on rotation (shown once).
    webhook_secret: str | None = None

    def variant(self, name: str) -> Variant | None:
        """The variant called ``name``, if any."""
        return next((v for v in self.variants if v.name == name), None)


class Revision(Model, kw_only=True):
    revision: int
    experiment_id: str | None = None
    champion: str | None = None
    weights: dict[str, int] = field(default_factory=dict)
    variants: list[dict[str, Any]] = field(default_factory=list)
    actor: str | None = None
    reason: str | None = None
    created_at: str = ""


class Assignment(Model, kw_only=True):
    method: str
    bucket: float | None = None
    key: str | None = None
    weights: dict[str, int] = field(default_factory=dict)


class Attempt(Model, kw_only=True):
    attempt: int
    status: str
    exit_code: int | None = None
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    # "run" (the program's failure) or "infrastructure" (the platform's).
    origin: str | None = None


class Run(Model, kw_only=True):
    id: str
    automation_id: str
    automation_revision: int
    experiment_id: str | None = None
    variant: str
    assignment: Assignment
    tarball_digest: str = ""
    environment_digest: str | None = None
    trigger: str
    scheduled_for: str | None = None
    status: str
    # Whose fault a failed run was: "run" (the program) or "infrastructure".
    failure_origin: str | None = None
    attempt: int = 1
    attempts: list[Attempt] = field(default_factory=list)
    exit_code: int | None = None
    error: str | None = None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    log_bytes: int = 0
    log_truncated: bool = False
    sandbox: str | None = None
    limits: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        """The run has reached a final status."""
        return self.status in FINISHED


class Decision(Model, kw_only=True):
    """A promotion or rollback (``GET /v1/automations/{id}/decisions``)."""

    id: str
    kind: str
    variant: str | None = None
    reason: str | None = None
    automatic: bool = False
    actor: str | None = None
    revision: int | None = None
    summary: Any = None
    created_at: str = ""


class EventSource(Model, kw_only=True, omit_defaults=True):
    """An event source (``/v1/event-sources``): one signed URL, many automations.

    Encoded without defaults, like the server's answer: ``secret`` appears only
    where the server shows it (create and rotation), never as ``null``.
    """

    id: str
    name: str
    #: The receive path, ``/v1/events/{id}`` (relative to the server).
    url: str
    #: ``{"header": "X-GitHub-Event"}`` or ``{"path": "type"}`` (JMESPath into the body).
    event_type: dict[str, str]
    signature: dict[str, str]
    delivery_id_header: str
    #: Names of the automations whose event trigger uses the source.
    automations: list[str]
    created_at: str
    updated_at: str
    secret: str | None = None


class Channel(Model, kw_only=True, omit_defaults=True):
    """A notification channel (``/v1/notification-channels``); ``secret`` as for EventSource."""

    id: str
    name: str
    url: str
    events: list[str]
    #: Only these automations' events; None: every automation of the organization.
    automation_ids: list[str] | None
    created_at: str
    secret: str | None = None


class Delivery(Model, kw_only=True):
    """One notice sent (or being sent) to a channel."""

    id: str
    event: str
    #: pending, delivered or failed (given up after 24 h).
    status: str
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: str = ""
    next_attempt_at: str | None = None
    delivered_at: str | None = None


class State(Model, kw_only=True):
    """The JSON object an automation's runs carry between them (version 0: never set)."""

    state: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    updated_at: str | None = None
    updated_by_run: str | None = None


class Page(Struct, kw_only=True):
    """One page of a list endpoint; items stay raw until the caller's type is known."""

    items: list[msgspec.Raw]
    next_cursor: str | None = None
