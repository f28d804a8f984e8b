"""Automations: create, read, list, update, delete, and their revisions.

Every change to variants, weights, champion or experiment makes a new immutable
revision; runs record the revision they were dispatched under. Tarball
references are resolved (and S3 objects fetched) before the write transaction,
so a slow object store never holds a database lock.
"""

from __future__ import annotations

import secrets as pysecrets
from collections.abc import Mapping, Sequence
from typing import Any

from msgspec import UNSET
from msgspec.structs import replace as struct_replace
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from automation_server.audit import record
from automation_server.automations import validation as rules
from automation_server.automations.drafts import VariantDrafts
from automation_server.automations.schemas import (
    AutomationCreate,
    AutomationOut,
    AutomationPage,
    AutomationPatch,
    RevisionOut,
    RevisionPage,
    to_builtins,
)
from automation_server.automations.store import (
    add_revision,
    draft_of,
    event_source_of,
    live_drafts,
    live_variants,
    load_automation,
    new_revision,
    revision_experiment,
    write_variants,
)
from automation_server.automations.views import audit_change, automation_out, revision_out, snapshot
from automation_server.config import Settings
from automation_server.db.engine import Database
from automation_server.db.models import Automation, AutomationSecret, Revision
from automation_server.environments.service import EnvironmentService
from automation_server.errors import Conflict, Invalid, NotFound
from automation_server.ids import new_id, utcnow
from automation_server.pagination import fetch_page
from automation_server.queue.manager import RunQueue
from automation_server.queue.notify import Notifier
from automation_server.security.accounts import Caller
from automation_server.security.crypto import SecretBox
from automation_server.storage.blobs import BlobService
from automation_server.triggers import schedule_of


def check_fields(body: dict[str, Any]) -> None:
    """Every string of a request body must be storable text (no NUL, valid Unicode)."""
    for field, value in body.items():
        rules.check_storable(value, field)


def new_webhook_secret() -> str:
    return "whsec_" + pysecrets.token_urlsafe(32)


