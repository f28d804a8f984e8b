"""The variant lifecycle: clone, promote, roll back, and automatic champion/challenger.

Every change is a new revision; promotions and rollbacks also leave a decision
record (who, when, why, and the experiment summary at that moment). The
automatic policy is evaluated after each finished run under a lock on the
automation row, so concurrent finishers cannot decide twice.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from msgspec import UNSET
from sqlalchemy import select
from sqlalchemy.orm import Session

from automation_server.automations import validation as rules
from automation_server.automations.bandit import plan_reweight, seed_for
from automation_server.automations.schemas import (
    AutomationOut,
    CloneRequest,
    DecisionOut,
    DecisionPage,
    PromoteRequest,
    to_builtins,
)
from automation_server.automations.service import AutomationService, check_fields
from automation_server.automations.store import (
    VariantDraft,
    live_drafts,
    load_automation,
    new_revision,
)
from automation_server.automations.views import audit_change, snapshot
from automation_server.db.engine import Database
from automation_server.db.models import Automation, Decision
from automation_server.environments.service import EnvironmentRef
from automation_server.errors import Invalid, NotFound
from automation_server.experiments.policy import Verdict, evaluate_policy
from automation_server.experiments.service import ExperimentService
from automation_server.ids import new_id, to_rfc3339, utcnow
from automation_server.logging import get_logger
from automation_server.notifications.events import NotifyEvent
from automation_server.notifications.outbox import Outbox
from automation_server.security.accounts import Caller
from automation_server.storage.blobs import BlobService

log = get_logger("lifecycle")

AUTO_ACTOR = "system:auto-promote"
BANDIT_ACTOR = "system:bandit"


def _has_policy(row: Automation) -> bool:
    """Something to evaluate after each run: champion/challenger or a bandit."""
    bandit = (row.allocation or {}).get("mode") == "bandit"
    return bool(row.experiment_id) and (bool(row.auto_promote) or bandit)


def _find(drafts: list[VariantDraft], name: str, field: str) -> VariantDraft:
    for d in drafts:
        if d.name == name:
            return d
    raise Invalid(f"{field}: unknown variant '{name}'", field=field, code="unknown_variant")


def promoted(drafts: list[VariantDraft], champion: str) -> list[VariantDraft]:
    """The champion gets all the weight (the old total, so the scale is kept); others 0."""
    total = max(1, sum(d.weight for d in drafts))
    return [replace(d, weight=total if d.name == champion else 0) for d in drafts]


class VariantLifecycle:
    def __init__(
        self,
        db: Database,
        blobs: BlobService,
        automations: AutomationService,
        experiments: ExperimentService,
        outbox: Outbox,
    ) -> None:
        self._db = db
        self._blobs = blobs
        self._automations = automations
        self._experiments = experiments
        self._outbox = outbox

    # ---- clone -----------------------------------------------------------------

    def clone(
        self, caller: Caller, automation_id: str, source: str, body: CloneRequest
    ) -> AutomationOut:
        """A new variant copied from ``source``; each override replaces the copied value whole."""
        check_fields(to_builtins(body))
        o = body.overrides
        digest = (
            self._blobs.resolve(caller.org_id, o.tarball, field="overrides.tarball")
            if o.tarball is not UNSET
            else None
        )
        if o.entrypoint is not UNSET:
            rules.check_entrypoint(o.entrypoint, "overrides.entrypoint")
        if o.env is not UNSET:
            rules.check_env(o.env, "overrides.env")
        packages, environments = (
            self._packages_for(caller, automation_id, source, digest) if digest else (None, [])
        )
        with self._db.write() as session:
            for environment in environments:
                self._automations.environments.record(session, caller.org_id, environment)
            row = load_automation(session, caller.org_id, automation_id, lock=True)
            before = snapshot(session, row)
            drafts = live_drafts(session, automation_id)
            original = _find(drafts, source, "name")
            if packages is not None:
                original = replace(
                    original,
                    requirements=packages.requirements,
                    requirements_source=packages.requirements_source,
                    environment=packages.environment,
                )
            if any(d.name == body.name for d in drafts):
                raise Invalid(
                    f"name: variant '{body.name}' already exists",
                    field="name",
                    code="duplicate_variant",
                )
            clone = replace(
                original,
                name=body.name,
                weight=body.weight,
                digest=digest or original.digest,
                entrypoint=original.entrypoint if o.entrypoint is UNSET else list(o.entrypoint),
                env=original.env if o.env is UNSET else dict(o.env),
                description=original.description if o.description is UNSET else o.description,
                source={
                    "kind": "clone",
                    "of": source,
                    "revision": row.revision,
                    "overrides": sorted(
                        k
                        for k in ("env", "entrypoint", "description", "tarball")
                        if getattr(o, k) is not UNSET
                    ),
                },
            )
            updated = [*drafts, clone]
            rules.check_variant_set(
                [d.name for d in updated],
                [d.weight for d in updated],
                row.experiment_id,
                "variants",
            )
            new_revision(session, row, updated, caller.actor, f"cloned '{source}' as '{body.name}'")
            audit_change(session, caller.actor, "variant.clone", row, before)
        return self._automations.get(caller, automation_id)

    def _packages_for(
        self, caller: Caller, automation_id: str, source: str, digest: str
    ) -> tuple[VariantDraft, list[EnvironmentRef]]:
        """A clone with another tarball: its requirements.txt read and locked, before the
        write transaction (resolving can take seconds)."""
        with self._db.read() as session:
            load_automation(session, caller.org_id, automation_id)
            drafts = live_drafts(session, automation_id)
        original = replace(_find(drafts, source, "name"), digest=digest)
        changed = self._automations.drafts.tarball_changed(original, "overrides.tarball")
        [locked], environments = self._automations.drafts.resolve_environments([changed], drafts)
        return locked, environments

    # ---- promote and roll back ---------------------------------------------------

    def promote(self, caller: Caller, automation_id: str, body: PromoteRequest) -> AutomationOut:
        """Make ``body.variant`` the champion with all the weight, and record the decision."""
        check_fields(to_builtins(body))
        summary = self._summary(caller.org_id, automation_id)
        with self._db.write() as session:
            row = load_automation(session, caller.org_id, automation_id, lock=True)
            _find(live_drafts(session, automation_id), body.variant, "variant")
            self._promote_in(
                session,
                row,
                body.variant,
                body.reason or "promoted by hand",
                automatic=False,
                actor=caller.actor,
                summary=summary,
            )
        return self._automations.get(caller, automation_id)

    def _promote_in(
        self,
        session: Session,
        row: Automation,
        variant: str,
        reason: str,
        *,
        automatic: bool,
        actor: str,
        summary: dict[str, Any] | None,
    ) -> None:
        before = snapshot(session, row)
        drafts = live_drafts(session, row.id)
        row.champion = variant
        row.allocation = {"mode": "fixed"}  # a champion ends the bandit
        new_revision(session, row, promoted(drafts, variant), actor, f"promoted '{variant}'")
        self._record(session, row, "promote", variant, reason, automatic, actor, summary, before)

    def _rollback_in(
        self,
        session: Session,
        row: Automation,
        variant: str,
        reason: str,
        *,
        actor: str,
        summary: dict[str, Any] | None,
    ) -> None:
        before = snapshot(session, row)
        drafts = [
            replace(d, weight=0) if d.name == variant else d for d in live_drafts(session, row.id)
        ]
        new_revision(session, row, drafts, actor, f"rolled back '{variant}'")
        self._record(session, row, "rollback", variant, reason, True, actor, summary, before)

    def _record(
        self,
        session: Session,
        row: Automation,
        kind: str,
        variant: str,
        reason: str,
        automatic: bool,
        actor: str,
        summary: dict[str, Any] | None,
        before: dict[str, Any],
    ) -> None:
        """The decision record, the audit event of the change it made, and its notice."""
        decision = Decision(
            id=new_id(),
            org_id=row.org_id,
            automation_id=row.id,
            kind=kind,
            variant=variant,
            reason=reason,
            automatic=automatic,
            actor=actor,
            revision=row.revision,
            summary=summary,
            created_at=utcnow(),
        )
        session.add(decision)
        audit_change(session, actor, f"variant.{kind}", row, before)
        self._outbox.add(
            session,
            org_id=row.org_id,
            event=NotifyEvent.EXPERIMENT_DECISION,
            key=f"decision:{decision.id}",
            automation={"id": row.id, "name": row.name},
            decision={
                "id": decision.id,
                "kind": kind,
                "variant": variant,
                "reason": reason,
                "automatic": automatic,
                "actor": actor,
                "revision": row.revision,
                "experiment_id": row.experiment_id,
            },
        )
        log.info(
            "variant.decision",
            automation_id=row.id,
            kind=kind,
            variant=variant,
            automatic=automatic,
            revision=row.revision,
        )

    def decisions(self, caller: Caller, automation_id: str) -> DecisionPage:
        with self._db.read() as session:
            load_automation(session, caller.org_id, automation_id, include_deleted=True)
            rows = session.scalars(
                select(Decision)
                .where(Decision.automation_id == automation_id)
                .order_by(Decision.created_at.desc(), Decision.id.desc())
            )
            return DecisionPage(
                items=[
                    DecisionOut(
                        id=d.id,
                        kind=d.kind,
                        variant=d.variant,
                        reason=d.reason,
                        automatic=d.automatic,
                        actor=d.actor,
                        revision=d.revision,
                        summary=d.summary,
                        created_at=to_rfc3339(d.created_at) or "",
                    )
                    for d in rows
                ]
            )

    def _summary(self, org_id: str, automation_id: str) -> dict[str, Any] | None:
        """The experiment summary at this moment (None without an experiment or runs)."""
        with self._db.read() as session:
            experiment_id = session.scalar(
                select(Automation.experiment_id).where(
                    Automation.id == automation_id, Automation.org_id == org_id
                )
            )
        if not experiment_id:
            return None
        try:
            return self._experiments.summary(Caller.system(org_id), experiment_id)
        except NotFound:
            return None

    # ---- automatic champion/challenger ------------------------------------------

    def evaluate(self, automation_id: str) -> Verdict | None:
        """After a run finished: apply the ``auto_promote`` policy, then the bandit."""
        with self._db.read() as session:
            quick = session.get(Automation, automation_id)
            if quick is None or not _has_policy(quick):
                return None
            org_id = quick.org_id
            # The summary (recorded with a decision) is the dear part: only when one may
            # be made, not after each of a bandit's every_runs runs.
            wanted = bool(quick.auto_promote) or self._reweight_due(session, quick)
        summary = self._summary(org_id, automation_id) if wanted else None
        with self._db.write() as session:
            row = session.scalars(
                select(Automation).where(Automation.id == automation_id).with_for_update()
            ).one()
            if not _has_policy(row) or row.deleted_at is not None:
                return None
            verdict = self._apply_policy(session, row, summary)
            self._reweight_in(session, row, summary)
            return verdict

    def _reweight_due(self, session: Session, row: Automation) -> bool:
        """A bandit whose current revision has ``every_runs`` random outcomes."""
        allocation = row.allocation or {}
        if allocation.get("mode") != "bandit":
            return False
        done = self._experiments.random_outcomes(
            session, row.org_id, str(row.experiment_id), row.id, row.revision
        )
        return done >= int(allocation["every_runs"])

    def _reweight_in(self, session: Session, row: Automation, summary: Any) -> None:
        """Set the weights from the bandit once ``every_runs`` outcomes came in."""
        allocation, experiment_id = row.allocation, str(row.experiment_id)
        if not self._reweight_due(session, row):
            return
        _, srm_flagged = self._experiments.revision_arms(
            session, row.org_id, experiment_id, row.id, row.revision
        )
        if srm_flagged:
            log.warning("bandit.held", automation_id=row.id, reason="sample ratio mismatch")
            self._notify_srm(session, row)
            return
        arms = self._experiments.automation_arms(session, row.org_id, experiment_id, row.id)
        plan = plan_reweight(
            allocation,
            row.metrics or {},
            live_drafts(session, row.id),
            arms,
            seed_for(row.id, row.revision),
        )
        before = snapshot(session, row)
        new_revision(session, row, plan.drafts, BANDIT_ACTOR, "reweighted by the bandit")
        with_bandit = {**(summary or {}), "bandit": plan.facts}
        self._record(
            session,
            row,
            "reweight",
            plan.best,
            plan.reason,
            True,
            BANDIT_ACTOR,
            with_bandit,
            before,
        )

    def _apply_policy(
        self, session: Session, row: Automation, summary: dict[str, Any] | None
    ) -> Verdict | None:
        if not row.auto_promote:
            return None
        verdict = self._verdict(session, row)
        if verdict.action == "promote" and verdict.variant:
            self._promote_in(
                session,
                row,
                verdict.variant,
                verdict.reason,
                automatic=True,
                actor=AUTO_ACTOR,
                summary=summary,
            )
        elif verdict.action == "rollback" and verdict.variant:
            self._rollback_in(
                session, row, verdict.variant, verdict.reason, actor=AUTO_ACTOR, summary=summary
            )
        return verdict

    def _verdict(self, session: Session, row: Automation) -> Verdict:
        drafts = live_drafts(session, row.id)
        weighted = [d for d in drafts if d.weight > 0]
        control = row.champion or (weighted[0].name if weighted else None)
        arms, srm_flagged = self._experiments.revision_arms(
            session, row.org_id, str(row.experiment_id), row.id, row.revision
        )
        if srm_flagged:
            self._notify_srm(session, row)
        if control is None or control not in arms:
            return Verdict("none", None, "the control has no runs in this revision yet")
        challengers = [
            (d.name, arms[d.name]) for d in weighted if d.name != control and d.name in arms
        ]
        return evaluate_policy(
            rules.effective_policy(row.auto_promote or {}, row.metrics or {}),
            (control, arms[control]),
            challengers,
            srm_flagged=srm_flagged,
        )

    def _notify_srm(self, session: Session, row: Automation) -> None:
        """``experiment.srm``, once per revision (the outbox key makes repeats no-ops)."""
        self._outbox.add(
            session,
            org_id=row.org_id,
            event=NotifyEvent.EXPERIMENT_SRM,
            key=f"srm:{row.id}:{row.revision}",
            automation={"id": row.id, "name": row.name},
            decision={
                "kind": "srm",
                "experiment_id": row.experiment_id,
                "revision": row.revision,
                "reason": "the variants' run counts do not match their weights (sample "
                "ratio mismatch): automatic decisions are held",
            },
        )
