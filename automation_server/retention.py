"""Retention: old runs and logs expire; tarballs nothing references are collected.

- runs finished more than ``runs_days`` ago are deleted with their metrics and
  logs (experiment rollups keep their statistics, so summaries do not change);
- logs of runs finished more than ``logs_days`` ago are deleted;
- a blob is deleted only when no revision of any automation references it
  (including tarballs named in a variant's source, such as user plugins), no
  remaining run ran it, and it is older than ``blob_grace_days`` (a fresh upload
  may be about to be used).

On PostgreSQL an advisory lock lets one process collect at a time.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from automation_server.config import RetentionSettings
from automation_server.db.engine import Database
from automation_server.db.models import Blob, BlobOwner, Revision, Run
from automation_server.errors import AutomationError
from automation_server.ids import utcnow
from automation_server.logging import get_logger
from automation_server.queue.manager import RunQueue
from automation_server.storage.blobs import blob_key, log_key
from automation_server.storage.blobstore import BlobStore

log = get_logger("retention")

GC_LOCK_ID = 7_412_903_312
BATCH = 1000
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass
class GcReport:
    runs_deleted: int = 0
    logs_deleted: int = 0
    blobs_deleted: int = 0
    skipped: bool = False


def referenced_digests(session: Session) -> set[str]:
    """Every digest a revision names (variant tarballs, and any in a variant's source)."""
    found: set[str] = set()
    for variants in session.scalars(select(Revision.variants)):
        found.update(DIGEST.findall(repr(variants)))
    found.update(session.scalars(select(Run.tarball_digest).distinct()))
    return found


class GarbageCollector:
    def __init__(
        self, db: Database, queue: RunQueue, store: BlobStore, settings: RetentionSettings
    ) -> None:
        self._objects: list[str] = []
        self._digests: list[str] = []
        self._db = db
        self._queue = queue
        self._store = store
        self._settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def collect(self, *, dry_run: bool = False) -> GcReport:
        """One collection; objects are deleted only after the database rows are gone."""
        self._objects, self._digests = [], []
        with self._db.write() as session:
            if not self._lock(session):
                return GcReport(skipped=True)
            report = GcReport()
            if self._settings.runs_days:
                report.runs_deleted = self._expire_runs(session)
            if self._settings.logs_days:
                report.logs_deleted = self._expire_logs(session)
            report.blobs_deleted = self._collect_blobs(session, dry_run)
            if dry_run:
                session.rollback()
        if not dry_run:
            self._delete_objects()
        log.info(
            "gc.finished",
            dry_run=dry_run,
            runs=report.runs_deleted,
            logs=report.logs_deleted,
            blobs=report.blobs_deleted,
        )
        return report

    def _lock(self, session: Session) -> bool:
        if session.get_bind().dialect.name != "postgresql":
            return True  # SQLite: the write transaction already excludes other writers
        got = session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": GC_LOCK_ID})
        return bool(got)

    # A dry run makes the same changes: collect() rolls them back and deletes no object.

    def _expire_runs(self, session: Session) -> int:
        cutoff = self._queue.now(session) - timedelta(days=self._settings.runs_days)
        ids = self._queue.expire_finished(session, cutoff, BATCH * 10)
        self._objects.extend(log_key(run_id) for run_id in ids)
        return len(ids)

    def _expire_logs(self, session: Session) -> int:
        cutoff = self._queue.now(session) - timedelta(days=self._settings.logs_days)
        ids = self._queue.logs_to_forget(session, cutoff, BATCH * 10)
        self._objects.extend(log_key(run_id) for run_id in ids)
        return len(ids)

    def _collect_blobs(self, session: Session, dry_run: bool) -> int:
        cutoff = utcnow() - timedelta(days=self._settings.blob_grace_days)
        keep = referenced_digests(session)
        doomed = [
            d
            for d in session.scalars(select(Blob.digest).where(Blob.created_at < cutoff))
            if d not in keep
        ]
        if dry_run or not doomed:
            return len(doomed)
        session.execute(delete(BlobOwner).where(BlobOwner.digest.in_(doomed)))
        session.execute(delete(Blob).where(Blob.digest.in_(doomed)))
        self._digests.extend(doomed)
        return len(doomed)

    def _delete_objects(self) -> None:
        # A blob uploaded again since the rows were deleted must keep its bytes.
        with self._db.read() as session:
            back = set(session.scalars(select(Blob.digest).where(Blob.digest.in_(self._digests))))
        keys = self._objects + [blob_key(d) for d in self._digests if d not in back]
        for key in keys:
            try:
                self._store.delete(key)
            except AutomationError as exc:  # an orphan object is harmless; logged
                log.warning("gc.delete_failed", key=key, error=exc.detail)

    # ---- periodic -------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="gc", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self._settings.gc_interval_s):
            try:
                self.collect()
            except Exception:
                log.exception("gc.failed")


def describe(report: GcReport) -> dict[str, Any]:
    return {
        "runs_deleted": report.runs_deleted,
        "logs_deleted": report.logs_deleted,
        "blobs_deleted": report.blobs_deleted,
        "skipped": report.skipped,
    }
