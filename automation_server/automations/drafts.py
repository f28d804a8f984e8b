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
from automation_server.errors import Invalid
from automation_server.security.accounts import Caller
from automation_server.storage.blobs import BlobService

DEFAULT_ENTRYPOINT = ["python3", "main.py"]


class VariantDrafts:
    def __init__(self, blobs: BlobService) -> None:
        self._blobs = blobs

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
            return [
                VariantDraft(
                    "default",
                    1,
                    digest,
                    body.entrypoint or DEFAULT_ENTRYPOINT,
                    {},
                    "",
                    source_of(body.tarball or "", sources, 0),
                )
            ]
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
        return VariantDraft(
            spec.name,
            spec.weight,
            digest,
            list(entrypoint),
            dict(spec.env),
            spec.description,
            source,
        )

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
            )
            return self.draft(caller, spec, field, {"kind": "upload"})
        draft = old
        if p.tarball is not UNSET:
            digest = self._blobs.resolve(caller.org_id, p.tarball, field=f"{field}.tarball")
            draft = replace(draft, digest=digest, source={"kind": "upload"})
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


def source_of(tarball: str, sources: Sequence[dict[str, Any]] | None, index: int) -> dict[str, Any]:
    if sources is not None:
        return dict(sources[index])
    return {"kind": "s3", "uri": tarball} if tarball.startswith("s3://") else {"kind": "upload"}
