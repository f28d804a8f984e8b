"""Variant drafts from request bodies: tarballs resolved and pinned, entrypoints and env checked.

Shared by create and PATCH, so a variant is validated the same way on every path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from msgspec import UNSET

from automation_server.automations import validation as rules
from automation_server.automations.schemas import (
    AutomationCreate,
    AutomationPatch,
    VariantPatch,
    VariantSpec,
)
from automation_server.automations.store import VariantDraft
from automation_server.environments.requirements import Requirements
from automation_server.environments.service import (
    EnvironmentRef,
    EnvironmentService,
    requirements_in_tarball,
)
from automation_server.errors import Invalid
from automation_server.security.accounts import Caller
from automation_server.storage.blobs import BlobService

DEFAULT_ENTRYPOINT = ["python3", "main.py"]
BODY, FILE = "body", "requirements.txt"


class VariantDrafts:
    def __init__(self, blobs: BlobService, environments: EnvironmentService) -> None:
        self._blobs = blobs
        self._environments = environments

    def from_create(
        self, caller: Caller, body: AutomationCreate, sources: Sequence[dict[str, Any]] | None
    ) -> list[VariantDraft]:
        if body.variants is not None and body.tarball is not None:
            raise Invalid(
                "tarball: give either 'variants' or the 'tarball' shorthand, not both",
                field="tarball",
                code="invalid_variants",
            )
        if body.variants is None and body.tarball is None:
            raise Invalid(
                "variants: give 'variants' (or 'tarball' for a single variant)",
                field="variants",
                code="missing_variants",
            )
        if body.variants is None:
            if body.entrypoint is not None:
                rules.check_entrypoint(body.entrypoint, "entrypoint")
            digest = self._blobs.resolve(caller.org_id, body.tarball or "", field="tarball")
            draft = VariantDraft(
                "default",
                1,
                digest,
                body.entrypoint or DEFAULT_ENTRYPOINT,
                {},
                "",
                source_of(body.tarball or "", sources, 0),
            )
            return [self._with_requirements(draft, None, "requirements")]
        if body.entrypoint is not None:
            raise Invalid(
                "entrypoint: with 'variants', give each variant its own entrypoint",
                field="entrypoint",
                code="invalid_variants",
            )
        return [
            self.draft(caller, spec, f"variants[{i}]", source_of(spec.tarball, sources, i))
            for i, spec in enumerate(body.variants)
        ]

    def draft(
        self, caller: Caller, spec: VariantSpec, field: str, source: dict[str, Any]
    ) -> VariantDraft:
        entrypoint = spec.entrypoint or DEFAULT_ENTRYPOINT
        rules.check_entrypoint(entrypoint, f"{field}.entrypoint")
        rules.check_env(spec.env, f"{field}.env")
        digest = self._blobs.resolve(caller.org_id, spec.tarball, field=f"{field}.tarball")
        draft = VariantDraft(
            spec.name,
            spec.weight,
            digest,
            list(entrypoint),
            dict(spec.env),
            spec.description,
            source,
        )
        return self._with_requirements(draft, spec.requirements, f"{field}.requirements")

    def patched(
        self, caller: Caller, old: list[VariantDraft], patch: AutomationPatch
    ) -> list[VariantDraft]:
        drafts = old
        if patch.variants is not UNSET:
            by_name = {d.name: d for d in old}
            drafts = [
                self._patch_one(caller, by_name.get(p.name), p, f"variants[{i}]")
                for i, p in enumerate(patch.variants)
            ]
        if patch.weights is not UNSET:
            names = {d.name for d in drafts}
            for name in patch.weights:
                if name not in names:
                    raise Invalid(
                        f"weights: unknown variant '{name}'",
                        field=f"weights.{name}",
                        code="unknown_variant",
                    )
            drafts = [replace(d, weight=patch.weights.get(d.name, d.weight)) for d in drafts]
        return drafts

    def _patch_one(
        self, caller: Caller, old: VariantDraft | None, p: VariantPatch, field: str
    ) -> VariantDraft:
        if old is None:
            if p.tarball is UNSET:
                raise Invalid(
                    f"{field}.tarball: a new variant needs a tarball",
                    field=f"{field}.tarball",
                    code="missing_tarball",
                )
            spec = VariantSpec(
                name=p.name,
                tarball=p.tarball,
                weight=1 if p.weight is UNSET else p.weight,
                entrypoint=None if p.entrypoint is UNSET else p.entrypoint,
                env={} if p.env is UNSET else p.env,
                description="" if p.description is UNSET else p.description,
                requirements=None if p.requirements is UNSET else p.requirements,
            )
            return self.draft(caller, spec, field, {"kind": "upload"})
        draft = old
        if p.tarball is not UNSET:
            digest = self._blobs.resolve(caller.org_id, p.tarball, field=f"{field}.tarball")
            if digest != draft.digest:
                draft = replace(draft, digest=digest, source={"kind": "upload"})
                if draft.requirements_source != BODY and p.requirements is UNSET:
                    draft = self._with_requirements(draft, None, f"{field}.requirements")
        if p.requirements is not UNSET:
            draft = self._with_requirements(draft, p.requirements, f"{field}.requirements")
        if p.entrypoint is not UNSET:
            rules.check_entrypoint(p.entrypoint, f"{field}.entrypoint")
            draft = replace(draft, entrypoint=list(p.entrypoint))
        if p.env is not UNSET:
            rules.check_env(p.env, f"{field}.env")
            draft = replace(draft, env=dict(p.env))
        if p.weight is not UNSET:
            draft = replace(draft, weight=p.weight)
        if p.description is not UNSET:
            draft = replace(draft, description=p.description)
        return draft

    def tarball_changed(self, draft: VariantDraft, field: str) -> VariantDraft:
        """A draft whose tarball was replaced (clone overrides): requirements.txt read again,
        unless the requirements were given in a body."""
        if draft.requirements_source == BODY:
            return draft
        return self._with_requirements(draft, None, field)

    def _with_requirements(
        self, draft: VariantDraft, lines: list[str] | None, field: str
    ) -> VariantDraft:
        """The draft's requirements: the body's lines (which win), else requirements.txt
        at the tarball's root, else none. The environment is resolved later, by
        :meth:`resolve_environments`."""
        parsed: Requirements | None
        if lines is not None:
            parsed = self._environments.requirements(lines, field)
            source = BODY
        else:
            parsed = requirements_in_tarball(self._blobs.read(draft.digest), field)
            source = FILE
        if parsed is None or parsed.empty:
            return replace(draft, requirements=None, requirements_source=None, environment=None)
        if parsed.lines != draft.requirements:
            return replace(
                draft, requirements=parsed.lines, requirements_source=source, environment=None
            )
        return replace(draft, requirements_source=source)

    def resolve_environments(
        self, drafts: list[VariantDraft], old: list[VariantDraft]
    ) -> tuple[list[VariantDraft], list[EnvironmentRef]]:
        """Lock every draft's requirements (before the save's transaction).

        Unchanged requirements keep their lock (no silent upgrade); equal ones in one
        save are resolved once. Returns the drafts and the new environments to record.
        """
        kept = {d.requirements: d.environment for d in old if d.requirements and d.environment}
        resolved: dict[tuple[str, ...], EnvironmentRef] = {}
        out = []
        for index, draft in enumerate(drafts):
            if draft.requirements is None or draft.environment is not None:
                out.append(draft)
                continue
            if draft.requirements in kept:
                out.append(replace(draft, environment=kept[draft.requirements]))
                continue
            if draft.requirements not in resolved:
                requirements = Requirements(draft.requirements)
                field = f"variants[{index}].requirements"
                resolved[draft.requirements] = self._environments.resolve(requirements, field)
            out.append(replace(draft, environment=resolved[draft.requirements].digest))
        return out, list(resolved.values())


def source_of(tarball: str, sources: Sequence[dict[str, Any]] | None, index: int) -> dict[str, Any]:
    if sources is not None:
        return dict(sources[index])
    return {"kind": "s3", "uri": tarball} if tarball.startswith("s3://") else {"kind": "upload"}
