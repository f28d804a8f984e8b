"""Request and response shapes of the automations API (DESIGN section 6).

msgspec enforces types, unknown fields and the ranges declared here (answering
400); rules that need the database or more context are checked in
``validation.py`` (answering 422 with the field that broke them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType, field

VARIANT_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
EXPERIMENT_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
AUTOMATION_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

Weight = Annotated[int, Meta(ge=0, le=10_000)]
VariantName = Annotated[str, Meta(pattern=VARIANT_NAME)]
Entrypoint = Annotated[
    list[Annotated[str, Meta(min_length=1, max_length=4096)]], Meta(min_length=1, max_length=256)
]
EnvMap = Annotated[dict[str, Annotated[str, Meta(max_length=65_536)]], Meta(max_length=200)]
Network = Literal["none", "egress", "host"]


class Strict(Struct, forbid_unknown_fields=True, omit_defaults=False):
    """Request bodies reject fields they do not know (400)."""


EventType = Annotated[str, Meta(min_length=1, max_length=200)]


class TriggerSpec(Strict):
    type: Literal["cron", "interval", "manual", "webhook", "event"]
    schedule: str | None = None
    timezone: str = "UTC"
    seconds: int | None = None
    # ``event``: the source's name, the event types to run on (["*"]: all), and an
    # optional JMESPath expression that must be truthy on the body.
    source: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    on: Annotated[list[EventType], Meta(min_length=1, max_length=100)] | None = None
    filter: Annotated[str, Meta(min_length=1, max_length=2000)] | None = None


RequirementLine = Annotated[str, Meta(max_length=2000)]
Requirements = Annotated[list[RequirementLine], Meta(max_length=500)]


class VariantSpec(Strict):
    name: VariantName
    tarball: Annotated[str, Meta(min_length=1, max_length=2048)]
    weight: Weight = 1
    entrypoint: Entrypoint | None = None
    env: EnvMap = field(default_factory=dict)
    description: Annotated[str, Meta(max_length=10_000)] = ""
    # Requirement specifiers; wins over requirements.txt at the tarball's root.
    requirements: Requirements | None = None


class LimitsSpec(Strict):
    memory_mb: Annotated[int, Meta(ge=16)] | None = None
    cpu_seconds: Annotated[int, Meta(ge=1)] | None = None
    pids_max: Annotated[int, Meta(ge=8)] | None = None
    tmp_mb: Annotated[int, Meta(ge=1)] | None = None
    max_log_bytes: Annotated[int, Meta(ge=1024)] | None = None


class ConcurrencySpec(Strict):
    max_running: Annotated[int, Meta(ge=1, le=1000)] = 1
    on_overlap: Literal["skip", "queue"] = "skip"


class RetrySpec(Strict):
    max_attempts: Annotated[int, Meta(ge=1, le=10)] = 1
    backoff_s: Annotated[float, Meta(ge=0, le=86_400)] = 30


class MisfireSpec(Strict):
    policy: Literal["run_once", "run_all", "skip"] = "run_once"
    grace_s: Annotated[int, Meta(ge=0, le=86_400 * 7)] = 60
    max_catchup: Annotated[int, Meta(ge=1, le=1000)] = 10


Direction = Literal["higher", "lower"]
MetricName = Annotated[str, Meta(min_length=1, max_length=100)]


class MetricSpec(Strict):
    """How to read a reported metric: which way is better (``higher`` or ``lower``), and
    its unit for display (at most 16 characters). Checked by ``check_metrics`` (422)."""

    direction: str = "higher"
    unit: str | None = None


Metrics = dict[str, MetricSpec]


class AllocationSpec(Strict):
    """``fixed`` (weights as set) or ``bandit`` (Thompson sampling sets them). Ranges and
    the metric are checked by ``check_allocation`` (422)."""

    mode: str = "fixed"
    metric: str | None = None
    every_runs: int | None = None
    min_weight: int | None = None


class GuardrailSpec(Strict):
    metric: MetricName
    max_regression: Annotated[float, Meta(ge=0)]
    # None: the metric's declared direction (``metrics``), else higher.
    direction: Direction | None = None


class AutoPromoteSpec(Strict):
    metric: MetricName
    # None: the metric's declared direction (``metrics``), else higher.
    direction: Direction | None = None
    min_runs_per_variant: Annotated[int, Meta(ge=2, le=1_000_000)] = 50
    alpha: Annotated[float, Meta(gt=0, lt=0.5)] = 0.05
    guardrails: list[GuardrailSpec] = field(default_factory=list)


AutomationName = Annotated[str, Meta(min_length=1, max_length=128, pattern=AUTOMATION_NAME)]
DisableAfter = Annotated[int, Meta(ge=0, le=1000)]
Secrets = Annotated[dict[str, Annotated[str, Meta(max_length=65_536)]], Meta(max_length=100)]


class AutomationSettings(Strict):
    """Every field of an automation except its variants (shared with preset bodies)."""

    name: AutomationName
    trigger: TriggerSpec = field(default_factory=lambda: TriggerSpec(type="manual"))
    experiment_id: str | None = None
    enabled: bool = True
    timeout_s: Annotated[int, Meta(ge=1)] | None = None
    network: Network = "none"
    limits: LimitsSpec = field(default_factory=LimitsSpec)
    concurrency: ConcurrencySpec = field(default_factory=ConcurrencySpec)
    retry: RetrySpec = field(default_factory=RetrySpec)
    misfire: MisfireSpec = field(default_factory=MisfireSpec)
    auto_promote: AutoPromoteSpec | None = None
    metrics: Metrics = field(default_factory=dict)
    allocation: AllocationSpec = field(default_factory=AllocationSpec)
    assignment_key_path: Annotated[str, Meta(min_length=1, max_length=500)] | None = None
    env: EnvMap = field(default_factory=dict)
    secrets: Secrets = field(default_factory=dict)
    # 0: never; else disabled after this many consecutive failures the program caused.
    disable_after_failures: DisableAfter = 0


class AutomationCreate(AutomationSettings):
    variants: Annotated[list[VariantSpec], Meta(min_length=1, max_length=20)] | None = None
    tarball: Annotated[str, Meta(min_length=1, max_length=2048)] | None = None
    entrypoint: Entrypoint | None = None


class VariantPatch(Strict):
    """One variant in a PATCH: matched by name; omitted fields keep their value."""

    name: VariantName
    tarball: Annotated[str, Meta(min_length=1, max_length=2048)] | UnsetType = UNSET
    weight: Weight | UnsetType = UNSET
    entrypoint: Entrypoint | UnsetType = UNSET
    env: EnvMap | UnsetType = UNSET
    description: Annotated[str, Meta(max_length=10_000)] | UnsetType = UNSET
    # null: back to requirements.txt of the tarball (if any).
    requirements: Requirements | UnsetType | None = UNSET


class AutomationPatch(Strict):
    """Partial update: only the fields present change.

    ``variants`` is the complete new list (variants left out are deleted, their
    runs kept); ``weights`` changes weights only; ``secrets`` sets the names given
    and deletes those whose value is null.
    """

    name: AutomationName | UnsetType = UNSET
    trigger: TriggerSpec | UnsetType = UNSET
    experiment_id: str | UnsetType | None = UNSET
    variants: Annotated[list[VariantPatch], Meta(min_length=1, max_length=20)] | UnsetType = UNSET
    weights: dict[str, Weight] | UnsetType = UNSET
    champion: VariantName | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET
    timeout_s: Annotated[int, Meta(ge=1)] | UnsetType = UNSET
    network: Network | UnsetType = UNSET
    limits: LimitsSpec | UnsetType = UNSET
    concurrency: ConcurrencySpec | UnsetType = UNSET
    retry: RetrySpec | UnsetType = UNSET
    misfire: MisfireSpec | UnsetType = UNSET
    auto_promote: AutoPromoteSpec | UnsetType | None = UNSET
    metrics: Metrics | UnsetType = UNSET
    allocation: AllocationSpec | UnsetType = UNSET
    assignment_key_path: Annotated[str, Meta(min_length=1, max_length=500)] | UnsetType | None = (
        UNSET
    )
    env: EnvMap | UnsetType = UNSET
    secrets: dict[str, str | None] | UnsetType = UNSET
    disable_after_failures: DisableAfter | UnsetType = UNSET


# ---- responses ---------------------------------------------------------------


class PackageOut(Struct):
    name: str
    version: str


class EnvironmentOut(Struct):
    """A variant's locked Python packages (``GET /v1/environments/{digest}`` is the lock)."""

    digest: str
    python: str
    packages: list[PackageOut]


