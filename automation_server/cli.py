"""``automation-server``: serve, api, worker, scheduler, migrate, create-key, doctor."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from automation_server.config import Settings, SettingsError, load_settings
from automation_server.logging import configure_logging, get_logger
from automation_server.security.keywatch import FatalStop, KeyWatch


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _migrate_if_needed(settings: Settings) -> None:
    from automation_server.db import migrate

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate.needs_upgrade(settings.database_url):
        get_logger("cli").info("db.migrating", database=settings.describe()["database"])
        migrate.upgrade(settings.database_url)


def _start(settings: Settings, component: str) -> Any:
    configure_logging(settings.log_level, settings.log_format)
    log = get_logger(component)
    log.info("process.starting", **settings.describe())
    _migrate_if_needed(settings)
    return log


def _services(settings: Settings, log: Any) -> Any:
    """The process's services, once its secret key is known to be the deployment's."""
    from automation_server.security.crypto import SecretKeyError
    from automation_server.services import build_services

    services = build_services(settings)
    try:
        check = services.verify_secret_key()
    except SecretKeyError as exc:
        services.close()
        log.error("secret_key.mismatch", detail=exc.detail)
        raise click.ClickException(exc.detail) from None
    log.info("secret_key.checked", outcome=check.outcome, source=services.key_source)
    return services


def _run_http(
    settings: Settings, services: Any, host: str, port: int, background: list[Callable[[], None]]
) -> None:
    import uvicorn

    from automation_server.api.app import create_app

    app = create_app(services)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            log_level="warning",
        )
    )
    get_logger("api").info("api.listening", url=f"http://{host}:{port}")
    try:
        server.run()
    finally:
        for stop in background:
            stop()
        services.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The automation server.

    Settings come from AUTOMATION_* environment variables (see the README).
    Quick start on the embedded default (SQLite and files under ./var):

    \b
      automation-server serve
      automation-server create-key --org acme
    """


def _start_worker(services: Any, concurrency: int | None = None) -> Any:
    from automation_server.errors import SandboxError
    from automation_server.worker.build import build_worker

    try:
        worker = build_worker(services, concurrency=concurrency)
    except SandboxError as exc:
        raise click.ClickException(exc.detail) from None
    services.start_listener()
    worker.start()
    return worker


def _start_scheduler(services: Any) -> Callable[[], None]:
    """The scheduler loop and, beside it, the retention collector and the notification
    deliverer; returns their stop."""
    from automation_server.retention import GarbageCollector
    from automation_server.scheduler.loop import Scheduler

    scheduler = Scheduler(
        db=services.db,
        dispatcher=services.dispatcher,
        notifier=services.notifier,
        poll_s=services.settings.worker.poll_s,
    )
    collector = GarbageCollector(
        services.db, services.queue, services.store, services.settings.retention
    )
    deliverer = services.deliverer()
    services.start_listener()
    scheduler.start()
    collector.start()
    deliverer.start()

    def stop() -> None:
        deliverer.stop()
        collector.stop()
        scheduler.stop()

    return stop


