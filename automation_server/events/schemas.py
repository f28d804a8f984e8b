"""Request and response shapes of event sources (DESIGN section 9.4)."""

from __future__ import annotations

from typing import Annotated

from msgspec import UNSET, Meta, Struct, UnsetType, field

from automation_server.automations.schemas import AUTOMATION_NAME, Strict

SourceName = Annotated[str, Meta(min_length=1, max_length=128, pattern=AUTOMATION_NAME)]
HeaderName = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9-]+$")]


class EventTypeSpec(Strict):
    """Where a delivery's event type is read: a request header, or a JMESPath into the body
    (exactly one; checked by the service, 422)."""

    header: HeaderName | None = None
    path: Annotated[str, Meta(min_length=1, max_length=500)] | None = None


class SignatureSpec(Strict):
    header: HeaderName = "X-Signature-256"


def _default_event_type() -> EventTypeSpec:
    return EventTypeSpec(path="type")


class EventSourceCreate(Strict):
    name: SourceName
    event_type: EventTypeSpec = field(default_factory=_default_event_type)
    signature: SignatureSpec = field(default_factory=SignatureSpec)
    delivery_id_header: HeaderName = "X-Delivery-Id"


class EventSourcePatch(Strict):
    name: SourceName | UnsetType = UNSET
    event_type: EventTypeSpec | UnsetType = UNSET
    signature: SignatureSpec | UnsetType = UNSET
    delivery_id_header: HeaderName | UnsetType = UNSET


class EventSourceOut(Struct, omit_defaults=True):
    id: str
    name: str
    url: str
    event_type: dict[str, str]
    signature: dict[str, str]
    delivery_id_header: str
    # Names of the automations whose event trigger uses this source.
    automations: list[str]
    created_at: str
    updated_at: str
    # Shown once: in the create response and when the secret is rotated.
    secret: str | None = None


class EventSourcePage(Struct):
    items: list[EventSourceOut]


class EventAnswer(Struct):
    """``POST /v1/events/{id}``: what one delivery queued (the same answer on a replay)."""

    delivery_id: str
    event_type: str
    matched: int
    runs: list[str]
