"""Request and response shapes of notification channels (DESIGN section 9.5)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

# Names follow the automations' rule (letters, digits, ``.``, ``_``, ``-``).
CHANNEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ChannelName = Annotated[str, Meta(min_length=1, max_length=128, pattern=CHANNEL_NAME)]


class Strict(Struct, forbid_unknown_fields=True):
    """Request bodies reject fields they do not know (400)."""


class ChannelCreate(Strict):
    name: ChannelName
    url: Annotated[str, Meta(min_length=1, max_length=2048)]
    events: Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(min_length=1, max_length=20)]
    # Only these automations' events (all of the organization's when absent).
    automation_ids: Annotated[list[str], Meta(min_length=1, max_length=1000)] | None = None


class ChannelOut(Struct, omit_defaults=True):
    id: str
    name: str
    url: str
    events: list[str]
    automation_ids: list[str] | None
    created_at: str
    # Shown once, in the create response: receivers check X-Signature-256 with it.
    secret: str | None = None


class ChannelPage(Struct):
    items: list[ChannelOut]


class DeliveryOut(Struct):
    id: str
    event: str
    status: str  # pending, delivered or failed (gave up after 24 h)
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: str
    next_attempt_at: str | None
    delivered_at: str | None


class DeliveryPage(Struct):
    items: list[DeliveryOut]
