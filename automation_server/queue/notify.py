"""Wake-ups: PostgreSQL LISTEN/NOTIFY across processes, callbacks within one.

Notifications are sent inside the transaction that made the change, so
PostgreSQL delivers them only when it commits; in-process callbacks are run
after the commit for the same reason (a worker woken earlier would find
nothing). Polling stays as the fallback, and is all SQLite has across
processes.

Each notifier tags what it sends through PostgreSQL with its own origin, and
its listener drops what comes back with that tag: local subscribers already
heard of it after the commit, and a second delivery would cost each worker a
second, empty claim.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session

from automation_server.logging import get_logger

log = get_logger("notify")

RUNS = "automation_runs"
CANCEL = "automation_cancel"
SCHEDULES = "automation_schedules"
OUTBOX = "automation_outbox"  # notifications waiting to be delivered
CHANNELS = (RUNS, CANCEL, SCHEDULES, OUTBOX)

Callback = Callable[[str], None]
_PG_NOTIFY = text("SELECT pg_notify(:c, :p)")


class Notifier:
    """Sends change notifications and dispatches them to local subscribers."""

    def __init__(self, *, postgres: bool) -> None:
        self._postgres = postgres
        self.origin = uuid.uuid4().hex[:12]  # this notifier, in what it sends
        self._subscribers: dict[str, list[Callback]] = defaultdict(list)
        self._lock = threading.Lock()

    def subscribe(self, channel: str, callback: Callback) -> None:
        with self._lock:
            self._subscribers[channel].append(callback)

    def deliver(self, channel: str, payload: str) -> None:
        """Call local subscribers (from the listener thread or after a local commit)."""
        with self._lock:
            callbacks = list(self._subscribers.get(channel, ()))
        for callback in callbacks:
            try:
                callback(payload)
            except Exception:  # a subscriber bug must not break the sender
                log.exception("notify.callback_failed", channel=channel)

    def runs_queued(self, session: Session, *, local: bool = True) -> None:
        """``local=False``: other processes only (a worker recording its own finish
        wakes its claim loop itself once the slot is free)."""
        self._send(session, RUNS, "", local=local)

    def received(self, channel: str, tagged: str) -> None:
        """A notification from PostgreSQL: delivered unless this notifier sent it."""
        origin, sep, payload = tagged.partition(":")
        if sep and origin == self.origin:
            return
        self.deliver(channel, payload if sep else tagged)

    def run_cancelled(self, session: Session, run_id: str) -> None:
        self._send(session, CANCEL, run_id)

    def schedules_changed(self, session: Session) -> None:
        self._send(session, SCHEDULES, "")

    def outbox_written(self, session: Session) -> None:
        self._send(session, OUTBOX, "")

    def _send(self, session: Session, channel: str, payload: str, *, local: bool = True) -> None:
        # One notification per channel and payload per transaction is enough: a
        # scheduler queuing 500 runs wakes the workers once, not 500 times.
        sent: set[tuple[str, str]] = session.info.setdefault("notified", set())
        if (channel, payload) in sent:
            return
        sent.add((channel, payload))
        if self._postgres:
            tagged = f"{self.origin}:{payload}"
            session.connection().execute(_PG_NOTIFY, {"c": channel, "p": tagged})
        if not local:
            return

        def after_commit(done: Any) -> None:
            done.info.pop("notified", None)
            self.deliver(channel, payload)

        def after_rollback(done: Any) -> None:
            done.info.pop("notified", None)

        event.listen(session, "after_commit", after_commit, once=True)
        event.listen(session, "after_rollback", after_rollback, once=True)


class PostgresListener:
    """A thread that LISTENs on a dedicated connection and delivers to the notifier."""

    def __init__(self, dsn: str, notifier: Notifier) -> None:
        # SQLAlchemy URL -> libpq DSN (psycopg does not know the "+psycopg" suffix).
        self._dsn = dsn.replace("postgresql+psycopg://", "postgresql://", 1)
        self._notifier = notifier
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg
        from psycopg import sql

        delay = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    for channel in CHANNELS:
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    delay = 0.5
                    # A reconnect may have missed notifications: wake everyone once.
                    self._notifier.deliver(RUNS, "")
                    self._notifier.deliver(SCHEDULES, "")
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._notifier.received(note.channel, note.payload)
            except psycopg.Error as exc:
                log.warning("notify.listener_reconnect", error=type(exc).__name__, delay_s=delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
