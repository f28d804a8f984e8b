"""Notification channels (``/v1/notification-channels``) and their deliveries."""

from __future__ import annotations

from litestar import Controller, delete, get, post
from litestar.params import FromPath, JSONBody

from automation_server.api.deps import CallerDep, ServicesDep
from automation_server.notifications.schemas import (
    ChannelCreate,
    ChannelOut,
    ChannelPage,
    DeliveryPage,
)

ChannelId = FromPath[str]


class NotificationChannelController(Controller):
    path = "/notification-channels"
    tags = ["notifications"]

    @post("/", status_code=201, sync_to_thread=True)
    def create(
        self, data: JSONBody[ChannelCreate], services: ServicesDep, caller: CallerDep
    ) -> ChannelOut:
        """Create a channel; its signing `secret` is shown once, in this response."""
        return services.channels.create(caller, data)

    @get("/", sync_to_thread=True)
    def list_channels(self, services: ServicesDep, caller: CallerDep) -> ChannelPage:
        return services.channels.list(caller)

    @get("/{channel_id:str}", sync_to_thread=True)
    def read(self, channel_id: ChannelId, services: ServicesDep, caller: CallerDep) -> ChannelOut:
        return services.channels.get(caller, channel_id)

    @delete("/{channel_id:str}", status_code=204, sync_to_thread=True)
    def remove(self, channel_id: ChannelId, services: ServicesDep, caller: CallerDep) -> None:
        """Delete a channel and its pending deliveries."""
        services.channels.delete(caller, channel_id)

    @get("/{channel_id:str}/deliveries", sync_to_thread=True)
    def deliveries(
        self, channel_id: ChannelId, services: ServicesDep, caller: CallerDep
    ) -> DeliveryPage:
        """The newest deliveries first: event, status, attempts and the last answer."""
        return services.channels.deliveries(caller, channel_id)
