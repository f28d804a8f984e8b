"""Where a claimed run is prepared, sandboxed and its results collected.

One call of :meth:`RunExecution.execute` is one attempt: fetch the variant's
tarball (verified by digest), extract it safely into a fresh directory, build
exactly the DESIGN section 5 environment, hand it to the executor, then read
the report and store the log. Problems of the run become a failed result with a
clear error; only bugs of our own escape as exceptions.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import automation_sdk

from automation_server.errors import AutomationError, InvalidArchive, SandboxError
from automation_server.logging import get_logger
from automation_server.observability import Metrics
from automation_server.queue.claim import ClaimedRun
from automation_server.queue.results import RunResult
from automation_server.sandbox.base import Executor, Limits, Outcome, RunSpec
from automation_server.sandbox.logcap import LogCapture
from automation_server.security.crypto import SecretBox
from automation_server.statuses import RunStatus
from automation_server.storage.archive import ArchiveLimits, safe_extract
from automation_server.storage.blobs import log_key
from automation_server.storage.blobstore import BlobStore
from automation_server.worker.cache import ExtractedTrees, TarballCache
from automation_server.worker.environments import EnvironmentCache
from automation_server.worker.reports import ReportError, read_report

# The directory holding the in-run ``automation_sdk`` package (PYTHONPATH inside).
log = get_logger("worker")
SDK_DIR = Path(automation_sdk.__file__).resolve().parent.parent
LIVE_LOG_INTERVAL_S = 1.0
# How long a finish waits for the final log; past it the result is recorded anyway.
LOG_STORE_WAIT_S = 120.0
MASK = b"[secret]"


@dataclass(frozen=True)
class RunTask(ClaimedRun):
    """Everything one attempt needs: the claimed run with its secrets decrypted."""

    secrets: dict[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        """AUTOMATION_* and user variables; the executor adds PATH, HOME and the rest."""
        env = {**self.env, **self.secrets}
        env.update(
            {
                "AUTOMATION_RUN_ID": self.run_id,
                "AUTOMATION_ID": self.automation_id,
                "AUTOMATION_NAME": self.automation_name,
                "AUTOMATION_EXPERIMENT_ID": self.experiment_id or "",
                "AUTOMATION_VARIANT": self.variant,
                "AUTOMATION_REVISION": str(self.revision),
                "AUTOMATION_TRIGGER": self.trigger,
                "AUTOMATION_ATTEMPT": str(self.attempt),
            }
        )
        return env


def task_of(claimed: ClaimedRun, box: SecretBox) -> RunTask:
    """The attempt's task, read in the transaction that claimed it, secrets decrypted."""
    secrets = {name: box.decrypt(c) for name, c in claimed.encrypted_secrets.items()}
    fields = {f.name: getattr(claimed, f.name) for f in dataclass_fields(ClaimedRun)}
    return RunTask(**fields, secrets=secrets)


@dataclass(frozen=True)
class Executed:
    """An attempt's result, and a wait for its final log to reach the object store.

    The log is stored in the background while the worker records the result;
    the finishing transaction calls :attr:`log_stored` before it commits, so a
    finished status never comes before its log.
    """

    result: RunResult
    log_stored: Callable[[], None] = lambda: None


class LiveLog:
    """Keeps the capped log and publishes it to the object store about once a second,
    so ``GET /v1/runs/{id}/logs?follow=true`` can stream it from any API process."""

    def __init__(
        self, store: BlobStore, run_id: str, max_bytes: int, secrets: Mapping[str, str]
    ) -> None:
        self._store = store
        self._key = log_key(run_id)
        self._capture = LogCapture(max_bytes)
        self._secrets = [v.encode() for v in secrets.values() if len(v) >= 4]
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            self._capture.feed(chunk)
            due = time.monotonic() - self._last_flush >= LIVE_LOG_INTERVAL_S
        if due:
            # If the object store is down, the final publish tries again.
            with contextlib.suppress(AutomationError):
                self.flush()

    def publish(self, final: bytes) -> None:
        """Store the final log; a store outage loses the log, never the run's result."""
        try:
            self.flush(final)
        except AutomationError as exc:
            log.warning("run.log_not_stored", run_id=self._key, error=exc.detail)

    def flush(self, final: bytes | None = None) -> None:
        with self._lock:
            data = final if final is not None else self._capture.result()
            self._last_flush = time.monotonic()
        self._store.put(self._key, self.mask(data))

    def mask(self, data: bytes) -> bytes:
        """Secret values never reach stored logs, even when a run prints them."""
        for secret in self._secrets:
            data = data.replace(secret, MASK)
        return data