class VariantOut(Struct):
    name: str
    weight: int
    tarball: str
    digest: str
    entrypoint: list[str]
    env: dict[str, str]
    description: str
    source: dict[str, Any]
    # The requirement lines (from the body or requirements.txt), or null.
    requirements: list[str] | None = None
    requirements_source: str | None = None
    environment: EnvironmentOut | None = None


class LastRun(Struct):
    id: str
    status: str


class AutomationOut(Struct, omit_defaults=True):
    id: str
    name: str
    trigger: dict[str, Any]
    experiment_id: str | None
    variants: list[VariantOut]
    champion: str | None
    revision: int
    enabled: bool
    timeout_s: int
    network: str
    limits: dict[str, Any]
    concurrency: dict[str, Any]
    retry: dict[str, Any]
    misfire: dict[str, Any]
    auto_promote: dict[str, Any] | None
    metrics: dict[str, Any]
    allocation: dict[str, Any]
    assignment_key_path: str | None
    env: dict[str, str]
    secrets: list[str]
    created_at: str
    updated_at: str
    next_run_at: str | None
    last_run: LastRun | None
    missed_ticks: int
    disable_after_failures: int
    # Consecutive finished runs that failed by the program's fault (a success resets it).
    consecutive_failures: int
    # Why the server disabled the automation (null when enabled or disabled by a user).
    disabled_reason: str | None
    # Shown once: in the create response of a webhook automation, and on rotation.
    webhook_secret: str | None = None


