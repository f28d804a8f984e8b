"""Deploy directories as the variants of an automation, changing only what changed.

``deploy`` packs each directory reproducibly (:mod:`automation_sdk.pack`),
creates the automation when its name is new, and otherwise sends one PATCH
with only the fields that differ from what the server has. A tarball is
uploaded only when its digest is not already pinned by a variant of the
automation, so deploying the same directories twice uploads nothing and, the
variants being unchanged, makes no new revision.

What a deploy controls, and what it leaves alone when not given:

- the variants: exactly those listed, in that order (variants not listed are
  removed; their runs stay). A weight not given is 1 for a new variant and
  unchanged for an existing one. ``entrypoint`` (all variants) likewise.
- ``experiment_id``, ``trigger``, ``env`` (the whole map), ``timeout_s``,
  ``metrics`` (the whole map of declared metrics), ``allocation``: changed
  when given and different.
- ``secrets``: sent whenever given (the server never shows values, so a
  client cannot tell whether they changed); setting secrets makes no revision.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automation_sdk import pack as packing
from automation_sdk.client import Client
from automation_sdk.models import Automation

VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DEFAULT_VARIANT = "default"


@dataclass(frozen=True)
class VariantSource:
    """A variant to deploy: its name, the directory holding its code, and a weight."""

    name: str
    directory: Path
    weight: int | None = None


def parse_variant(spec: str) -> VariantSource:
    """``NAME=DIR[:WEIGHT]`` or a bare ``DIR[:WEIGHT]`` (the variant ``default``)."""
    name, sep, rest = spec.partition("=")
    if not sep or not VARIANT_NAME.match(name):
        if sep and not Path(spec).exists():
            raise ValueError(
                f"variant {spec!r}: the name {name!r} must match {VARIANT_NAME.pattern}"
            )
        name, rest = DEFAULT_VARIANT, spec
    directory, weight = rest, None
    head, colon, tail = rest.rpartition(":")
    if colon and tail.isdigit():
        directory, weight = head, int(tail)
        if weight > 10_000:
            raise ValueError(f"variant {spec!r}: weight must be 0..10000")
    if not directory:
        raise ValueError(f"variant {spec!r}: give a directory")
    return VariantSource(name, Path(directory), weight)


class DeployEvents:
    """Progress hooks (the CLI draws bars); this base class shows nothing."""

    def packing(self, variant: str, total: int) -> Callable[[packing.Entry], None]:
        """Packing ``variant`` starts with ``total`` members; the result is called per member."""
        return lambda entry: None

    def uploading(self, variant: str, size: int) -> None:
        """The tarball of ``variant`` (``size`` bytes) is being uploaded."""

    def uploaded(self, variant: str, digest: str) -> None:
        """The upload of ``variant`` is done."""


@dataclass
class Packed:
    source: VariantSource
    data: bytes
    digest: str


@dataclass
class DeployResult:
    automation: Automation
    created: bool
    revision_before: int | None
    uploaded: list[str] = field(default_factory=list)  # variants whose tarball was uploaded
    changed: list[str] = field(default_factory=list)  # top-level fields sent in the PATCH

    @property
    def new_revision(self) -> bool:
        return self.created or self.automation.revision != self.revision_before


def deploy(
    client: Client,
    name: str,
    variants: Sequence[VariantSource],
    *,
    experiment_id: str | None = None,
    trigger: dict[str, Any] | None = None,
    entrypoint: list[str] | None = None,
    env: dict[str, str] | None = None,
    secrets: dict[str, str] | None = None,
    timeout_s: int | None = None,
    metrics: dict[str, dict[str, Any]] | None = None,
    allocation: dict[str, Any] | None = None,
    events: DeployEvents | None = None,
) -> DeployResult:
    """Create or update the automation ``name`` so its variants run these directories."""
    events = events or DeployEvents()
    check_names(variants)
    packed = [_pack_one(source, events) for source in variants]
    current = client.find_automation(name)
    uploader = _Uploader(client, events, current)
    if current is None:
        body: dict[str, Any] = {
            "name": name,
            "variants": [_new_variant(p, uploader.ref(p), entrypoint) for p in packed],
        }
        extra: dict[str, Any] = {"experiment_id": experiment_id, "trigger": trigger, "env": env}
        extra |= {"secrets": secrets, "timeout_s": timeout_s, "metrics": metrics}
        extra["allocation"] = allocation
        body.update({k: v for k, v in extra.items() if v is not None})
        created = client.create_automation(**body)
        return DeployResult(created, True, None, uploader.done)
    patch = _variant_patch(current, packed, uploader, entrypoint)
    wanted: dict[str, Any] = {
        "experiment_id": experiment_id,
        "env": env,
        "timeout_s": timeout_s,
        "metrics": metrics,
        "allocation": allocation,
    }
    for key, value in wanted.items():
        if value is not None and getattr(current, key) != value:
            patch[key] = value
    if trigger is not None and any(current.trigger.get(k) != v for k, v in trigger.items()):
        patch["trigger"] = trigger
    if secrets:
        patch["secrets"] = secrets
    updated = client.update_automation(current.id, **patch) if patch else current
    return DeployResult(updated, False, current.revision, uploader.done, sorted(patch))


def check_names(variants: Sequence[VariantSource]) -> None:
    if not variants:
        raise ValueError("give at least one variant directory")
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"variant names must be unique; repeated: {', '.join(duplicates)}")


def _pack_one(source: VariantSource, events: DeployEvents) -> Packed:
    members = packing.entries(source.directory)
    step = events.packing(source.name, len(members))
    data = packing.pack(source.directory, on_entry=step)
    return Packed(source, data, packing.digest_of(data))


class _Uploader:
    """Refs for packed tarballs, uploading each new digest once."""

    def __init__(self, client: Client, events: DeployEvents, current: Automation | None) -> None:
        self._client = client
        self._events = events
        # Digests the automation already pins are blobs this organization owns.
        self._known = {v.digest for v in current.variants} if current else set()
        self.done: list[str] = []

    def ref(self, p: Packed) -> str:
        if p.digest not in self._known:
            self._events.uploading(p.source.name, len(p.data))
            uploaded = self._client.upload(p.data)
            self._events.uploaded(p.source.name, uploaded.digest)
            self._known.add(uploaded.digest)
            self.done.append(p.source.name)
        return f"blob:{p.digest}"


def _new_variant(p: Packed, ref: str, entrypoint: list[str] | None) -> dict[str, Any]:
    weight = 1 if p.source.weight is None else p.source.weight
    spec: dict[str, Any] = {"name": p.source.name, "tarball": ref, "weight": weight}
    if entrypoint is not None:
        spec["entrypoint"] = entrypoint
    return spec


def _variant_patch(
    current: Automation, packed: list[Packed], uploader: _Uploader, entrypoint: list[str] | None
) -> dict[str, Any]:
    """``{"variants": [...]}`` with only changed fields per variant, or ``{}``."""
    entries: list[dict[str, Any]] = []
    changed = [v.name for v in current.variants] != [p.source.name for p in packed]
    for p in packed:
        existing = current.variant(p.source.name)
        if existing is None:
            entries.append(_new_variant(p, uploader.ref(p), entrypoint))
            continue
        entry: dict[str, Any] = {"name": p.source.name}
        if p.digest != existing.digest:
            entry["tarball"] = uploader.ref(p)
        if p.source.weight is not None and p.source.weight != existing.weight:
            entry["weight"] = p.source.weight
        if entrypoint is not None and entrypoint != existing.entrypoint:
            entry["entrypoint"] = entrypoint
        changed = changed or len(entry) > 1
        entries.append(entry)
    return {"variants": entries} if changed else {}


def parse_metric(spec: str) -> tuple[str, dict[str, str]]:
    """``NAME=DIRECTION[:UNIT]`` (``latency_ms=lower:ms``) as a metric declaration."""
    name, sep, rest = spec.partition("=")
    direction, _, unit = rest.partition(":")
    if not sep or not name or direction not in ("higher", "lower"):
        raise ValueError(f"{spec!r}: use NAME=higher|lower[:UNIT], e.g. latency_ms=lower:ms")
    return name, {"direction": direction, **({"unit": unit} if unit else {})}


def parse_bandit(spec: str) -> dict[str, Any]:
    """``METRIC[:EVERY_RUNS[:MIN_WEIGHT]]`` as a bandit allocation; ``off``: fixed weights."""
    if spec == "off":
        return {"mode": "fixed"}
    metric, *numbers = spec.split(":")
    if not metric or len(numbers) > 2 or not all(n.isdigit() for n in numbers):
        raise ValueError(f"{spec!r}: use METRIC[:EVERY_RUNS[:MIN_WEIGHT]] or off")
    every, floor = ([*map(int, numbers), None, None])[:2]
    return {
        "mode": "bandit",
        "metric": metric,
        "every_runs": 50 if every is None else every,
        "min_weight": 100 if floor is None else floor,
    }
