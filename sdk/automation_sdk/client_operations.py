"""The client's calls for event sources, notification channels and state
(DESIGN sections 9.4, 9.5 and 9.7); :class:`automation_sdk.client.Client` has them."""

from __future__ import annotations

from typing import Any

import httpx

from automation_sdk.models import Channel, Delivery, EventSource, State
from automation_sdk.responses import decode_as, decode_items


class OperationsApi:
    """Mixed into ``Client``, which supplies ``_request`` (retries, typed errors)."""

    def _request(
        self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> httpx.Response:
        raise NotImplementedError

    # ---- event sources (DESIGN section 9.4) ------------------------------------------

    def create_event_source(
        self,
        name: str,
        *,
        event_type: dict[str, str] | None = None,
        signature_header: str | None = None,
        delivery_id_header: str | None = None,
    ) -> EventSource:
        """A new source; its signing ``secret`` is in this answer only.

        ``event_type`` is ``{"header": "X-GitHub-Event"}`` or ``{"path": "type"}``
        (a JMESPath into the body, the server's default); omitted headers take
        the server's defaults (``X-Signature-256``, ``X-Delivery-Id``).
        """
        body = _source_body(name, event_type, signature_header, delivery_id_header)
        return decode_as(self._request("POST", "/v1/event-sources", json=body), EventSource)

    def list_event_sources(self) -> list[EventSource]:
        """Every source of the organization, by name (the server answers one page)."""
        return decode_items(self._request("GET", "/v1/event-sources"), EventSource)

    def find_event_source(self, name: str) -> EventSource | None:
        """The source called ``name``, or None (the server has no name filter)."""
        return next((s for s in self.list_event_sources() if s.name == name), None)

    def get_event_source(self, source_id: str) -> EventSource:
        return decode_as(self._request("GET", f"/v1/event-sources/{source_id}"), EventSource)

    def update_event_source(
        self,
        source_id: str,
        *,
        name: str | None = None,
        event_type: dict[str, str] | None = None,
        signature_header: str | None = None,
        delivery_id_header: str | None = None,
    ) -> EventSource:
        """Change only what is given; a rename follows into the triggers that use it."""
        body = _source_body(name, event_type, signature_header, delivery_id_header)
        response = self._request("PATCH", f"/v1/event-sources/{source_id}", json=body)
        return decode_as(response, EventSource)

    def delete_event_source(self, source_id: str) -> None:
        """Delete a source (ConflictError while an automation's trigger names it)."""
        self._request("DELETE", f"/v1/event-sources/{source_id}")

    def rotate_event_source_secret(self, source_id: str) -> EventSource:
        """A new signing secret, in the answer only; the old one stops working at once."""
        response = self._request("POST", f"/v1/event-sources/{source_id}/secret")
        return decode_as(response, EventSource)

    # ---- notification channels (DESIGN section 9.5) -------------------------------

    def create_channel(
        self,
        name: str,
        url: str,
        events: list[str],
        *,
        automation_ids: list[str] | None = None,
    ) -> Channel:
        """A channel POSTing ``events`` to ``url``; its ``secret`` is in this answer only.

        ``automation_ids`` limits it to those automations (default: all of them).
        """
        body: dict[str, Any] = {"name": name, "url": url, "events": events}
        if automation_ids:
            body["automation_ids"] = automation_ids
        response = self._request("POST", "/v1/notification-channels", json=body)
        return decode_as(response, Channel)

    def list_channels(self) -> list[Channel]:
        """Every channel of the organization, by name (the server answers one page)."""
        return decode_items(self._request("GET", "/v1/notification-channels"), Channel)

    def find_channel(self, name: str) -> Channel | None:
        return next((c for c in self.list_channels() if c.name == name), None)

    def get_channel(self, channel_id: str) -> Channel:
        response = self._request("GET", f"/v1/notification-channels/{channel_id}")
        return decode_as(response, Channel)

    def delete_channel(self, channel_id: str) -> None:
        """Delete a channel; its pending deliveries go with it."""
        self._request("DELETE", f"/v1/notification-channels/{channel_id}")

    def channel_deliveries(self, channel_id: str) -> list[Delivery]:
        """The channel's newest deliveries first (the server lists at most 200)."""
        response = self._request("GET", f"/v1/notification-channels/{channel_id}/deliveries")
        return decode_items(response, Delivery)

    # ---- state carried between runs (DESIGN section 9.7) ----------------------------

    def get_state(self, automation_id: str) -> State:
        """The automation's state: ``{}`` and version 0 until one is stored."""
        return decode_as(self._request("GET", f"/v1/automations/{automation_id}/state"), State)

    def put_state(self, automation_id: str, state: dict[str, Any]) -> State:
        """Replace the state whole (the next run reads it)."""
        # Always wrapped: the server also takes a bare object, but then a state
        # that itself has a single "state" key would be mistaken for the wrapper.
        response = self._request(
            "PUT", f"/v1/automations/{automation_id}/state", json={"state": state}
        )
        return decode_as(response, State)


def _source_body(
    name: str | None,
    event_type: dict[str, str] | None,
    signature_header: str | None,
    delivery_id_header: str | None,
) -> dict[str, Any]:
    """An event source's create or patch body with only the fields given."""
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if event_type is not None:
        body["event_type"] = event_type
    if signature_header is not None:
        body["signature"] = {"header": signature_header}
    if delivery_id_header is not None:
        body["delivery_id_header"] = delivery_id_header
    return body
