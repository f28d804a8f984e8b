"""Run records as the API returns them, and the dispatch request."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct, field

from automation_server.automations.schemas import VariantName

RunStatusName = Literal[
    "queued", "running", "succeeded", "failed", "timed_out", "cancelled", "skipped"
]
FailureOriginName = Literal["run", "infrastructure"]


class DispatchRequest(Struct, forbid_unknown_fields=True):
    payload: dict[str, Any] = field(default_factory=dict)
    variant: VariantName | None = None
    assignment_key: Annotated[str, Meta(min_length=1, max_length=500)] | None = None


class AssignmentOut(Struct):
    method: str
    bucket: float | None
    key: str | None
    weights: dict[str, int]


class AttemptOut(Struct):
    attempt: int
    status: str
    exit_code: int | None
    error: str | None
    started_at: str | None
    finished_at: str | None
    # "run" (the program's failure) or "infrastructure" (the platform's); null on success.
    origin: FailureOriginName | None = None


class RunOut(Struct):
    id: str
    automation_id: str
    automation_revision: int
    experiment_id: str | None
    variant: str
    assignment: AssignmentOut
    tarball_digest: str
    # The variant's locked Python environment (GET /v1/environments/{digest}), or null.
    environment_digest: str | None
    trigger: str
    scheduled_for: str | None
    status: RunStatusName
    # null (succeeded, cancelled, skipped, or not finished), "run" or "infrastructure".
    failure_origin: FailureOriginName | None
    attempt: int
    attempts: list[AttemptOut]
    exit_code: int | None
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    duration_ms: int | None
    metrics: dict[str, float]
    outputs: dict[str, Any]
    log_bytes: int
    log_truncated: bool
    sandbox: str | None
    limits: dict[str, Any] | None


class RunPage(Struct):
    items: list[RunOut]
    next_cursor: str | None
