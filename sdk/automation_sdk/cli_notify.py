"""``automation notify``: notification channels (DESIGN 9.5) and their deliveries.

A channel is named by name or id; its signing secret is printed once, by ``create``.
"""

from __future__ import annotations

import click

from automation_sdk import errors
from automation_sdk import render_operations as view
from automation_sdk.cli_events import SHOWN_ONCE
from automation_sdk.cli_support import (
    complete_automation,
    completer,
    delete_and_say,
    emit_items,
    emit_json,
    fail,
    global_options,
    resolve,
    session_of,
)
from automation_sdk.client import Client
from automation_sdk.models import Channel


def _find_channel(client: Client, name_or_id: str) -> Channel:
    channels = client.list_channels()
    found = next((c for c in channels if c.name == name_or_id), None)
    found = found or next((c for c in channels if c.id == name_or_id), None)
    if found is None:
        fail(f"no notification channel named '{name_or_id}'; see 'automation notify list'")
    return found


complete_channel = completer(lambda c: [ch.name for ch in c.list_channels()])


# ---- notification channels -----------------------------------------------------------


@click.group("notify")
@global_options()
def notify_group() -> None:
    """Notification channels: signed POSTs when runs fail, automations are disabled, ...

    \b
      automation notify create ops https://hooks.example.org/automation \\
        --event run.failed --event automation.disabled
      automation notify deliveries ops
    """


@notify_group.command("list")
@global_options()
@click.pass_context
def notify_list(ctx: click.Context) -> None:
    """Notification channels of the organization, by name.

    \b
      automation notify list
    """
    options, client = session_of(ctx)
    channels = client.list_channels()
    if options.json:
        emit_items(channels)
        return
    options.out().print(view.channels_table(channels))


@notify_group.command("create")
@click.argument("name")
# An argument, not --url: that is every command's server URL.
@click.argument("target", metavar="URL")
@click.option(
    "--event",
    "events",
    multiple=True,
    required=True,
    metavar="EVENT",
    help="Repeat: run.failed, run.timed_out, automation.disabled, experiment.decision, "
    "experiment.srm.",
)
@click.option(
    "--automation",
    "automations",
    multiple=True,
    metavar="NAME",
    shell_complete=complete_automation,
    help="Only this automation's events (repeat; default every automation).",
)
@global_options()
@click.pass_context
def notify_create(
    ctx: click.Context,
    name: str,
    target: str,
    events: tuple[str, ...],
    automations: tuple[str, ...],
) -> None:
    """Create channel NAME, POSTing to http(s) URL; print its signing secret (shown once).

    \b
      automation notify create ops https://hooks.example.org/automation \\
        --event run.failed --event run.timed_out --automation nightly-triage
    """
    options, client = session_of(ctx)
    ids = [resolve(client, a).id for a in automations] or None
    channel = client.create_channel(name, target, list(events), automation_ids=ids)
    if options.json:
        emit_json(channel)
        return
    out = options.out()
    out.print(f"created notification channel {channel.name}")
    out.print(f"secret ({SHOWN_ONCE}): {channel.secret}")
    out.print(view.channel_view(channel, list(automations) or None))


@notify_group.command("show")
@click.argument("channel", shell_complete=complete_channel)
@global_options()
@click.pass_context
def notify_show(ctx: click.Context, channel: str) -> None:
    """Channel CHANNEL (name or id): its URL, events and automations.

    \b
      automation notify show ops
    """
    options, client = session_of(ctx)
    found = client.get_channel(_find_channel(client, channel).id)
    if options.json:
        emit_json(found)
        return
    options.out().print(view.channel_view(found, _automation_names(client, found)))


def _automation_names(client: Client, channel: Channel) -> list[str] | None:
    if channel.automation_ids is None:
        return None
    names = []
    for automation_id in channel.automation_ids:
        try:
            names.append(client.get_automation(automation_id).name)
        except errors.NotFoundError:  # deleted since: the channel still lists its id
            names.append(f"{automation_id} (deleted)")
    return names


@notify_group.command("delete")
@click.argument("channel", shell_complete=complete_channel)
@global_options()
@click.pass_context
def notify_delete(ctx: click.Context, channel: str) -> None:
    """Delete channel CHANNEL and its pending deliveries.

    \b
      automation notify delete ops
    """
    options, client = session_of(ctx)
    found = _find_channel(client, channel)
    delete_and_say(
        options, "notification_channel", "notification channel", found, client.delete_channel
    )


@notify_group.command("deliveries")
@click.argument("channel", shell_complete=complete_channel)
@global_options()
@click.pass_context
def notify_deliveries(ctx: click.Context, channel: str) -> None:
    """The newest deliveries to CHANNEL: event, status, attempts, last answer.

    \b
      automation notify deliveries ops
    """
    options, client = session_of(ctx)
    found = _find_channel(client, channel)
    deliveries = client.channel_deliveries(found.id)
    if options.json:
        emit_items(deliveries)
        return
    if not deliveries:
        options.out().print(f"no deliveries to {found.name} yet")
        return
    options.out().print(view.deliveries_table(found, deliveries))
