"""Notification channels: create (the signing secret shown once), list, read, delete,
and the deliveries of each."""

from __future__ import annotations

import secrets as pysecrets

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from automation_server.audit import record
from automation_server.db.engine import Database
from automation_server.db.models import Automation, NotificationChannel, NotificationDelivery
from automation_server.errors import Conflict, Invalid, NotFound
from automation_server.ids import new_id, to_rfc3339, utcnow
from automation_server.notifications.addresses import UnsafeUrl, check_url
from automation_server.notifications.events import NOTIFY_EVENTS
from automation_server.notifications.schemas import (
    ChannelCreate,
    ChannelOut,
    ChannelPage,
    DeliveryOut,
    DeliveryPage,
)
from automation_server.security.accounts import Caller
from automation_server.security.crypto import SecretBox

MAX_DELIVERIES_LISTED = 200


class ChannelService:
    def __init__(self, db: Database, box: SecretBox, *, allow_private: bool) -> None:
        self._db = db
        self._box = box
        self._allow_private = allow_private

    def create(self, caller: Caller, body: ChannelCreate) -> ChannelOut:
        url = self._checked_url(body.url)
        events = _checked_events(body.events)
        secret = "nosec_" + pysecrets.token_urlsafe(32)
        row = NotificationChannel(
            id=new_id(),
            org_id=caller.org_id,
            name=body.name,
            url=url,
            events=events,
            automation_ids=list(dict.fromkeys(body.automation_ids))
            if body.automation_ids
            else None,
            secret=self._box.encrypt(secret),
            created_at=utcnow(),
        )
        try:
            with self._db.write() as session:
                _check_automations(session, caller.org_id, row.automation_ids)
                session.add(row)
                session.flush()
                self._audit(session, caller, "notification_channel.create", row)
        except IntegrityError as exc:
            raise Conflict(
                f"name: a notification channel named '{body.name}' already exists",
                field="name",
                code="duplicate_name",
            ) from exc
        return msgspec.structs.replace(_out(row), secret=secret)

    def list(self, caller: Caller) -> ChannelPage:
        with self._db.read() as session:
            rows = session.scalars(
                select(NotificationChannel)
                .where(NotificationChannel.org_id == caller.org_id)
                .order_by(NotificationChannel.name)
            )
            return ChannelPage(items=[_out(r) for r in rows])

    def get(self, caller: Caller, channel_id: str) -> ChannelOut:
        with self._db.read() as session:
            return _out(_load(session, caller.org_id, channel_id))

    def delete(self, caller: Caller, channel_id: str) -> None:
        """Its pending deliveries go with it (nothing is sent to a deleted channel)."""
        with self._db.write() as session:
            row = _load(session, caller.org_id, channel_id)
            self._audit(session, caller, "notification_channel.delete", row)
            session.execute(
                delete(NotificationDelivery).where(NotificationDelivery.channel_id == row.id)
            )
            session.delete(row)

    def deliveries(self, caller: Caller, channel_id: str) -> DeliveryPage:
        """The channel's newest deliveries first, with attempts and the last answer."""
        with self._db.read() as session:
            _load(session, caller.org_id, channel_id)
            rows = session.scalars(
                select(NotificationDelivery)
                .where(NotificationDelivery.channel_id == channel_id)
                .order_by(NotificationDelivery.created_at.desc(), NotificationDelivery.id.desc())
                .limit(MAX_DELIVERIES_LISTED)
            )
            return DeliveryPage(items=[_delivery_out(d) for d in rows])

    def _checked_url(self, url: str) -> str:
        try:
            return check_url(url, allow_private=self._allow_private)
        except UnsafeUrl as exc:
            raise Invalid(f"url: {exc}", field="url", code=exc.code) from None

    def _audit(
        self, session: Session, caller: Caller, action: str, row: NotificationChannel
    ) -> None:
        record(
            session,
            org_id=caller.org_id,
            actor=caller.actor,
            action=action,
            resource_type="notification_channel",
            resource_id=row.id,
            after={"name": row.name, "url": row.url, "events": list(row.events)},
        )


def _checked_events(events: list[str]) -> list[str]:
    unknown = [e for e in events if e not in NOTIFY_EVENTS]
    if unknown:
        raise Invalid(
            f"events: unknown event '{unknown[0]}'; choose from {', '.join(NOTIFY_EVENTS)}",
            field="events",
            code="unknown_event",
        )
    return list(dict.fromkeys(events))


def _check_automations(session: Session, org_id: str, ids: list[str] | None) -> None:
    if not ids:
        return
    found = set(
        session.scalars(
            select(Automation.id).where(
                Automation.org_id == org_id,
                Automation.id.in_(ids),
                Automation.deleted_at.is_(None),
            )
        )
    )
    missing = [i for i in ids if i not in found]
    if missing:
        raise Invalid(
            f"automation_ids: no automation with id '{missing[0]}' in this organization",
            field="automation_ids",
            code="unknown_automation",
        )


def _load(session: Session, org_id: str, channel_id: str) -> NotificationChannel:
    row = session.scalars(
        select(NotificationChannel).where(
            NotificationChannel.id == channel_id, NotificationChannel.org_id == org_id
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"no notification channel with id '{channel_id}'")
    return row


def _out(row: NotificationChannel) -> ChannelOut:
    return ChannelOut(
        id=row.id,
        name=row.name,
        url=row.url,
        events=list(row.events),
        automation_ids=list(row.automation_ids) if row.automation_ids else None,
        created_at=to_rfc3339(row.created_at) or "",
    )


def _delivery_out(row: NotificationDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=row.id,
        event=row.event,
        status=row.status,
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        created_at=to_rfc3339(row.created_at) or "",
        next_attempt_at=to_rfc3339(row.next_attempt_at) if row.status == "pending" else None,
        delivered_at=to_rfc3339(row.delivered_at),
    )
