"""Runs: the filtered, paged list, one run, its log for the follower, cancellation."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, MediaType, Response, get, post
from litestar.params import FromPath, FromQuery, QueryParameter

from automation_server.api.deps import ServicesDep
from automation_server.api.ui.auth_routes import FormBody
from automation_server.api.ui.deps import SessionDep, check_form
from automation_server.api.ui.render import page, redirect
from automation_server.api.ui.views import FINISHED, STATUSES, TRIGGERS, notice_text
from automation_server.errors import Conflict, NotFound
from automation_server.runs.service import RunFilters
from automation_server.security.accounts import Caller
from automation_server.services import Services

PAGE_SIZE = 50
Limit = Annotated[int, QueryParameter(ge=1, le=500)]
# Enough for a dashboard's select box and for naming the runs of a page.
NAME_LOOKUP_LIMIT = 500


def automation_names(services: Services, caller: Caller) -> dict[str, str]:
    page_ = services.automations.list_page(caller, name=None, limit=NAME_LOOKUP_LIMIT, cursor=None)
    return {a.id: a.name for a in page_.items}


def _blank_to_none(value: str | None) -> str | None:
    return value.strip() or None if value else None


class RunPages(Controller):
    path = "/runs"

    @get("/", sync_to_thread=True)
    def list_runs(
        self,
        services: ServicesDep,
        ui: SessionDep,
        automation_id: FromQuery[str | None] = None,
        experiment_id: FromQuery[str | None] = None,
        variant: FromQuery[str | None] = None,
        status: FromQuery[str | None] = None,
        trigger: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Limit = PAGE_SIZE,
    ) -> Response[str]:
        filters = RunFilters(
            automation_id=_blank_to_none(automation_id),
            experiment_id=_blank_to_none(experiment_id),
            variant=_blank_to_none(variant),
            status=_blank_to_none(status),
            trigger=_blank_to_none(trigger),
        )
        result = services.runs.list_page(ui.caller, filters, limit=limit, cursor=cursor)
        query: dict[str, Any] = {k: v for k, v in vars(filters).items() if v is not None}
        if limit != PAGE_SIZE:
            query["limit"] = limit
        experiments = services.experiments.list_all(ui.caller)["items"]
        return page(
            "runs.html",
            section="runs",
            session=ui,
            runs=result.items,
            filters=filters,
            limit=query.get("limit"),
            names=automation_names(services, ui.caller),
            experiments=[e["experiment_id"] for e in experiments],
            statuses=STATUSES,
            triggers=TRIGGERS,
            next_url=(
                "/ui/runs?" + urlencode({**query, "cursor": result.next_cursor})
                if result.next_cursor
                else None
            ),
            first_url=("/ui/runs?" + urlencode(query)) if cursor else None,
        )

    @get("/{run_id:str}", sync_to_thread=True)
    def show(
        self,
        run_id: FromPath[str],
        services: ServicesDep,
        ui: SessionDep,
        notice: FromQuery[str | None] = None,
    ) -> Response[str]:
        run = services.runs.get(ui.caller, run_id)
        try:
            automation = services.automations.get(ui.caller, run.automation_id)
        except NotFound:  # deleted: its runs stay readable
            automation = None
        log, _ = services.runs.log(ui.caller, run_id)
        return page(
            "run.html",
            section="runs",
            session=ui,
            run=run,
            automation=automation,
            log=log.decode("utf-8", errors="replace"),
            finished=run.status in FINISHED,
            notice=notice_text(notice),
        )

    @get("/{run_id:str}/log", sync_to_thread=True, media_type=MediaType.TEXT)
    def log(self, run_id: FromPath[str], services: ServicesDep, ui: SessionDep) -> Response[bytes]:
        """The log so far for the page's follower (the API's needs a bearer key)."""
        status = services.runs.status(ui.caller, run_id)
        data, _ = services.runs.log(ui.caller, run_id)
        return Response(
            data,
            media_type=MediaType.TEXT,
            headers={
                "X-Run-Status": status,
                "X-Run-Finished": "true" if status in FINISHED else "false",
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @post("/{run_id:str}/cancel", sync_to_thread=True)
    def cancel(
        self, run_id: FromPath[str], services: ServicesDep, ui: SessionDep, data: FormBody
    ) -> Response[Any]:
        check_form(ui, data)
        try:
            services.runs.cancel(ui.caller, run_id)
        except Conflict:  # it finished meanwhile: the page shows how
            return redirect(f"/ui/runs/{run_id}?notice=already-finished")
        return redirect(f"/ui/runs/{run_id}?notice=cancel-requested")
