"""``automation``: pack, deploy, dispatch and inspect automations from a terminal.

Every command takes ``--url`` (``AUTOMATION_URL``), ``--api-key``
(``AUTOMATION_API_KEY``) and ``--json`` (print the API's JSON instead of
tables), before or after the command name. Errors say what to do next and
exit 1; usage errors exit 2. Shell completion::

    eval "$(_AUTOMATION_COMPLETE=bash_source automation)"    # zsh: zsh_source
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from automation_sdk import cli_events, cli_notify, cli_state, errors, render
from automation_sdk import pack as packing
from automation_sdk.cli_support import (
    AutomationGroup,
    Options,
    complete_automation,
    emit_json,
    fail,
    global_options,
    key_values,
    opts,
    read_payload,
    resolve,
)
from automation_sdk.client import Client
from automation_sdk.deploy import (
    DeployEvents,
    DeployResult,
    VariantSource,
    check_names,
    deploy,
    parse_bandit,
    parse_metric,
    parse_variant,
)
from automation_sdk.render_experiment import allocation_line, experiment_view

# ---- the commands ----------------------------------------------------------------


@click.group(cls=AutomationGroup, context_settings={"help_option_names": ["-h", "--help"]})
@global_options(root=True)
@click.version_option(package_name="automation-server", prog_name="automation")
def main() -> None:
    """Deploy code to an automation server, run it, and compare its variants.

    \b
      automation deploy hello ./hello --cron "0 9 * * 1-5" --timezone Europe/Berlin
      automation dispatch hello --wait
      automation runs --automation hello
    """


@main.command("pack")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@global_options()
@click.pass_context
def pack_cmd(ctx: click.Context, directory: Path, output: Path | None) -> None:
    """Pack DIRECTORY into a reproducible .tar.gz and print its sha256 digest."""
    members = packing.entries(directory)
    data = packing.pack(directory)
    digest = packing.digest_of(data)
    if output is not None:
        output.write_bytes(data)
    if opts(ctx).json:
        out = str(output) if output else None
        emit_json({"digest": digest, "size": len(data), "members": len(members), "output": out})
        return
    where = f" -> {output}" if output else ""
    click.echo(f"packed {len(members)} members, {len(data)} bytes{where}", err=True)
    click.echo(digest)


@main.command("deploy")
@click.argument("name", shell_complete=complete_automation)
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--variant",
    "variants",
    multiple=True,
    metavar="NAME=DIR[:WEIGHT]",
    help="A variant and its code (repeat); a bare DIR means the variant 'default'.",
)
@click.option("--experiment", "experiment_id", default=None, help="Experiment id (A/B tests).")
@click.option("--cron", default=None, metavar="EXPR", help='Crontab, e.g. "0 9 * * 1-5".')
@click.option("--timezone", default=None, help="IANA time zone of --cron (default UTC).")
@click.option(
    "--interval",
    type=click.IntRange(min=1),
    default=None,
    metavar="SECONDS",
    help="Run every SECONDS seconds.",
)
@click.option("--webhook", is_flag=True, help="Trigger by signed webhook.")
@click.option("--manual", is_flag=True, help="Only on demand (the default for a new one).")
@cli_events.event_trigger_options
@click.option("--entrypoint", default=None, help='Command of every variant, e.g. "python3 run.py".')
@click.option("--env", "env", multiple=True, metavar="K=V", help="Automation env (repeat).")
@click.option("--secret", "secret", multiple=True, metavar="K=V", help="Secret (repeat).")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.IntRange(min=1),
    default=None,
    metavar="S",
    help="Stop a run after S seconds (timed_out).",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="NAME=higher|lower[:UNIT]",
    help="Declare which way a reported metric is better (repeat), e.g. latency_ms=lower:ms.",
)
@click.option(
    "--bandit",
    default=None,
    metavar="METRIC[:EVERY_RUNS[:MIN_WEIGHT]]",
    help="Let the server set the weights by Thompson sampling on METRIC (success_rate or a "
    "declared metric), every 50 runs with a floor of 100 out of 10000 by default; "
    "'off' goes back to fixed weights.",
)
@global_options()
@click.pass_context
def deploy_cmd(
    ctx: click.Context,
    name: str,
    directory: str | None,
    variants: tuple[str, ...],
    experiment_id: str | None,
    cron: str | None,
    timezone: str | None,
    interval: int | None,
    webhook: bool,
    manual: bool,
    event_source: str | None,
    event_types: tuple[str, ...],
    event_filter: str | None,
    entrypoint: str | None,
    env: tuple[str, ...],
    secret: tuple[str, ...],
    timeout_s: int | None,
    metrics: tuple[str, ...],
    bandit: str | None,
) -> None:
    """Create or update automation NAME from directories, uploading only what changed.

    \b
      automation deploy ab-script --experiment ab-script-latency \\
        --variant control=examples/ab-script/control:50 \\
        --variant fast=examples/ab-script/fast:50 --metric latency_ms=lower:ms \\
        --bandit latency_ms:20:500
      automation deploy triage ./triage --event github --on pull_request \\
        --filter "action == 'opened'"
    """
    sources = _variant_sources(directory, variants)
    declared = _metric_declarations(metrics)
    try:
        allocation = parse_bandit(bandit) if bandit is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--bandit") from None
    event = cli_events.event_trigger(event_source, event_types, event_filter)
    trigger = _trigger(cron, timezone, interval, webhook, manual, event)
    argv = shlex.split(entrypoint) if entrypoint is not None else None
    options = opts(ctx)
    client = options.client(ctx)
    err = options.err()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        result = deploy(
            client,
            name,
            sources,
            experiment_id=experiment_id,
            trigger=trigger,
            entrypoint=argv,
            env=key_values(env, "--env"),
            secrets=key_values(secret, "--secret"),
            timeout_s=timeout_s,
            metrics=declared,
            allocation=allocation,
            events=_ProgressEvents(progress),
        )
    if options.json:
        emit_json(result.automation)
        return
    _report_deploy(options, result)


def _metric_declarations(specs: tuple[str, ...]) -> dict[str, dict[str, str]] | None:
    if not specs:
        return None
    try:
        return dict(parse_metric(spec) for spec in specs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--metric") from None


def _variant_sources(directory: str | None, variants: tuple[str, ...]) -> list[VariantSource]:
    specs = ([directory] if directory else []) + list(variants)
    if not specs:
        raise click.UsageError("give a DIRECTORY or one or more --variant NAME=DIR[:WEIGHT]")
    try:
        sources = [parse_variant(s) for s in specs]
        check_names(sources)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--variant") from None
    for s in sources:
        if not s.directory.is_dir():
            raise click.BadParameter(f"{s.directory}: not a directory", param_hint="--variant")
    return sources


def _trigger(
    cron: str | None,
    timezone: str | None,
    interval: int | None,
    webhook: bool,
    manual: bool,
    event: dict[str, Any] | None,
) -> dict[str, Any] | None:
    chosen = [
        flag
        for flag, on in (
            ("--cron", cron),
            ("--interval", interval),
            ("--webhook", webhook),
            ("--manual", manual),
            ("--event", event),
        )
        if on
    ]
    if len(chosen) > 1:
        raise click.UsageError(f"choose one trigger, not {' and '.join(chosen)}")
    if timezone and not cron:
        raise click.UsageError("--timezone goes with --cron")
    if cron:
        return {"type": "cron", "schedule": cron, "timezone": timezone or "UTC"}
    if interval:
        return {"type": "interval", "seconds": interval}
    if webhook:
        return {"type": "webhook"}
    if event:
        return event
    return {"type": "manual"} if manual else None


class _ProgressEvents(DeployEvents):
    """Deploy progress as rich bars: one per variant packed, one per upload."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._uploads: dict[str, Any] = {}

    def packing(self, variant: str, total: int) -> Callable[[packing.Entry], None]:
        task = self._progress.add_task(f"pack {variant}", total=total)
        return lambda entry: self._progress.advance(task)

    def uploading(self, variant: str, size: int) -> None:
        self._uploads[variant] = self._progress.add_task(f"upload {variant}", total=size)

    def uploaded(self, variant: str, digest: str) -> None:
        task = self._uploads[variant]
        total = self._progress.tasks[task].total or 0
        self._progress.update(task, completed=total)


