"""The object graph of one process, built once from settings and passed down."""

from __future__ import annotations

from dataclasses import dataclass

from automation_server.audit import AuditService
from automation_server.automations.autodisable import AutoDisable
from automation_server.automations.lifecycle import VariantLifecycle
from automation_server.automations.service import AutomationService
from automation_server.automations.state import AutomationStates
from automation_server.config import Settings
from automation_server.db.engine import Database
from automation_server.dispatch.service import Dispatcher
from automation_server.dispatch.webhooks import WebhookService
from automation_server.environments.resolver import PackageSources, Resolver
from automation_server.environments.service import EnvironmentService
from automation_server.events.receiver import EventReceiver
from automation_server.events.sources import EventSourceService
from automation_server.experiments.effects import ExperimentEffects
from automation_server.experiments.rollups import ExperimentRollups
from automation_server.experiments.service import ExperimentService
from automation_server.notifications.channels import ChannelService
from automation_server.notifications.deliverer import Deliverer
from automation_server.notifications.outbox import Outbox
from automation_server.notifications.run_notices import RunNotices
from automation_server.observability import Metrics
from automation_server.presets.service import PresetService
from automation_server.queue.manager import RunQueue
from automation_server.queue.notify import Notifier, PostgresListener
from automation_server.queue.workers import WorkerRegistry
from automation_server.runs.service import RunService
from automation_server.security.accounts import Authenticator
from automation_server.security.crypto import (
    SecretBox,
    box_from,
    key_source,
    load_or_create_key,
    split_keys,
)
from automation_server.security.keycheck import KeyCheck, verify_key
from automation_server.security.ratelimit import RateLimiter
from automation_server.storage.archive import ArchiveLimits
from automation_server.storage.blobs import BlobService
from automation_server.storage.blobstore import BlobStore
from automation_server.storage.factory import blobstore_from_url


@dataclass
class Services:
    settings: Settings
    db: Database
    store: BlobStore
    box: SecretBox
    blobs: BlobService
    auth: Authenticator
    automations: AutomationService
    notifier: Notifier
    queue: RunQueue
    dispatcher: Dispatcher
    runs: RunService
    webhooks: WebhookService
    experiments: ExperimentService
    effects: ExperimentEffects
    lifecycle: VariantLifecycle
    rate_limiter: RateLimiter
    audit: AuditService
    metrics: Metrics
    presets: PresetService
    workers: WorkerRegistry
    environments: EnvironmentService
    event_sources: EventSourceService
    events: EventReceiver
    states: AutomationStates
    outbox: Outbox
    channels: ChannelService
    listener: PostgresListener | None = None
    #: The process's secret keys, newest first, and where they came from (for messages).
    secret_keys: tuple[str, ...] = ()
    key_source: str = ""

    def start_listener(self) -> None:
        """LISTEN for cross-process wake-ups (PostgreSQL only; SQLite polls)."""
        if not self.db.is_sqlite and self.listener is None:
            self.listener = PostgresListener(self.settings.database_url, self.notifier)
            self.listener.start()

    def deliverer(self) -> Deliverer:
        """The notification deliverer (started beside the scheduler)."""
        return Deliverer(
            self.db,
            self.box,
            self.notifier,
            allow_private=self.settings.notify_allow_private,
        )

    def verify_secret_key(self) -> KeyCheck:
        """Refuse to go on (SecretKeyError) with a key that is not the deployment's."""
        return verify_key(self.db, self.secret_keys, self.key_source)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        self.db.dispose()


def archive_limits(settings: Settings) -> ArchiveLimits:
    return ArchiveLimits(
        max_compressed_bytes=settings.uploads.max_upload_bytes,
        max_uncompressed_bytes=settings.uploads.max_uncompressed_bytes,
        max_members=settings.uploads.max_members,
    )


def resolver_from(settings: Settings) -> Resolver:
    packages = settings.packages
    return Resolver(
        python=settings.run_python,
        sources=PackageSources(packages.index_url, packages.find_links),
        cache_dir=settings.data_dir / "uv-cache",
        timeout_s=packages.resolve_timeout_s,
    )


def build_services(settings: Settings, *, store: BlobStore | None = None) -> Services:
    db = Database(settings.database_url)
    store = store or blobstore_from_url(
        settings.blob_url, data_dir=settings.data_dir, endpoint_url=settings.s3_endpoint_url
    )
    keys = load_or_create_key(settings.secret_key, settings.data_dir)
    box = box_from(keys)
    blobs = BlobService(
        db, store, archive_limits(settings), s3_endpoint_url=settings.s3_endpoint_url
    )
    notifier = Notifier(postgres=not db.is_sqlite)
    metrics = Metrics(db)
    queue = RunQueue(db, notifier, metrics, max_infra_attempts=settings.worker.max_infra_attempts)
    queue.add_listener(ExperimentRollups())
    outbox = Outbox(notifier)
    states = AutomationStates(db, settings.uploads.max_state_bytes)
    queue.add_listener(states)
    queue.add_listener(AutoDisable(outbox, notifier))
    queue.add_listener(RunNotices(outbox))
    dispatcher = Dispatcher(
        db,
        queue,
        max_payload_bytes=settings.uploads.max_payload_bytes,
        max_queued_per_org=settings.guards.max_queued_runs_per_org,
    )
    environments = EnvironmentService(db, store, resolver_from(settings))
    automations = AutomationService(db, blobs, box, settings, notifier, queue, environments)
    experiments = ExperimentService(db)
    return Services(
        settings=settings,
        db=db,
        store=store,
        box=box,
        blobs=blobs,
        auth=Authenticator(db),
        automations=automations,
        notifier=notifier,
        queue=queue,
        dispatcher=dispatcher,
        runs=RunService(db, queue, store),
        webhooks=WebhookService(db, dispatcher, box),
        experiments=experiments,
        effects=ExperimentEffects(db),
        lifecycle=VariantLifecycle(db, blobs, automations, experiments, outbox),
        rate_limiter=RateLimiter(settings.guards.rate_limit_per_minute),
        audit=AuditService(db),
        metrics=metrics,
        presets=PresetService(automations, blobs, settings),
        workers=WorkerRegistry(db, queue.clock),
        environments=environments,
        event_sources=EventSourceService(db, box),
        states=states,
        outbox=outbox,
        channels=ChannelService(db, box, allow_private=settings.notify_allow_private),
        events=EventReceiver(
            db, dispatcher, box, max_queued_per_org=settings.guards.max_queued_runs_per_org
        ),
        secret_keys=tuple(split_keys(keys)),
        key_source=key_source(settings.secret_key, settings.data_dir),
    )
