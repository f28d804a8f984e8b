"""``POST /v1/events/{id}``: one signed delivery queues a run for every automation whose
event trigger matches, all in one transaction (DESIGN section 9.4).

The signature is checked over the raw body before anything else is read; a
delivery id seen before gets the stored first answer, so a sender's retries
never run anything twice.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from automation_server.db.engine import Database
from automation_server.db.models import Automation, EventDelivery, EventSource
from automation_server.dispatch.service import Batch, Dispatcher
from automation_server.dispatch.webhooks import SIGNATURE_PREFIX, assignment_key, sign
from automation_server.errors import BadRequest, NotFound, RateLimited, Unauthorized
from automation_server.events.matching import event_type_of, matches
from automation_server.events.schemas import EventAnswer
from automation_server.ids import new_id, utcnow
from automation_server.logging import get_logger
from automation_server.security.crypto import SecretBox
from automation_server.statuses import Trigger

log = get_logger("events")

MAX_DELIVERY_ID_CHARS = 200


class EventReceiver:
    def __init__(
        self, db: Database, dispatcher: Dispatcher, box: SecretBox, *, max_queued_per_org: int
    ) -> None:
        self._db = db
        self._dispatcher = dispatcher
        self._box = box
        self._max_queued = max_queued_per_org

    def receive(self, source_id: str, headers: Mapping[str, str], body: bytes) -> EventAnswer:
        """``headers`` with lower-case names (as ASGI gives them)."""
        source = self._source(source_id)
        self._verify(source, headers, body)
        payload = _payload(body)
        self._dispatcher.check_payload(payload)
        event_type = event_type_of(source.event_type, headers, payload)
        delivery_id = (headers.get(source.delivery_id_header.lower()) or "").strip()
        if len(delivery_id) > MAX_DELIVERY_ID_CHARS:
            raise BadRequest(
                f"{source.delivery_id_header}: at most {MAX_DELIVERY_ID_CHARS} characters",
                code="invalid_delivery_id",
            )
        try:
            return self._fan_out(source, event_type, payload, delivery_id or new_id(), delivery_id)
        except IntegrityError:  # the same delivery raced in: answer with the first answer
            answer = self._answered(source.id, delivery_id)
            if answer is None:
                raise
            return answer

    def _source(self, source_id: str) -> EventSource:
        with self._db.read() as session:
            source = session.get(EventSource, source_id)
            if source is None:
                raise NotFound(f"no event source with id '{source_id}'")
            session.expunge(source)
            return source

    def _verify(self, source: EventSource, headers: Mapping[str, str], body: bytes) -> None:
        name = source.signature_header
        given = (headers.get(name.lower()) or "").strip()
        if not given.startswith(SIGNATURE_PREFIX):
            raise Unauthorized(
                f"missing {name} header: send 'sha256=<hex HMAC-SHA256 of the raw body "
                "keyed with the event source's secret>'",
                code="invalid_signature",
            )
        expected = sign(self._box.decrypt(source.secret), body)
        if not hmac.compare_digest(expected, given):
            raise Unauthorized(f"{name} does not match the body", code="invalid_signature")

    def _fan_out(
        self,
        source: EventSource,
        event_type: str,
        payload: dict[str, Any],
        delivery_id: str,
        given_id: str,
    ) -> EventAnswer:
        with self._db.write() as session:
            if given_id:
                first = session.get(EventDelivery, (source.id, given_id))
                if first is not None:
                    return msgspec.convert(first.answer, EventAnswer)
            matching = [
                a
                for a in self._candidates(session, source)
                if matches(a.trigger, event_type, payload)
            ]
            if matching:
                self._check_backlog(session, source.org_id)
            runs = self._enqueue_all(session, matching, payload)
            answer = EventAnswer(delivery_id, event_type, len(matching), [r.id for r in runs])
            if given_id:
                session.add(
                    EventDelivery(
                        source_id=source.id,
                        delivery_id=given_id,
                        answer=msgspec.to_builtins(answer),
                        created_at=utcnow(),
                    )
                )
            session.flush()
        log.info(
            "event.received",
            source_id=source.id,
            delivery_id=delivery_id,
            event_type=event_type,
            matched=len(matching),
        )
        return answer

    def _candidates(self, session: Session, source: EventSource) -> list[Automation]:
        # KEY SHARE in id order: consistent with a PATCH, never blocking other deliveries.
        return list(
            session.scalars(
                select(Automation)
                .where(
                    Automation.event_source_id == source.id,
                    Automation.org_id == source.org_id,
                    Automation.trigger_type == Trigger.EVENT,
                    Automation.enabled.is_(True),
                    Automation.deleted_at.is_(None),
                )
                .order_by(Automation.id)
                .with_for_update(read=True, key_share=True)
            )
        )

    def _check_backlog(self, session: Session, org_id: str) -> None:
        """The organization's cap on queued runs, once per delivery (429 queues nothing)."""
        queued = self._dispatcher.queue.queued_in_org(session, org_id)
        if queued >= self._max_queued:
            raise RateLimited(
                f"this organization already has {queued} queued runs (limit "
                f"{self._max_queued}); the sender should retry later",
                retry_after_s=10,
            )

    def _enqueue_all(
        self, session: Session, automations: list[Automation], payload: dict[str, Any]
    ) -> list[Any]:
        if not automations:
            return []
        queue = self._dispatcher.queue
        batch = Batch.load(session, queue, automations, queue.now(session))
        return [
            self._dispatcher.enqueue(
                session,
                automation,
                trigger=Trigger.EVENT,
                payload=payload,
                key=assignment_key(automation.assignment_key_path, payload),
                batch=batch,
            )
            for automation in automations
        ]

    def _answered(self, source_id: str, delivery_id: str) -> EventAnswer | None:
        if not delivery_id:
            return None
        with self._db.read() as session:
            first = session.get(EventDelivery, (source_id, delivery_id))
            return msgspec.convert(first.answer, EventAnswer) if first else None


def _payload(body: bytes) -> dict[str, Any]:
    try:
        payload = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", code="malformed_json") from None
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object", code="invalid_payload")
    return payload
