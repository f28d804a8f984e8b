"""Writing notifications: one outbox row per subscribed channel, in the caller's
transaction, so an event is notified exactly when it is recorded (and never when
its transaction rolls back). The deliverer sends the rows later; nothing here
waits for a receiver.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.orm import Session

from automation_server.db.helpers import upsert_insert
from automation_server.db.models import NotificationChannel, NotificationDelivery
from automation_server.ids import new_id, to_rfc3339, utcnow
from automation_server.notifications.events import NotifyEvent
from automation_server.queue.notify import Notifier


class Outbox:
    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    def add(
        self,
        session: Session,
        *,
        org_id: str,
        event: NotifyEvent,
        key: str,
        automation: dict[str, str],
        run: dict[str, Any] | None = None,
        decision: dict[str, Any] | None = None,
    ) -> int:
        """Queue ``event`` for every channel of the organization that wants it; ``key``
        makes it unique per channel (the same event is never queued twice)."""
        channels = self.channels_for(session, org_id, event, automation["id"])
        return self.write(session, channels, org_id, event, key, automation, run, decision)

    def channels_for(
        self, session: Session, org_id: str, event: NotifyEvent, automation_id: str
    ) -> list[str]:
        """The channels that want this event (ask first when the body is dear to build)."""
        return _subscribed(session, org_id, event, automation_id)

    def write(
        self,
        session: Session,
        channels: list[str],
        org_id: str,
        event: NotifyEvent,
        key: str,
        automation: dict[str, str],
        run: dict[str, Any] | None = None,
        decision: dict[str, Any] | None = None,
    ) -> int:
        if not channels:
            return 0
        now = utcnow()
        for channel_id in channels:
            delivery_id = new_id()
            body = {
                "event": event.value,
                "id": delivery_id,
                "created_at": to_rfc3339(now),
                "automation": automation,
                "run": run,
                "decision": decision,
            }
            _insert_once(session, channel_id, org_id, event, key, delivery_id, body, now)
        self._notifier.outbox_written(session)
        return len(channels)


def _subscribed(session: Session, org_id: str, event: NotifyEvent, automation_id: str) -> list[str]:
    rows = session.execute(
        select(
            NotificationChannel.id, NotificationChannel.events, NotificationChannel.automation_ids
        ).where(NotificationChannel.org_id == org_id)
    ).all()
    return [
        channel_id
        for channel_id, events, automation_ids in rows
        if event.value in events and (not automation_ids or automation_id in automation_ids)
    ]


def _insert_once(
    session: Session,
    channel_id: str,
    org_id: str,
    event: NotifyEvent,
    key: str,
    delivery_id: str,
    body: dict[str, Any],
    now: Any,
) -> None:
    insert = upsert_insert(session, NotificationDelivery).values(
        id=delivery_id,
        org_id=org_id,
        channel_id=channel_id,
        event=event.value,
        event_key=key[:200],
        body=msgspec.json.encode(body).decode(),
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.execute(insert.on_conflict_do_nothing(index_elements=["channel_id", "event_key"]))
