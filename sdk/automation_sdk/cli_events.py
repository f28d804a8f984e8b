"""``automation events``: event sources (DESIGN 9.4), and ``deploy --event``.

A source is named by name or id; its secret is printed once, by the command
that made it (``create``, ``rotate-secret``).
"""

from __future__ import annotations

from typing import Any

import click

from automation_sdk import render_operations as view
from automation_sdk.cli_support import (
    F,
    completer,
    delete_and_say,
    emit_items,
    emit_json,
    fail,
    global_options,
    session_of,
)
from automation_sdk.client import Client
from automation_sdk.models import EventSource

SHOWN_ONCE = "shown once, store it now"


def _find_source(client: Client, name_or_id: str) -> EventSource:
    """By name, else by id: one list request either way (the server sends every source)."""
    sources = client.list_event_sources()
    found = next((s for s in sources if s.name == name_or_id), None)
    found = found or next((s for s in sources if s.id == name_or_id), None)
    if found is None:
        fail(f"no event source named '{name_or_id}'; see 'automation events list'")
    return found


complete_source = completer(lambda c: [s.name for s in c.list_event_sources()])


# ---- event sources ---------------------------------------------------------------


def _event_type(header: str | None, path: str | None) -> dict[str, str] | None:
    if header and path:
        raise click.UsageError("choose one of --header and --path")
    if header:
        return {"header": header}
    return {"path": path} if path else None


def _source_options(f: F) -> F:
    """Where the event type is read and which headers carry the signature and delivery id."""
    f = click.option(
        "--delivery-id-header",
        default=None,
        metavar="HEADER",
        help="Header with the sender's delivery id (default X-Delivery-Id); repeats run once.",
    )(f)
    f = click.option(
        "--signature-header",
        default=None,
        metavar="HEADER",
        help="Header with sha256=<HMAC> of the body (default X-Signature-256).",
    )(f)
    f = click.option(
        "--path",
        default=None,
        metavar="JMESPATH",
        help="Read the event type from the body (the default: --path type).",
    )(f)
    return click.option(
        "--header",
        default=None,
        metavar="HEADER",
        help="Read the event type from this request header, e.g. X-GitHub-Event.",
    )(f)


@click.group("events")
@global_options()
def events_group() -> None:
    """Event sources: one signed URL that runs every automation whose trigger matches.

    \b
      automation events create github --header X-GitHub-Event \\
        --signature-header X-Hub-Signature-256 --delivery-id-header X-GitHub-Delivery
      automation deploy triage ./triage --event github --on pull_request
    """


@events_group.command("list")
@global_options()
@click.pass_context
def events_list(ctx: click.Context) -> None:
    """Event sources of the organization, by name.

    \b
      automation events list
    """
    options, client = session_of(ctx)
    sources = client.list_event_sources()
    if options.json:
        emit_items(sources)
        return
    options.out().print(view.sources_table(sources))


@events_group.command("create")
@click.argument("name")
@_source_options
@global_options()
@click.pass_context
def events_create(
    ctx: click.Context,
    name: str,
    header: str | None,
    path: str | None,
    signature_header: str | None,
    delivery_id_header: str | None,
) -> None:
    """Create event source NAME and print its signing secret (shown once).

    \b
      automation events create github --header X-GitHub-Event \\
        --signature-header X-Hub-Signature-256 --delivery-id-header X-GitHub-Delivery
    """
    event_type = _event_type(header, path)
    options, client = session_of(ctx)
    source = client.create_event_source(
        name,
        event_type=event_type,
        signature_header=signature_header,
        delivery_id_header=delivery_id_header,
    )
    if options.json:
        emit_json(source)
        return
    out = options.out()
    out.print(f"created event source {source.name}")
    out.print(f"secret ({SHOWN_ONCE}): {source.secret}")
    out.print(view.source_view(source, client.base_url))


