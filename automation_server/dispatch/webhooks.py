"""Webhook triggers: a signed POST queues a run like any dispatch.

The signature is ``X-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``
keyed with the automation's webhook secret; no bearer key is involved, so an
unknown automation, a non-webhook automation and a bad signature all reveal
nothing beyond 404/401. ``X-Delivery-Id`` makes redeliveries idempotent.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import jmespath
import msgspec
from jmespath.exceptions import JMESPathError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from automation_server.db.engine import Database
from automation_server.db.models import Automation, Run, WebhookDelivery
from automation_server.dispatch.service import Dispatcher
from automation_server.errors import BadRequest, Conflict, NotFound, Unauthorized
from automation_server.ids import utcnow
from automation_server.runs.schemas import RunOut
from automation_server.runs.views import run_out
from automation_server.security.crypto import SecretBox

SIGNATURE_PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The header value a sender computes (documented for users, used by tests)."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def assignment_key(path: str | None, payload: dict[str, Any]) -> str | None:
    """The sticky key found at ``assignment_key_path`` in the payload, if any."""
    if not path:
        return None
    try:
        value = jmespath.search(path, payload)
    except JMESPathError:
        return None
    if isinstance(value, bool) or value is None or not isinstance(value, str | int | float):
        return None
    return str(value)[:500]


class WebhookService:
    def __init__(self, db: Database, dispatcher: Dispatcher, box: SecretBox) -> None:
        self._db = db
        self._dispatcher = dispatcher
        self._box = box

    def receive(
        self, automation_id: str, body: bytes, signature: str | None, delivery_id: str | None
    ) -> RunOut:
        with self._db.read() as session:
            automation = self._automation(session, automation_id)
            secret = self._box.decrypt(automation.webhook_secret or "")
        self._verify(secret, body, signature)
        payload = self._payload(body)
        self._dispatcher.check_payload(payload)
        try:
            return self._enqueue(automation_id, payload, delivery_id)
        except IntegrityError:  # the same delivery raced in: answer with its run
            with self._db.read() as session:
                existing = self._delivered(session, automation_id, delivery_id)
                if existing is None:
                    raise
                return run_out(existing)

    def _automation(self, session: Any, automation_id: str) -> Automation:
        automation = session.scalars(
            select(Automation).where(
                Automation.id == automation_id, Automation.deleted_at.is_(None)
            )
        ).one_or_none()
        if (
            automation is None
            or automation.trigger_type != "webhook"
            or not automation.webhook_secret
        ):
            raise NotFound(f"no webhook automation with id '{automation_id}'")
        return automation  # type: ignore[no-any-return]

    def _verify(self, secret: str, body: bytes, signature: str | None) -> None:
        if not signature or not signature.startswith(SIGNATURE_PREFIX):
            raise Unauthorized(
                "missing X-Signature-256 header: send 'sha256=<hex HMAC-SHA256 "
                "of the raw body keyed with the webhook secret>'",
                code="invalid_signature",
            )
        if not hmac.compare_digest(sign(secret, body), signature.strip()):
            raise Unauthorized("X-Signature-256 does not match the body", code="invalid_signature")

    def _payload(self, body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            payload = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise BadRequest(f"body is not valid JSON: {exc}", code="malformed_json") from None
        if not isinstance(payload, dict):
            raise BadRequest("body must be a JSON object", code="invalid_payload")
        return payload

    def _enqueue(
        self, automation_id: str, payload: dict[str, Any], delivery_id: str | None
    ) -> RunOut:
        with self._db.write() as session:
            automation = session.scalars(
                select(Automation).where(Automation.id == automation_id).with_for_update()
            ).one()
            if delivery_id:
                existing = self._delivered(session, automation_id, delivery_id)
                if existing is not None:
                    return run_out(existing)
            if not automation.enabled:
                raise Conflict(
                    f"automation '{automation.name}' is disabled", code="automation_disabled"
                )
            run = self._dispatcher.enqueue(
                session,
                automation,
                trigger="webhook",
                payload=payload,
                key=assignment_key(automation.assignment_key_path, payload),
            )
            if delivery_id:
                session.add(
                    WebhookDelivery(
                        automation_id=automation_id,
                        delivery_id=delivery_id,
                        run_id=run.id,
                        created_at=utcnow(),
                    )
                )
                session.flush()
            return run_out(run)

    def _delivered(self, session: Any, automation_id: str, delivery_id: str | None) -> Run | None:
        if not delivery_id:
            return None
        run_id = session.scalar(
            select(WebhookDelivery.run_id).where(
                WebhookDelivery.automation_id == automation_id,
                WebhookDelivery.delivery_id == delivery_id,
            )
        )
        return session.get(Run, run_id) if run_id else None
