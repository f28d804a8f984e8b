"""Automations: the list, one automation, and the forms that change it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Controller, Response, get, post
from litestar.params import FromPath, FromQuery

from automation_server.api.deps import ServicesDep
from automation_server.api.ui import forms
from automation_server.api.ui.auth_routes import FormBody
from automation_server.api.ui.chart import colors_for
from automation_server.api.ui.deps import SessionDep, check_form
from automation_server.api.ui.errors import status_of
from automation_server.api.ui.render import page, redirect
from automation_server.api.ui.session import Session, new_token
from automation_server.api.ui.views import notice_text
from automation_server.api.ui.weights_chart import WeightsChart, weights_chart
from automation_server.automations.schemas import AutomationOut, RevisionOut
from automation_server.errors import BadRequest, Conflict, Invalid, TooLarge
from automation_server.runs.service import RunFilters
from automation_server.services import Services

PAGE_SIZE = 50
RECENT_RUNS = 15
REVISION_ROWS = 30  # the table's latest revisions; the chart shows more
# What a form's user can fix: shown on the page next to the form, not as an error page.
USER_ERRORS = (Invalid, Conflict, BadRequest, TooLarge)


def automation_page(
    services: Services,
    session: Session,
    automation_id: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
    form: dict[str, str] | None = None,
) -> Response[str]:
    caller = session.caller
    automation = services.automations.get(caller, automation_id)
    runs = services.runs.list_page(
        caller, RunFilters(automation_id=automation_id), limit=RECENT_RUNS, cursor=None
    )
    revisions = services.automations.revisions(caller, automation_id).items
    return page(
        "automation.html",
        status=status,
        section="automations",
        session=session,
        a=automation,
        revisions=revisions[:REVISION_ROWS],
        older_revisions=max(0, len(revisions) - REVISION_ROWS),
        weights=_weights_chart(automation, revisions),
        state=services.states.get(caller, automation_id),
        decisions=services.lifecycle.decisions(caller, automation_id).items,
        runs=runs.items,
        more_runs=runs.next_cursor is not None,
        notice=notice,
        error=error,
        form=form or {},
        idempotency_key=new_token(),
    )


def _weights_chart(automation: AutomationOut, revisions: list[RevisionOut]) -> WeightsChart | None:
    """Only worth a chart once the weights have changed (a bandit's reweights, or by hand)."""
    if len({tuple(sorted(r.weights.items())) for r in revisions}) < 2:
        return None
    names = [v.name for v in automation.variants]
    return weights_chart([(r.revision, r.weights) for r in revisions], names, colors_for(names))


def act(
    services: Services,
    session: Session,
    automation_id: str,
    form: dict[str, str],
    label: str,
    action: Callable[[], str],
) -> Response[Any]:
    """Run a form's action and go where it says, or show the page again with the reason."""
    check_form(session, form)
    try:
        target = action()
    except USER_ERRORS as exc:
        return automation_page(
            services,
            session,
            automation_id,
            error=f"{label}: {exc.detail}",
            status=status_of(exc),
            form=form,
        )
    return redirect(target)


class AutomationPages(Controller):
    path = "/automations"

    @get("/", sync_to_thread=True)
    def list_automations(
        self,
        services: ServicesDep,
        ui: SessionDep,
        cursor: FromQuery[str | None] = None,
        notice: FromQuery[str | None] = None,
    ) -> Response[str]:
        result = services.automations.list_page(
            ui.caller, name=None, limit=PAGE_SIZE, cursor=cursor
        )
        return page(
            "automations.html",
            section="automations",
            session=ui,
            automations=result.items,
            next_cursor=result.next_cursor,
            cursor=cursor,
            notice=notice_text(notice),
        )

    @get("/{automation_id:str}", sync_to_thread=True)
    def show(
        self,
        automation_id: FromPath[str],
        services: ServicesDep,
        ui: SessionDep,
        notice: FromQuery[str | None] = None,
    ) -> Response[str]:
        return automation_page(services, ui, automation_id, notice=notice_text(notice))

    @post("/{automation_id:str}/dispatch", sync_to_thread=True)
    def dispatch(
        self, automation_id: FromPath[str], services: ServicesDep, ui: SessionDep, data: FormBody
    ) -> Response[Any]:
        def action() -> str:
            run = services.dispatcher.dispatch(
                ui.caller,
                automation_id,
                forms.dispatch_request(data),
                data.get("idempotency_key") or None,
            )
            return f"/ui/runs/{run.id}"

        return act(services, ui, automation_id, data, "Dispatch", action)

    @post("/{automation_id:str}/promote", sync_to_thread=True)
    def promote(
        self, automation_id: FromPath[str], services: ServicesDep, ui: SessionDep, data: FormBody
    ) -> Response[Any]:
        def action() -> str:
            services.lifecycle.promote(ui.caller, automation_id, forms.promote_request(data))
            return f"/ui/automations/{automation_id}?notice=promoted"

        return act(services, ui, automation_id, data, "Promote", action)

    @post("/{automation_id:str}/clone", sync_to_thread=True)
    def clone(
        self, automation_id: FromPath[str], services: ServicesDep, ui: SessionDep, data: FormBody
    ) -> Response[Any]:
        def action() -> str:
            source = data.get("source", "").strip()
            services.lifecycle.clone(ui.caller, automation_id, source, forms.clone_request(data))
            return f"/ui/automations/{automation_id}?notice=cloned"

        return act(services, ui, automation_id, data, "Clone", action)

    @post("/{automation_id:str}/weights", sync_to_thread=True)
    def weights(
        self, automation_id: FromPath[str], services: ServicesDep, ui: SessionDep, data: FormBody
    ) -> Response[Any]:
        def action() -> str:
            before = services.automations.get(ui.caller, automation_id).revision
            after = services.automations.update(
                ui.caller, automation_id, forms.weights_patch(data)
            ).revision
            notice = "weights" if after != before else "unchanged"
            return f"/ui/automations/{automation_id}?notice={notice}"

        return act(services, ui, automation_id, data, "Weights", action)

    @post("/{automation_id:str}/enabled", sync_to_thread=True)
    def set_enabled(
        self, automation_id: FromPath[str], services: ServicesDep, ui: SessionDep, data: FormBody
    ) -> Response[Any]:
        def action() -> str:
            patch = forms.enabled_patch(data)
            services.automations.update(ui.caller, automation_id, patch)
            notice = "enabled" if patch.enabled else "disabled"
            if data.get("back") == "list":
                return f"/ui/automations?notice={notice}"
            return f"/ui/automations/{automation_id}?notice={notice}"

        return act(services, ui, automation_id, data, "Enable/disable", action)