@events_group.command("show")
@click.argument("source", shell_complete=complete_source)
@global_options()
@click.pass_context
def events_show(ctx: click.Context, source: str) -> None:
    """Event source SOURCE (name or id): its URL, headers and automations.

    \b
      automation events show github
    """
    options, client = session_of(ctx)
    found = client.get_event_source(_find_source(client, source).id)
    if options.json:
        emit_json(found)
        return
    options.out().print(view.source_view(found, client.base_url))


@events_group.command("update")
@click.argument("source", shell_complete=complete_source)
@click.option("--name", "new_name", default=None, help="Rename (triggers follow the rename).")
@_source_options
@global_options()
@click.pass_context
def events_update(
    ctx: click.Context,
    source: str,
    new_name: str | None,
    header: str | None,
    path: str | None,
    signature_header: str | None,
    delivery_id_header: str | None,
) -> None:
    """Change event source SOURCE; what is not given stays.

    \b
      automation events update github --path action --signature-header X-Signature-256
    """
    event_type = _event_type(header, path)
    if not any((new_name, event_type, signature_header, delivery_id_header)):
        raise click.UsageError(
            "nothing to change: give --name, --header, --path, --signature-header "
            "or --delivery-id-header"
        )
    options, client = session_of(ctx)
    updated = client.update_event_source(
        _find_source(client, source).id,
        name=new_name,
        event_type=event_type,
        signature_header=signature_header,
        delivery_id_header=delivery_id_header,
    )
    if options.json:
        emit_json(updated)
        return
    out = options.out()
    out.print(f"updated event source {updated.name}")
    out.print(view.source_view(updated, client.base_url))


@events_group.command("delete")
@click.argument("source", shell_complete=complete_source)
@global_options()
@click.pass_context
def events_delete(ctx: click.Context, source: str) -> None:
    """Delete event source SOURCE (refused while an automation's trigger uses it).

    \b
      automation events delete github
    """
    options, client = session_of(ctx)
    found = _find_source(client, source)
    delete_and_say(options, "event_source", "event source", found, client.delete_event_source)


@events_group.command("rotate-secret")
@click.argument("source", shell_complete=complete_source)
@global_options()
@click.pass_context
def events_rotate(ctx: click.Context, source: str) -> None:
    """A new signing secret for SOURCE; the old one stops working at once.

    \b
      automation events rotate-secret github
    """
    options, client = session_of(ctx)
    rotated = client.rotate_event_source_secret(_find_source(client, source).id)
    if options.json:
        emit_json(rotated)
        return
    out = options.out()
    out.print(f"new secret for {rotated.name} ({SHOWN_ONCE}; the old one no longer verifies):")
    out.print(str(rotated.secret))


# ---- the deploy command's event trigger ----------------------------------------------


def event_trigger_options(f: F) -> F:
    """``--event SOURCE [--on TYPE ...] [--filter JMESPATH]`` for ``automation deploy``."""
    f = click.option(
        "--filter",
        "event_filter",
        default=None,
        metavar="JMESPATH",
        help="With --event: run only when this is truthy on the body, e.g. \"action == 'opened'\".",
    )(f)
    f = click.option(
        "--on",
        "event_types",
        multiple=True,
        metavar="TYPE",
        help="With --event: an event type to run on (repeat; default every type).",
    )(f)
    return click.option(
        "--event",
        "event_source",
        default=None,
        metavar="SOURCE",
        shell_complete=complete_source,
        help="Run on deliveries to event source SOURCE (see 'automation events').",
    )(f)


def event_trigger(
    source: str | None, types: tuple[str, ...], expression: str | None
) -> dict[str, Any] | None:
    """The event trigger the options describe, whole: a filter not given is removed."""
    if source is None:
        if types or expression is not None:
            raise click.UsageError("--on and --filter go with --event SOURCE")
        return None
    return {"type": "event", "source": source, "on": list(types) or ["*"], "filter": expression}
