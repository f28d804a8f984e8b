"""The deliverer: sends the outbox's notifications, retrying for 24 hours.

It runs beside the scheduler (and in ``serve``). Rows are leased before they are
sent (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so several schedulers never
send one notification twice at once; a deliverer that dies mid-send leaves a
lease that expires, and the row is sent again (delivery is at least once:
receivers de-duplicate by ``X-Delivery-Id``). Sends run on a small thread pool
with connect and read timeouts, so a slow receiver holds one thread for a
bounded time and never a run or the API.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update

from automation_server.db.engine import Database
from automation_server.db.models import NotificationChannel, NotificationDelivery
from automation_server.logging import get_logger
from automation_server.notifications.sender import (
    GIVE_UP_AFTER,
    SendResult,
    backoff_seconds,
    post_json,
    sign,
)
from automation_server.queue.clock import DbClock
from automation_server.queue.notify import OUTBOX, Notifier
from automation_server.security.crypto import SecretBox

log = get_logger("notify")

LEASE_S = 120.0  # longer than one send can take (connect + read timeouts)
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Leased:
    id: str
    url: str
    secret: str  # encrypted
    body: str
    attempts: int
    created_at: Any


class Deliverer:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        notifier: Notifier,
        *,
        allow_private: bool,
        concurrency: int = 8,
        poll_s: float = 0.5,
    ) -> None:
        self._db = db
        self._box = box
        self._allow_private = allow_private
        self._clock = DbClock(postgres=not db.is_sqlite)
        self._concurrency = concurrency
        self._poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._free = threading.Semaphore(concurrency)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="notify")
        self._thread = threading.Thread(target=self._loop, name="deliverer", daemon=True)
        notifier.subscribe(OUTBOX, lambda _payload: self._wake.set())

    def start(self) -> Deliverer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            # Cleared before looking, not after waiting: a wake that arrives while we
            # deliver stays set and the wait below returns at once.
            self._wake.clear()
            try:
                sent = self.deliver_due()
            except Exception as exc:  # the database is down: try again shortly
                log.warning("notify.deliverer_error", error=f"{type(exc).__name__}: {exc}")
                sent = 0
            if not sent:
                self._wake.wait(self._poll_s)

    def deliver_due(self) -> int:
        """Lease what is due (as many as there are free senders) and send it."""
        free = 0
        while free < self._concurrency and self._free.acquire(blocking=False):
            free += 1
        try:
            leased = self._lease(free) if free else []
        except Exception:
            for _ in range(free):
                self._free.release()
            raise
        for _ in range(free - len(leased)):
            self._free.release()
        for row in leased:
            self._pool.submit(self._send_one, row)
        return len(leased)

    def _lease(self, limit: int) -> list[Leased]:
        now = self._clock.now()
        with self._db.write() as session:
            due = (
                select(NotificationDelivery.id)
                .where(
                    NotificationDelivery.status == "pending",
                    NotificationDelivery.next_attempt_at <= now,
                    or_(
                        NotificationDelivery.lease_until.is_(None),
                        NotificationDelivery.lease_until < now,
                    ),
                )
                .order_by(NotificationDelivery.next_attempt_at)
                .limit(limit)
            )
            if self._clock.postgres:
                due = due.with_for_update(skip_locked=True)
            ids = list(session.scalars(due))
            if not ids:
                return []
            session.execute(
                update(NotificationDelivery)
                .where(NotificationDelivery.id.in_(ids))
                .values(lease_until=self._clock.after(LEASE_S))
            )
            rows = session.execute(
                select(
                    NotificationDelivery.id,
                    NotificationChannel.url,
                    NotificationChannel.secret,
                    NotificationDelivery.body,
                    NotificationDelivery.attempts,
                    NotificationDelivery.created_at,
                )
                .join(
                    NotificationChannel, NotificationChannel.id == NotificationDelivery.channel_id
                )
                .where(NotificationDelivery.id.in_(ids))
            ).all()
            return [Leased(*row) for row in rows]

    def _send_one(self, row: Leased) -> None:
        try:
            body = row.body.encode()
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "automation-server-notify",
                "X-Signature-256": sign(body, self._box.decrypt(row.secret)),
                "X-Delivery-Id": row.id,
            }
            result = post_json(row.url, body, headers, allow_private=self._allow_private)
            self._record(row, result)
        except Exception as exc:  # never lose the sender thread; the lease expires
            log.warning("notify.send_error", delivery_id=row.id, error=type(exc).__name__)
        finally:
            self._free.release()
            self._wake.set()  # a sender is free: look for more

    def _record(self, row: Leased, result: SendResult) -> None:
        attempts = row.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status_code": result.status_code,
            "last_error": (result.error or None) and str(result.error)[:MAX_ERROR_CHARS],
            "lease_until": None,
        }
        with self._db.write() as session:
            now = self._clock.read(session)
            delay = timedelta(seconds=backoff_seconds(attempts))
            if result.ok:
                values.update(status="delivered", delivered_at=now)
            elif now + delay - row.created_at > GIVE_UP_AFTER:
                values.update(status="failed")  # the next try would be after 24 h: give up
            else:
                values.update(next_attempt_at=now + delay)
            session.execute(
                update(NotificationDelivery)
                .where(NotificationDelivery.id == row.id)
                .values(**values)
            )
        log.info(
            "notify.sent" if result.ok else "notify.retry",
            delivery_id=row.id,
            status_code=result.status_code,
            attempts=attempts,
            elapsed_ms=result.elapsed_ms,
        )