class RunExecution:
    def __init__(
        self,
        *,
        executor: Executor,
        cache: TarballCache,
        store: BlobStore,
        work_root: Path,
        run_python: Path,
        archive_limits: ArchiveLimits,
        environments: EnvironmentCache | None = None,
        metrics: Metrics | None = None,
        max_state_bytes: int = 256 * 1024,
    ) -> None:
        self._metrics = metrics
        self._max_state_bytes = max_state_bytes
        self._environments = environments
        self._executor = executor
        self._cache = cache
        self._store = store
        # Each run's host files: in memory when the executor offers it (see
        # sandbox.scratch), else on disk next to the extracted trees.
        self._runs_root: Path = getattr(executor, "scratch_dir", None) or work_root
        self._run_python = run_python
        self._archive_limits = archive_limits
        work_root.mkdir(parents=True, exist_ok=True, mode=0o711)
        # Final logs are stored, and runs' files removed, from here while the worker
        # records the result.
        self._publisher = ThreadPoolExecutor(max_workers=4, thread_name_prefix="log-publish")
        # An executor that copies the workdir into each run (bubblewrap's per-run
        # tmpfs) never exposes it to the run: one verified extraction per variant
        # then serves every run, instead of one safe_extract per run.
        self._trees = (
            ExtractedTrees(work_root / ".trees", archive_limits)
            if getattr(executor, "copies_workdir", False)
            else None
        )

    def execute(self, task: RunTask, cancel: threading.Event) -> Executed:
        root = self._runs_root / task.run_id
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(mode=0o711)
        limits = sandbox_limits(task.limits)
        live = LiveLog(self._store, task.run_id, limits.max_log_bytes, task.secrets)
        try:
            with self._packages(task) as packages, self._workdir(task, root) as workdir:
                spec = self._prepare(task, root, workdir, limits, packages)
                outcome = self._run(spec, cancel, live)
        except AutomationError as exc:
            shutil.rmtree(root, ignore_errors=True)
            # The tarball or environment could not be fetched, unpacked or built, or the
            # sandbox could not start: the platform's failure, retried without using the
            # user's attempts.
            live.publish(f"run could not start: {exc.detail}\n".encode())
            return Executed(RunResult.infrastructure(exc.detail, sandbox=self._executor.name))
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        # The log is stored while the report is read and the result recorded, and the
        # run's files are removed meanwhile; only the log is waited for.
        stored = self._publisher.submit(live.publish, outcome.log)
        try:
            result = self._result(outcome, spec.output_dir)
        finally:
            self._remove_later(root)
        return Executed(result, lambda: _wait_stored(stored, task.run_id))

    def _remove_later(self, root: Path) -> None:
        """Remove a run's directory off the run's path. It is renamed first, so the
        removal can never meet a next attempt of the run that this worker starts in a
        fresh directory of the same name."""
        doomed = root.with_name(f".removing-{root.name}-{uuid.uuid4().hex[:8]}")
        try:
            root.rename(doomed)
        except OSError:
            shutil.rmtree(root, ignore_errors=True)
            return
        self._publisher.submit(shutil.rmtree, doomed, True)

    def _run(self, spec: RunSpec, cancel: threading.Event, live: LiveLog) -> Outcome:
        try:
            return self._executor.run(spec, cancel=cancel, on_output=live.feed)
        except SandboxError as exc:
            if self._metrics is not None:
                self._metrics.sandbox_failures.inc()
            raise SandboxError(f"the sandbox could not start the run: {exc.detail}") from exc

    @contextlib.contextmanager
    def _packages(self, task: RunTask) -> Iterator[Path | None]:
        """The variant's installed environment for the run's duration (built if needed)."""
        if task.environment_digest is None:
            yield None
            return
        if self._environments is None:
            raise SandboxError("this worker has no environment cache configured")
        with self._environments.use(task.environment_digest) as site:
            yield site

    @contextlib.contextmanager
    def _workdir(self, task: RunTask, root: Path) -> Iterator[Path]:
        """The extracted tarball: shared and read-only when the executor copies it into
        the run, else a fresh extraction of the run's own."""
        with contextlib.ExitStack() as stack:
            try:
                tarball = self._cache.get(task.digest)
                if self._trees is not None:
                    tree = stack.enter_context(self._trees.use(task.digest, tarball))
                else:
                    tree = root / "src"
                    safe_extract(tarball, tree, self._archive_limits)
            except InvalidArchive as exc:
                raise InvalidArchive(f"tarball refused at run time: {exc.detail}") from exc
            yield tree

    def _prepare(
        self, task: RunTask, root: Path, workdir: Path, limits: Limits, packages: Path | None
    ) -> RunSpec:
        (root / "out").mkdir()
        payload_file = root / "payload.json"
        payload_file.write_text(json.dumps(task.payload))
        state_file = root / "state.json"
        state_file.write_text(json.dumps(task.state))
        return RunSpec(
            run_id=task.run_id,
            workdir=workdir,
            output_dir=root / "out",
            payload_file=payload_file,
            argv=task.entrypoint,
            env=task.environment(),
            timeout_s=float(task.timeout_s),
            network=task.network,  # type: ignore[arg-type]
            limits=limits,
            pythonpath_dir=SDK_DIR,
            python=self._run_python,
            environment_dir=packages,
            state_file=state_file,
        )

    def _result(self, outcome: Any, output_dir: Path) -> RunResult:
        status, error = RunStatus(outcome.status), outcome.error
        metrics: dict[str, float] = {}
        outputs: dict[str, Any] = {}
        state: dict[str, Any] | None = None
        try:
            report = read_report(output_dir, max_state_bytes=self._max_state_bytes)
            metrics, outputs, state = report.metrics, report.outputs, report.state
        except ReportError as exc:
            if status == RunStatus.SUCCEEDED:
                status, error = RunStatus.FAILED, f"invalid report: {exc}"
        return RunResult(
            status=status,
            exit_code=outcome.exit_code,
            error=error,
            duration_ms=outcome.duration_ms,
            metrics=metrics,
            outputs=outputs,
            log_bytes=outcome.log_bytes,
            log_truncated=outcome.log_truncated,
            sandbox=outcome.sandbox,
            limits=_limits_json(outcome.limits),
            state=state,
        )


def _wait_stored(stored: Future[None], run_id: str) -> None:
    """Wait for a final log (its store outage is already logged by publish)."""
    try:
        stored.result(timeout=LOG_STORE_WAIT_S)
    except Exception:
        log.exception("run.log_store_failed", run_id=run_id)


def sandbox_limits(limits: Mapping[str, int]) -> Limits:
    known = {k: int(v) for k, v in limits.items() if k in Limits.__dataclass_fields__}
    return Limits(**known)


def _limits_json(limits: Limits) -> dict[str, Any]:
    return {name: getattr(limits, name) for name in Limits.__dataclass_fields__}