def _wait_for_signal(fatal: FatalStop) -> str | None:
    """Block until SIGTERM/SIGINT or until ``fatal`` is set; returns the fatal reason,
    if that is what ended the wait (a signal sets it without one)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: fatal.set())
    fatal.wait()
    return fatal.reason


@main.command()
@click.option("--host", default=None, help="Listen address [AUTOMATION_HOST, default 127.0.0.1]")
@click.option("--port", type=int, default=None, help="Port [AUTOMATION_PORT, default 8080]")
def serve(host: str | None, port: int | None) -> None:
    """API, scheduler and worker in one process (the embedded default needs no other service)."""
    settings = _settings()
    services = _services(settings, _start(settings, "serve"))
    worker = _start_worker(services)
    stop_scheduler = _start_scheduler(services)
    _run_http(
        settings,
        services,
        host or settings.host,
        port or settings.port,
        [stop_scheduler, worker.stop],
    )


@main.command()
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help="Runs executed at once [AUTOMATION_WORKER_CONCURRENCY, default 2]",
)
def worker(concurrency: int | None) -> None:
    """A worker: claims queued runs and executes them in the sandbox.

    SIGTERM stops it gracefully: no new claims, running runs get
    AUTOMATION_SHUTDOWN_GRACE_S to finish, the rest go back to the queue.
    """
    settings = _settings()
    log = _start(settings, "worker")
    services = _services(settings, log)
    running = _start_worker(services, concurrency)
    fatal = _wait_for_signal(running.fatal)
    log.info("worker.stopping", grace_s=settings.worker.shutdown_grace_s)
    running.stop()
    services.close()
    if fatal:
        raise click.ClickException(fatal)


@main.command()
def scheduler() -> None:
    """A scheduler: fires cron and interval automations (any number may run at once)."""
    settings = _settings()
    log = _start(settings, "scheduler")
    services = _services(settings, log)
    stop_scheduler = _start_scheduler(services)
    fatal = FatalStop()
    watch = KeyWatch(services.verify_secret_key, fatal.stop_with).start()
    reason = _wait_for_signal(fatal)
    log.info("scheduler.stopping")
    watch.stop()
    stop_scheduler()
    services.close()
    if reason:
        raise click.ClickException(reason)


@main.command()
@click.option("--host", default=None, help="Listen address [AUTOMATION_HOST, default 127.0.0.1]")
@click.option("--port", type=int, default=None, help="Port [AUTOMATION_PORT, default 8080]")
def api(host: str | None, port: int | None) -> None:
    """The HTTP API alone (run workers and schedulers as separate processes)."""
    settings = _settings()
    services = _services(settings, _start(settings, "api"))
    services.start_listener()
    # With a key that is no longer the deployment's, stop as SIGTERM would (gracefully).
    watch = KeyWatch(
        services.verify_secret_key, lambda _reason: os.kill(os.getpid(), signal.SIGTERM)
    ).start()
    _run_http(settings, services, host or settings.host, port or settings.port, [watch.stop])


@main.command()
def migrate() -> None:
    """Apply database migrations (AUTOMATION_DATABASE_URL)."""
    from automation_server.db import migrate as migrations

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    before = migrations.current_revision(settings.database_url)
    migrations.upgrade(settings.database_url)
    after = migrations.current_revision(settings.database_url)
    click.echo(f"database at revision {after} (was {before or 'empty'})")


@main.command("create-key")
@click.option("--org", required=True, help="Organization name (created if it does not exist).")
@click.option(
    "--scope",
    type=click.Choice(["admin", "write", "read"]),
    default="admin",
    show_default=True,
    help="What the key may do.",
)
@click.option("--name", default=None, help="A label for the key.")
def create_key(org: str, scope: str, name: str | None) -> None:
    """Create an API key; the key is printed alone on the last line (shown once)."""
    from automation_server.db.engine import Database
    from automation_server.security.accounts import create_key as make_key
    from automation_server.security.accounts import ensure_organization

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    _migrate_if_needed(settings)
    db = Database(settings.database_url, pool_size=1)
    try:
        org_id = ensure_organization(db, org)
        created = make_key(db, org_id, scope, name)  # type: ignore[arg-type]
    finally:
        db.dispose()
    click.echo(f"organization: {org} ({org_id})")
    click.echo(f"scope: {created.scope}; store this key now, it is not shown again:")
    click.echo(created.plaintext)


@main.command("rotate-secret-key")
@click.option(
    "--new-key", default=None, help="The new Fernet key (default: a freshly generated one)."
)
def rotate_secret_key(new_key: str | None) -> None:
    """Re-encrypt every stored secret under a new key.

    With the key in <data dir>/secret.key the file is replaced. With
    AUTOMATION_SECRET_KEY, first give every process "NEW,OLD" (they decrypt
    with both), run this with --new-key NEW, then drop OLD. The database's
    key check value moves to NEW in the same transaction: from then on a
    process holding only OLD refuses to start, and a running worker holding
    only OLD stops claiming within 30 seconds.

    \b
      export AUTOMATION_SECRET_KEY="$NEW,$OLD"   # on every process first
      automation-server rotate-secret-key --new-key "$NEW"
    """
    from automation_server.db.engine import Database
    from automation_server.security.crypto import (
        SecretKeyError,
        key_source,
        load_or_create_key,
        split_keys,
        write_key_file,
    )
    from automation_server.security.keycheck import verify_key
    from automation_server.security.rotation import rotate_secrets

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    _migrate_if_needed(settings)
    old_keys = split_keys(load_or_create_key(settings.secret_key, settings.data_dir))
    db = Database(settings.database_url, pool_size=1)
    try:
        verify_key(db, old_keys, key_source(settings.secret_key, settings.data_dir))
        done = rotate_secrets(db, old_keys, new_key)
    except SecretKeyError as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        db.dispose()
    click.echo(f"re-encrypted {done.secrets} secrets and {done.webhook_secrets} webhook secrets")
    if settings.secret_key:
        click.echo(
            "set AUTOMATION_SECRET_KEY to the new key on every process "
            "(store it now, it is not shown again):"
        )
        click.echo(done.new_key)
    else:
        path = write_key_file(settings.data_dir, done.new_key)
        click.echo(f"the new key is in {path}; restart the server processes to use it")


_MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


@main.command()
@click.option(
    "--role",
    type=click.Choice(["serve", "api", "worker", "scheduler"]),
    default="serve",
    show_default=True,
    help="Check what this kind of process needs (a scheduler needs no sandbox).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(role: str, as_json: bool) -> None:
    """Show what this process would use and check that it works.

    Checks the database (reachable, migrated), the object store (a probe
    object is written and deleted), the secret key (the deployment's, by its
    check value), the sandbox (bubblewrap starts), the runs' Python and uv,
    and warns about settings that keep a PostgreSQL deployment on one host.
    Changes nothing. Exits 1 when a check fails, so it can serve as a health
    check:

    \b
      AUTOMATION_DATABASE_URL=postgresql+psycopg://postgres@db/automation \\
      AUTOMATION_BLOB_URL=s3://automation/prod automation-server doctor --role worker
    """
    import dataclasses
    import json

    from automation_server.doctor import diagnose

    settings = _settings()
    configure_logging("error", settings.log_format)
    checks = diagnose(settings, role)  # type: ignore[arg-type]
    failed = any(c.outcome == "fail" for c in checks)
    if as_json:
        body = {
            "role": role,
            "settings": settings.describe(),
            "checks": [dataclasses.asdict(c) for c in checks],
            "ok": not failed,
        }
        click.echo(json.dumps(body, indent=2))
    else:
        for name, value in settings.describe().items():
            click.echo(f"{name:>13}  {value}")
        click.echo()
        for check in checks:
            click.echo(f"{_MARKS[check.outcome]}  {check.name:<14} {check.detail}")
            if check.hint and check.outcome != "ok":
                click.echo(f"{'':21}-> {check.hint}")
    if failed:
        sys.exit(1)


@main.command()
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
def gc(dry_run: bool) -> None:
    """Apply retention now: expire old runs and logs, delete unreferenced tarballs."""
    from automation_server.retention import GarbageCollector, describe
    from automation_server.services import build_services

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    _migrate_if_needed(settings)
    services = build_services(settings)
    try:
        report = GarbageCollector(
            services.db, services.queue, services.store, settings.retention
        ).collect(dry_run=dry_run)
    finally:
        services.close()
    for name, value in describe(report).items():
        click.echo(f"{name}: {value}")


if __name__ == "__main__":
    sys.exit(main())
