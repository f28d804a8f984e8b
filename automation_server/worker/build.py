"""Assembling a worker from a process's services (used by `serve` and `worker`)."""

from __future__ import annotations

from automation_server.environments.resolver import PackageSources
from automation_server.logging import get_logger
from automation_server.sandbox.factory import make_executor
from automation_server.services import Services, archive_limits
from automation_server.worker.cache import TarballCache
from automation_server.worker.environments import EnvironmentCache
from automation_server.worker.execution import RunExecution
from automation_server.worker.worker import Worker


def build_worker(services: Services, *, concurrency: int | None = None) -> Worker:
    """A worker with the operator's sandbox; raises SandboxError when it cannot isolate."""
    settings = services.settings
    log = get_logger("worker")
    executor = make_executor(settings.sandbox, grace_s=settings.worker.kill_grace_s)
    if settings.sandbox == "none":
        log.warning("sandbox.disabled", detail="AUTOMATION_SANDBOX=none: runs are NOT isolated")
    log.info("sandbox.ready", sandbox=executor.name, mechanisms=executor.describe())
    execution = RunExecution(
        executor=executor,
        cache=TarballCache(
            settings.data_dir / "cache", services.store, settings.worker.cache_mb * 1_048_576
        ),
        store=services.store,
        work_root=settings.data_dir / "work",
        run_python=settings.run_python,
        archive_limits=archive_limits(settings),
        environments=EnvironmentCache(
            settings.data_dir / "envs",
            services.store,
            python=settings.run_python,
            sources=PackageSources(settings.packages.index_url, settings.packages.find_links),
            max_bytes=settings.packages.env_cache_mb * 1_048_576,
        ),
        metrics=services.metrics,
        max_state_bytes=settings.uploads.max_state_bytes,
    )
    w = settings.worker
    return Worker(
        queue=services.queue,
        registry=services.workers,
        box=services.box,
        execution=execution,
        concurrency=concurrency or w.concurrency,
        lease_s=w.lease_s,
        heartbeat_s=w.heartbeat_s,
        poll_s=w.poll_s,
        shutdown_grace_s=w.shutdown_grace_s,
        on_finished=services.lifecycle.evaluate,
        metrics=services.metrics,
        verify_key=services.verify_secret_key,
    )
