"""Rich renderings of event sources, notification channels, deliveries and state."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from automation_sdk.models import Channel, Delivery, EventSource, State
from automation_sdk.render import short_time

DELIVERY_STYLE = {"delivered": "green", "failed": "red", "pending": "blue"}


def event_type_text(source: EventSource) -> str:
    """Where a delivery's type is read, e.g. "header X-GitHub-Event" or "body path type"."""
    if "header" in source.event_type:
        return f"header {source.event_type['header']}"
    if "path" in source.event_type:
        return f"body path {source.event_type['path']}"
    return "-"


def receive_url(base_url: str, source: EventSource) -> str:
    """The full URL senders post to (the server answers a path)."""
    return base_url.rstrip("/") + source.url


def sources_table(sources: Iterable[EventSource]) -> Table:
    table = Table(title="Event sources", title_justify="left")
    table.add_column("name")
    table.add_column("id", no_wrap=True)
    for name in ("event type", "signature header", "delivery id header", "automations"):
        table.add_column(name)
    table.add_column("created (UTC)")
    for s in sources:
        table.add_row(
            s.name,
            s.id,
            event_type_text(s),
            s.signature.get("header", "-"),
            s.delivery_id_header,
            ", ".join(s.automations) or "-",
            short_time(s.created_at),
        )
    return table


def source_view(source: EventSource, base_url: str) -> RenderableType:
    grid = _grid()
    grid.add_row("event source", source.name)
    grid.add_row("id", source.id)
    grid.add_row("receive URL", receive_url(base_url, source))
    grid.add_row("event type", event_type_text(source))
    header = source.signature.get("header", "X-Signature-256")
    grid.add_row("signature", f"{header}: sha256=<hex HMAC-SHA256 of the raw body>")
    grid.add_row("delivery id", source.delivery_id_header)
    grid.add_row("automations", ", ".join(source.automations) or "-")
    grid.add_row("updated (UTC)", short_time(source.updated_at))
    return grid


def channels_table(channels: Iterable[Channel]) -> Table:
    table = Table(title="Notification channels", title_justify="left")
    table.add_column("name")
    table.add_column("id", no_wrap=True)
    for name in ("url", "events", "automations", "created (UTC)"):
        table.add_column(name)
    for c in channels:
        scope = "all" if c.automation_ids is None else str(len(c.automation_ids))
        table.add_row(c.name, c.id, c.url, ", ".join(c.events), scope, short_time(c.created_at))
    return table


def channel_view(channel: Channel, automation_names: list[str] | None) -> RenderableType:
    """``automation_names`` is what ``automation_ids`` names (None: every automation)."""
    grid = _grid()
    grid.add_row("channel", channel.name)
    grid.add_row("id", channel.id)
    grid.add_row("url", channel.url)
    grid.add_row("events", ", ".join(channel.events))
    grid.add_row("automations", "all" if automation_names is None else ", ".join(automation_names))
    grid.add_row("signature", "X-Signature-256: sha256=<HMAC of the body with the channel secret>")
    grid.add_row("created (UTC)", short_time(channel.created_at))
    return grid


def deliveries_table(channel: Channel, deliveries: Iterable[Delivery]) -> Table:
    table = Table(title=f"Deliveries of {channel.name}", title_justify="left")
    table.add_column("id", no_wrap=True)
    for name in ("event", "status", "attempts", "last answer", "created (UTC)", "next / done"):
        table.add_column(name)
    for d in deliveries:
        table.add_row(
            d.id,
            d.event,
            Text(d.status, style=DELIVERY_STYLE.get(d.status, "")),
            str(d.attempts),
            _last_answer(d),
            short_time(d.created_at),
            short_time(d.delivered_at or d.next_attempt_at),
        )
    return table


def _last_answer(delivery: Delivery) -> str:
    if delivery.last_status_code is not None:
        return f"HTTP {delivery.last_status_code}"
    return delivery.last_error or "-"


def state_line(name: str, state: State) -> str:
    """e.g. "nightly: version 7, updated 2026-11-24 09:00:01 by run 0190..."."""
    if state.version == 0:
        return f"{name}: no state stored yet (runs start from {{}})"
    by = f"run {state.updated_by_run}" if state.updated_by_run else "hand (PUT)"
    return f"{name}: version {state.version}, updated {short_time(state.updated_at)} by {by}"


def _grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    return grid