def _report_deploy(options: Options, result: DeployResult) -> None:
    auto = result.automation
    uploaded = ", ".join(result.uploaded) or "nothing"
    if result.created:
        line = f"created automation {auto.name} (revision {auto.revision}); uploaded {uploaded}"
    elif result.changed:
        revision = (
            f"revision {result.revision_before} -> {auto.revision}"
            if result.new_revision
            else f"revision {auto.revision}"
        )
        line = f"updated {auto.name}: {', '.join(result.changed)} ({revision}); uploaded {uploaded}"
    else:
        line = f"{auto.name} is up to date (revision {auto.revision}); uploaded nothing"
    out = options.out()
    out.print(line)
    for variant in auto.variants:
        out.print(render.environment_line(variant))
    if auto.webhook_secret:
        out.print(f"webhook secret (shown once, store it now): {auto.webhook_secret}")
    out.print(render.automation_summary(auto))


@main.command("dispatch")
@click.argument("name", shell_complete=complete_automation)
@click.option("--variant", default=None, help="Run this variant (forced; not in experiment stats).")
@click.option("--key", "assignment_key", default=None, help="Sticky assignment key.")
@click.option("--payload", default=None, help="JSON object, or @file.json.")
@click.option("--idempotency-key", default=None, help="Repeat safely: same key, same run.")
@click.option("--wait", is_flag=True, help="Wait for the run to end; exit 1 unless it succeeded.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after S seconds.")
@global_options()
@click.pass_context
def dispatch_cmd(
    ctx: click.Context,
    name: str,
    variant: str | None,
    assignment_key: str | None,
    payload: str | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Run automation NAME now (the server picks the variant unless --variant)."""
    body = read_payload(payload)
    options = opts(ctx)
    client = options.client(ctx)
    auto = resolve(client, name)
    run = client.dispatch(
        auto.id,
        payload=body,
        variant=variant,
        assignment_key=assignment_key,
        idempotency_key=idempotency_key,
    )
    if wait:
        with options.err().status(f"run {run.id} ({run.variant}): waiting for it to finish"):
            try:
                run = client.wait(run.id, timeout=timeout)
            except errors.WaitTimeout as exc:
                fail(f"{exc}; follow it with 'automation logs {run.id} --follow'")
    if options.json:
        emit_json(run)
    elif wait:
        options.out().print(render.run_summary(run))
    else:
        options.out().print(f"queued run {run.id} (variant {run.variant})")
    if wait and run.status != "succeeded":
        ctx.exit(1)


@main.command("runs")
@click.option("--automation", "automation", default=None, shell_complete=complete_automation)
@click.option("--experiment", "experiment_id", default=None)
@click.option("--variant", default=None)
@click.option("--status", default=None, help="queued, running, succeeded, failed, ...")
@click.option("--trigger", default=None, help="manual, cron, interval, webhook, event")
@click.option("--since", default=None, help="RFC 3339 time (inclusive).")
@click.option("--until", default=None, help="RFC 3339 time (exclusive).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@global_options()
@click.pass_context
def runs_cmd(
    ctx: click.Context,
    automation: str | None,
    experiment_id: str | None,
    variant: str | None,
    status: str | None,
    trigger: str | None,
    since: str | None,
    until: str | None,
    limit: int,
) -> None:
    """Recent runs, newest first."""
    options = opts(ctx)
    client = options.client(ctx)
    names: dict[str, str] = {}
    automation_id = None
    if automation:
        auto = resolve(client, automation)
        automation_id, names[auto.id] = auto.id, auto.name
    found = client.runs(
        automation_id=automation_id,
        experiment_id=experiment_id,
        variant=variant,
        status=status,
        trigger=trigger,
        since=since,
        until=until,
        page_size=min(limit, 500),
    )
    runs = list(islice(found, limit))
    if options.json:
        emit_json({"items": [r.to_dict() for r in runs]})
        return
    options.out().print(render.runs_table(runs, _name_lookup(client, names)))


def _name_lookup(client: Client, names: dict[str, str]) -> Callable[[str], str]:
    def name_of(automation_id: str) -> str:
        if automation_id not in names:
            try:
                names[automation_id] = client.get_automation(automation_id).name
            except errors.NotFoundError:  # deleted: its runs stay
                names[automation_id] = automation_id[:8] + " (deleted)"
        return names[automation_id]

    return name_of


@main.command("list")
@global_options()
@click.pass_context
def list_cmd(ctx: click.Context) -> None:
    """Automations of the organization."""
    options = opts(ctx)
    automations = list(options.client(ctx).list_automations())
    if options.json:
        emit_json({"items": [a.to_dict() for a in automations]})
        return
    options.out().print(render.automations_table(automations))


@main.command("logs")
@click.argument("run_id")
@click.option("--follow", "-f", is_flag=True, help="Stream until the run ends.")
@global_options()
@click.pass_context
def logs_cmd(ctx: click.Context, run_id: str, follow: bool) -> None:
    """The output (stdout and stderr) of run RUN_ID."""
    options = opts(ctx)
    client = options.client(ctx)
    chunks: Iterator[str] = client.follow_logs(run_id) if follow else iter([client.logs(run_id)])
    for chunk in chunks:
        if options.json:
            click.echo(json.dumps({"run_id": run_id, "log": chunk}))
        else:
            click.echo(chunk, nl=False)
            sys.stdout.flush()


@main.command("experiment")
@click.argument("experiment_id")
@click.option("--by-revision", is_flag=True, help="One summary per allocation period.")
@click.option("--control", default=None, help="Compare against this variant.")
@click.option("--include-forced", is_flag=True, help="Count runs whose variant was forced.")
@global_options()
@click.pass_context
def experiment_cmd(
    ctx: click.Context,
    experiment_id: str,
    by_revision: bool,
    control: str | None,
    include_forced: bool,
) -> None:
    """Per-variant results of EXPERIMENT_ID with 95% intervals."""
    options = opts(ctx)
    params: dict[str, Any] = {"control": control}
    if by_revision:
        params["by"] = "revision"
    if include_forced:
        params["include_forced"] = True
    client = options.client(ctx)
    if options.json:
        emit_json(client.experiment(experiment_id, **params))
        return
    out = options.out()
    out.print(experiment_view(client.experiment_summary(experiment_id, **params)))
    for automation_id in _automations_of(client, experiment_id):
        try:
            auto = client.get_automation(automation_id)
        except errors.NotFoundError:
            continue  # deleted since: its runs still count, its variants are gone
        out.print(f"{auto.name}: " + allocation_line(auto))
        for variant in auto.variants:
            out.print(f"{auto.name}: " + render.environment_line(variant))


def _automations_of(client: Client, experiment_id: str) -> list[str]:
    """The automations whose runs make up the experiment (for their variants' packages)."""
    for entry in client.experiments():
        if entry.get("experiment_id") == experiment_id:
            return [str(a) for a in entry.get("automation_ids", [])]
    return []


@main.command("promote")
@click.argument("name", shell_complete=complete_automation)
@click.argument("variant")
@click.option("--reason", required=True, help="Why (recorded with the decision).")
@global_options()
@click.pass_context
def promote_cmd(ctx: click.Context, name: str, variant: str, reason: str) -> None:
    """Make VARIANT the champion of automation NAME (it gets all the weight)."""
    options = opts(ctx)
    client = options.client(ctx)
    auto = client.promote(resolve(client, name).id, variant, reason)
    if options.json:
        emit_json(auto)
        return
    out = options.out()
    out.print(f"{variant} is the champion of {auto.name} (revision {auto.revision})")
    out.print(render.automation_summary(auto))


for group in (cli_events.events_group, cli_notify.notify_group, cli_state.state_group):
    main.add_command(group)

if __name__ == "__main__":
    sys.exit(main())