class AutomationPage(Struct):
    items: list[AutomationOut]
    next_cursor: str | None


class RevisionOut(Struct):
    revision: int
    experiment_id: str | None
    champion: str | None
    weights: dict[str, int]
    variants: list[dict[str, Any]]
    actor: str | None
    reason: str | None
    created_at: str


class RevisionPage(Struct):
    items: list[RevisionOut]


def to_builtins(value: Struct | Mapping[str, Struct]) -> dict[str, Any]:
    """A request struct as plain JSON-able data (what the database stores)."""
    result: dict[str, Any] = msgspec.to_builtins(value)
    return result


class CloneOverrides(Strict):
    """Fields of the clone that replace the source's value whole."""

    env: EnvMap | UnsetType = UNSET
    entrypoint: Entrypoint | UnsetType = UNSET
    description: Annotated[str, Meta(max_length=10_000)] | UnsetType = UNSET
    tarball: Annotated[str, Meta(min_length=1, max_length=2048)] | UnsetType = UNSET


class CloneRequest(Strict):
    name: VariantName
    weight: Weight = 0
    overrides: CloneOverrides = field(default_factory=CloneOverrides)


class PromoteRequest(Strict):
    variant: VariantName
    reason: Annotated[str, Meta(max_length=2000)] = ""


class DecisionOut(Struct):
    id: str
    kind: str
    variant: str
    reason: str
    automatic: bool
    actor: str
    revision: int
    summary: dict[str, Any] | None
    created_at: str


class DecisionPage(Struct):
    items: list[DecisionOut]
