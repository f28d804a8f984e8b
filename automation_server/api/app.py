"""The Litestar application: routes, dependencies, error handlers, OpenAPI."""

from __future__ import annotations

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from automation_server.api import (
    automations,
    environments,
    events,
    experiments,
    health,
    hooks,
    keys,
    lifecycle,
    metrics,
    notifications,
    presets,
    runs,
    uploads,
    workers,
)
from automation_server.api.auth import provide_caller
from automation_server.api.errors import EXCEPTION_HANDLERS
from automation_server.api.openapi import polish
from automation_server.api.ui import ui_router
from automation_server.services import Services

# JSON bodies are small; uploads have their own, larger limit.
JSON_BODY_LIMIT = 1_048_576


def create_app(services: Services) -> Litestar:
    caller = {"caller": Provide(provide_caller, sync_to_thread=True)}
    v1 = Router(
        path="/v1",
        route_handlers=[
            automations.AutomationController,
            runs.RunController,
            experiments.ExperimentController,
            lifecycle.clone_variant,
            lifecycle.promote,
            lifecycle.decisions,
            keys.list_api_keys,
            keys.create_api_key,
            keys.revoke_api_key,
            keys.audit_log,
            runs.dispatch,
            workers.list_workers,
            presets.PresetController,
            environments.environment_lock,
            events.EventSourceController,
            notifications.NotificationChannelController,
        ],
        dependencies=caller,
        request_max_body_size=JSON_BODY_LIMIT,
    )
    v1_uploads = Router(
        path="/v1/uploads",
        route_handlers=[uploads.upload],
        dependencies=caller,
        request_max_body_size=services.settings.uploads.max_upload_bytes,
    )
    # Webhooks authenticate by signature, not by API key.
    v1_hooks = Router(
        path="/v1/hooks",
        route_handlers=[hooks.receive_webhook],
        request_max_body_size=services.settings.uploads.max_payload_bytes,
    )
    v1_events = Router(
        path="/v1/events",
        route_handlers=[events.receive_event],
        request_max_body_size=services.settings.uploads.max_payload_bytes,
    )
    app = Litestar(
        route_handlers=[
            health.health,
            health.ready,
            metrics.prometheus_metrics,
            v1,
            v1_uploads,
            v1_hooks,
            v1_events,
            ui_router(),
        ],
        dependencies={"services": Provide(lambda: services, sync_to_thread=False)},
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(title="Automation server", version="1.0.0", path="/schema"),
        debug=False,
    )
    polish(app.openapi_schema)
    return app