class AutomationService:
    def __init__(
        self,
        db: Database,
        blobs: BlobService,
        box: SecretBox,
        settings: Settings,
        notifier: Notifier,
        queue: RunQueue,
        environments: EnvironmentService,
    ) -> None:
        self._db = db
        self._notifier = notifier
        self._queue = queue
        self._blobs = blobs
        self._environments = environments
        self._drafts = VariantDrafts(blobs, environments)
        self._box = box
        self._settings = settings

    @property
    def drafts(self) -> VariantDrafts:
        return self._drafts

    @property
    def environments(self) -> EnvironmentService:
        return self._environments

    # ---- create ----------------------------------------------------------------

    def create(
        self,
        caller: Caller,
        body: AutomationCreate,
        sources: Sequence[dict[str, Any]] | None = None,
    ) -> AutomationOut:
        """Validate and store a new automation; ``sources`` records how variants were made."""
        check_fields(to_builtins(body))
        rules.check_storable(list(sources or []), "variants")
        drafts = self._drafts.from_create(caller, body, sources)
        self._check_common(
            body.experiment_id,
            [d.name for d in drafts],
            [d.weight for d in drafts],
            body.env,
            body.secrets,
        )
        rules.check_network(body.network, self._settings.allow_host_network)
        rules.check_assignment_key_path(body.assignment_key_path)
        metrics = rules.check_metrics(to_builtins(body.metrics))
        allocation = rules.check_allocation(to_builtins(body.allocation), metrics, len(drafts))
        trigger = rules.normalise_trigger(body.trigger)
        limits = rules.resolve_limits(body.limits, self._settings.limits)
        timeout_s = rules.resolve_timeout(body.timeout_s, self._settings.limits)
        # Slow (a resolver run per new set of requirements): after every cheap check.
        drafts, environments = self._drafts.resolve_environments(drafts, [])
        now = utcnow()
        webhook_secret = new_webhook_secret() if trigger["type"] == "webhook" else None
        row = Automation(
            id=new_id(),
            org_id=caller.org_id,
            name=body.name,
            trigger=trigger,
            trigger_type=trigger["type"],
            schedule_anchor=now,
            experiment_id=body.experiment_id,
            champion=None,
            revision=1,
            enabled=body.enabled,
            timeout_s=timeout_s,
            network=body.network,
            limits=limits,
            concurrency=to_builtins(body.concurrency),
            max_running=body.concurrency.max_running,
            retry=to_builtins(body.retry),
            misfire=to_builtins(body.misfire),
            auto_promote=to_builtins(body.auto_promote) if body.auto_promote else None,
            metrics=metrics,
            allocation=allocation,
            assignment_key_path=body.assignment_key_path,
            env=dict(body.env),
            disable_after_failures=body.disable_after_failures,
            failure_streak=0,
            webhook_secret=self._box.encrypt(webhook_secret) if webhook_secret else None,
            next_run_at=None,
            missed_ticks=0,
            created_at=now,
            updated_at=now,
        )
        row.next_run_at = self._next_run(row)
        try:
            with self._db.write() as session:
                row.event_source_id = event_source_of(session, caller.org_id, trigger)
                session.add(row)
                session.flush()
                for environment in environments:
                    self._environments.record(session, caller.org_id, environment)
                write_variants(session, row.id, drafts, None)
                add_revision(session, row, drafts, caller.actor, "created")
                self._set_secrets(session, row.id, dict(body.secrets))
                self._notifier.schedules_changed(session)
                audit_change(session, caller.actor, "automation.create", row, None)
        except IntegrityError as exc:
            raise self._conflict(body.name) from exc
        out = self.get(caller, row.id)
        return struct_replace(out, webhook_secret=webhook_secret) if webhook_secret else out

    def _check_common(
        self,
        experiment_id: str | None,
        names: Sequence[str],
        weights: Sequence[int],
        env: dict[str, str],
        secrets: Mapping[str, str | None],
    ) -> None:
        rules.check_experiment_id(experiment_id)
        rules.check_variant_set(names, weights, experiment_id, "variants")
        rules.check_env(env, "env")
        rules.check_env({k: "" for k in secrets}, "secrets")

    # ---- read ------------------------------------------------------------------

    def get(self, caller: Caller, automation_id: str) -> AutomationOut:
        with self._db.read() as session:
            row = load_automation(session, caller.org_id, automation_id)
            return automation_out(session, row)

    def get_row(self, caller: Caller, automation_id: str) -> Automation:
        with self._db.read() as session:
            return load_automation(session, caller.org_id, automation_id)

    def list_page(
        self, caller: Caller, *, name: str | None, limit: int, cursor: str | None
    ) -> AutomationPage:
        query = select(Automation).where(
            Automation.org_id == caller.org_id, Automation.deleted_at.is_(None)
        )
        if name:
            query = query.where(Automation.name == name)
        with self._db.read() as session:
            rows, next_cursor = fetch_page(session, query, Automation, limit=limit, cursor=cursor)
            items = [automation_out(session, row) for row in rows]
        return AutomationPage(items=items, next_cursor=next_cursor)

    def revisions(self, caller: Caller, automation_id: str) -> RevisionPage:
        with self._db.read() as session:
            load_automation(session, caller.org_id, automation_id, include_deleted=True)
            rows = session.scalars(
                select(Revision)
                .where(Revision.automation_id == automation_id)
                .order_by(Revision.number.desc())
            )
            return RevisionPage(items=[revision_out(r) for r in rows])

    def revision(self, caller: Caller, automation_id: str, number: int) -> RevisionOut:
        with self._db.read() as session:
            load_automation(session, caller.org_id, automation_id, include_deleted=True)
            row = session.get(Revision, (automation_id, number))
            if row is None:
                raise NotFound(f"automation {automation_id} has no revision {number}")
            return revision_out(row)

    # ---- update ----------------------------------------------------------------

    def update(self, caller: Caller, automation_id: str, patch: AutomationPatch) -> AutomationOut:
        check_fields(to_builtins(patch))
        current = self.get_row(caller, automation_id)
        with self._db.read() as session:
            live = live_variants(session, automation_id)
        old = [draft_of(v) for v in live]
        drafts = self._drafts.patched(caller, old, patch)
        experiment_id = (
            current.experiment_id if patch.experiment_id is UNSET else patch.experiment_id
        )
        env = current.env if patch.env is UNSET else dict(patch.env)
        secrets = {} if patch.secrets is UNSET else dict(patch.secrets)
        self._check_common(
            experiment_id, [d.name for d in drafts], [d.weight for d in drafts], env, secrets
        )
        if patch.champion not in (UNSET, None) and patch.champion not in {d.name for d in drafts}:
            raise Invalid(
                f"champion: unknown variant '{patch.champion}'",
                field="champion",
                code="unknown_variant",
            )
        changes = self._scalar_changes(patch)
        changes["allocation"] = self._allocation_after(current, patch, changes, len(drafts))
        drafts, environments = self._drafts.resolve_environments(drafts, old)
        try:
            with self._db.write() as session:
                for environment in environments:
                    self._environments.record(session, caller.org_id, environment)
                row = load_automation(session, caller.org_id, automation_id, lock=True)
                before = snapshot(session, row)
                self._apply(row, changes, experiment_id, env)
                if "trigger" in changes:
                    row.event_source_id = event_source_of(
                        session, caller.org_id, changes["trigger"]
                    )
                old = live_drafts(session, automation_id)
                champion = row.champion if patch.champion is UNSET else patch.champion
                if champion not in {d.name for d in drafts}:
                    champion = None  # the champion was deleted
                changed = drafts != old or experiment_id != revision_experiment(session, row)
                if changed or champion != row.champion:
                    row.champion = champion
                    new_revision(session, row, drafts, caller.actor, "updated")
                if patch.secrets is not UNSET:
                    self._set_secrets(session, row.id, secrets)
                row.updated_at = utcnow()
                if "trigger" in changes or "enabled" in changes:
                    self._notifier.schedules_changed(session)
                session.flush()
                audit_change(session, caller.actor, "automation.update", row, before)
        except IntegrityError as exc:
            raise self._conflict(changes.get("name", current.name)) from exc
        return self.get(caller, automation_id)

    def _allocation_after(
        self, current: Automation, patch: AutomationPatch, changes: dict[str, Any], variants: int
    ) -> dict[str, Any]:
        """The allocation once the patch applies, checked against the patched metrics and
        variants; a champion set by hand ends a bandit (the champion gets all traffic)."""
        if patch.champion not in (UNSET, None):
            return {"mode": "fixed"}
        spec = current.allocation if patch.allocation is UNSET else to_builtins(patch.allocation)
        metrics = changes.get("metrics", current.metrics or {})
        return rules.check_allocation(spec, metrics, variants)

    def _scalar_changes(self, patch: AutomationPatch) -> dict[str, Any]:
        """Validated new values of the plain fields present in the patch."""
        changes: dict[str, Any] = {}
        for name in (
            "name",
            "enabled",
            "concurrency",
            "retry",
            "misfire",
            "auto_promote",
            "metrics",
            "assignment_key_path",
            "network",
            "timeout_s",
            "limits",
            "trigger",
            "disable_after_failures",
        ):
            value = getattr(patch, name)
            if value is not UNSET:
                changes[name] = value
        if "network" in changes:
            rules.check_network(changes["network"], self._settings.allow_host_network)
        if "assignment_key_path" in changes:
            rules.check_assignment_key_path(changes["assignment_key_path"])
        if "timeout_s" in changes:
            changes["timeout_s"] = rules.resolve_timeout(
                changes["timeout_s"], self._settings.limits
            )
        if "limits" in changes:
            changes["limits"] = rules.resolve_limits(changes["limits"], self._settings.limits)
        if "trigger" in changes:
            changes["trigger"] = rules.normalise_trigger(changes["trigger"])
        for name in ("concurrency", "retry", "misfire", "auto_promote", "metrics"):
            if changes.get(name) is not None:
                changes[name] = to_builtins(changes[name])
        if "metrics" in changes:
            changes["metrics"] = rules.check_metrics(changes["metrics"])
        return changes

    def _apply(
        self,
        row: Automation,
        changes: dict[str, Any],
        experiment_id: str | None,
        env: dict[str, str],
    ) -> None:
        for name, value in changes.items():
            setattr(row, name, value)
        if changes.get("concurrency"):
            row.max_running = int(changes["concurrency"]["max_running"])
        row.experiment_id = experiment_id
        row.env = env
        if changes.get("enabled"):
            # Enabling again (by hand) clears why the server disabled it, and the streak.
            row.disabled_reason = None
            row.failure_streak = 0
        if "trigger" in changes:
            row.trigger_type = changes["trigger"]["type"]
            row.schedule_anchor = utcnow()
            if row.trigger_type == "webhook" and row.webhook_secret is None:
                row.webhook_secret = self._box.encrypt(new_webhook_secret())
        if "trigger" in changes or "enabled" in changes:
            row.next_run_at = self._next_run(row)

    # ---- delete ----------------------------------------------------------------

    def delete(self, caller: Caller, automation_id: str) -> None:
        """Soft delete: the automation disappears, its runs and revisions stay queryable."""
        now = utcnow()
        with self._db.write() as session:
            row = load_automation(session, caller.org_id, automation_id, lock=True)
            before = snapshot(session, row)
            row.deleted_at = now
            row.enabled = False
            row.next_run_at = None
            row.updated_at = now
            self._queue.cancel_queued(session, row.id, "automation deleted")
            self._notifier.schedules_changed(session)
            record(
                session,
                org_id=caller.org_id,
                actor=caller.actor,
                action="automation.delete",
                resource_type="automation",
                resource_id=row.id,
                before=before,
            )

    def rotate_webhook_secret(self, caller: Caller, automation_id: str) -> AutomationOut:
        secret = new_webhook_secret()
        with self._db.write() as session:
            row = load_automation(session, caller.org_id, automation_id, lock=True)
            if row.trigger_type != "webhook":
                raise Conflict(
                    "only webhook automations have a webhook secret", code="not_a_webhook"
                )
            row.webhook_secret = self._box.encrypt(secret)
            row.updated_at = utcnow()
            record(
                session,
                org_id=caller.org_id,
                actor=caller.actor,
                action="automation.rotate_webhook_secret",
                resource_type="automation",
                resource_id=row.id,
            )
        return struct_replace(self.get(caller, automation_id), webhook_secret=secret)

    # ---- shared pieces ---------------------------------------------------------

    def _next_run(self, row: Automation) -> Any:
        if not row.enabled:
            return None
        schedule = schedule_of(row.trigger, row.schedule_anchor)
        return schedule.next_after(utcnow()) if schedule else None

    def _set_secrets(
        self, session: Session, automation_id: str, values: dict[str, str | None]
    ) -> None:
        now = utcnow()
        for name, value in values.items():
            existing = session.get(AutomationSecret, (automation_id, name))
            if value is None:
                if existing is not None:
                    session.delete(existing)
            elif existing is None:
                session.add(
                    AutomationSecret(
                        automation_id=automation_id,
                        name=name,
                        ciphertext=self._box.encrypt(value),
                        updated_at=now,
                    )
                )
            else:
                existing.ciphertext = self._box.encrypt(value)
                existing.updated_at = now

    def _conflict(self, name: str) -> Conflict:
        return Conflict(
            f"name: an automation named '{name}' already exists in this organization",
            field="name",
            code="duplicate_name",
        )
