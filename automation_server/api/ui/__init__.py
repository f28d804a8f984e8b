"""The web dashboard under ``/ui``: server-rendered pages over the same services as the API.

Pages resolve the caller from an encrypted session cookie and call the services
with it, so organization scoping and scopes are exactly the API's.
"""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide
from litestar.static_files import create_static_files_router

from automation_server.api.ui.auth_routes import index, sign_in, sign_in_page, sign_out
from automation_server.api.ui.automation_routes import AutomationPages
from automation_server.api.ui.deps import provide_session
from automation_server.api.ui.errors import UI_EXCEPTION_HANDLERS
from automation_server.api.ui.experiment_routes import ExperimentPages
from automation_server.api.ui.render import STATIC
from automation_server.api.ui.run_routes import RunPages

# Dashboard forms are small; a dispatch payload typed into a form is the largest.
FORM_BODY_LIMIT = 1_048_576


def ui_router() -> Router:
    static = create_static_files_router(
        path="/static", directories=[STATIC], include_in_schema=False
    )
    return Router(
        path="/ui",
        route_handlers=[
            index,
            sign_in_page,
            sign_in,
            sign_out,
            AutomationPages,
            RunPages,
            ExperimentPages,
            static,
        ],
        dependencies={"ui": Provide(provide_session, sync_to_thread=True)},
        exception_handlers=UI_EXCEPTION_HANDLERS,
        include_in_schema=False,
        request_max_body_size=FORM_BODY_LIMIT,
    )


__all__ = ["ui_router"]
