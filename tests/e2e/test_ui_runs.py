"""Dispatching from the dashboard, following a run, and the runs list, in Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.ui_support import (
    SCRIPT_REPORTING,
    Ui,
    screenshot,
    text_of,
    ui_harness,
    unique,
)
from tests.support import SqliteDatabases


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, sqlite_databases: SqliteDatabases) -> Iterator[Ui]:
    yield from ui_harness(tmp_path_factory, sqlite_databases)


def two_variant_automation(ui: Ui, **env: str) -> dict[str, Any]:
    ref = ui.stack.upload({"main.py": SCRIPT_REPORTING})
    return ui.stack.create(
        name=unique("follow"),
        experiment_id=unique("follow-exp"),
        concurrency={"max_running": 10, "on_overlap": "queue"},
        env=env,
        variants=[
            {"name": "control", "weight": 1, "tarball": ref, "env": {"SCORE": "0.25"}},
            {"name": "fast", "weight": 1, "tarball": ref, "env": {"SCORE": "0.75"}},
        ],
    )


def test_dispatches_from_the_ui_and_follows_the_run_to_completion(ui: Ui) -> None:
    from playwright.sync_api import expect

    automation = two_variant_automation(ui, STEPS="4", PAUSE="0.6")
    page = ui.signed_in_page(ui.key())
    page.goto(f"/ui/automations/{automation['id']}")
    screenshot(page, "automation")
    page.select_option("#dispatch-variant", "fast")
    page.fill("#dispatch-payload", '{"ticket": 42}')
    page.click("#dispatch-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/runs/[0-9a-f-]{36}$"))
    run_id = page.url.rsplit("/", 1)[1]
    run = ui.stack.http.get(f"/v1/runs/{run_id}").json()
    assert run["automation_id"] == automation["id"] and run["variant"] == "fast"
    assert run["assignment"]["method"] == "forced"
    # The page follows the log while the run goes on, without a reload by us.
    log = page.locator("#log")
    assert log.get_attribute("data-follow-log") == f"/ui/runs/{run_id}/log"
    expect(log).to_contain_text("step 1", timeout=30_000)
    screenshot(page, "run-following")
    expect(page.locator("#run-status")).to_contain_text("succeeded", timeout=30_000)
    expect(log).to_contain_text("done")
    assert page.locator("#log").get_attribute("data-follow-log") is None  # finished: reloaded
    assert "0.75" in text_of(page, "#metrics")
    assert '"variant": "fast"' in text_of(page, "#outputs")
    assert "forced" in page.content()
    assert ui.stack.http.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded"
    screenshot(page, "run")


def test_run_page_reads_without_javascript(ui: Ui) -> None:
    automation = two_variant_automation(ui)
    run = ui.stack.dispatch(automation["id"], variant="control")
    ui.stack.wait(run["id"])
    context = ui.browser.new_context(base_url=ui.base_url, java_script_enabled=False)
    ui.contexts.append(context)
    page = context.new_page()
    from tests.e2e.ui_support import sign_in

    sign_in(page, ui.key())
    page.goto(f"/ui/runs/{run['id']}")
    assert "succeeded" in text_of(page, "#run-status")
    assert "done" in text_of(page, "#log")
    assert "0.25" in text_of(page, "#metrics")


def test_runs_list_filters_and_pages_with_cursors(ui: Ui) -> None:
    automation = two_variant_automation(ui)
    runs = [
        ui.stack.dispatch(automation["id"], variant=v)
        for v in ("control", "fast", "control", "fast", "control")
    ]
    for run in runs:
        ui.stack.wait(run["id"])
    page = ui.signed_in_page(ui.key())
    page.goto(f"/ui/runs?automation_id={automation['id']}")
    assert page.locator("tr[data-run]").count() == 5
    screenshot(page, "runs")
    page.fill("#run-filters input[name=variant]", "control")
    page.select_option("#run-filters select[name=status]", "succeeded")
    page.click("#run-filters button[type=submit]")
    shown = [
        page.locator("tr[data-run]").nth(i) for i in range(page.locator("tr[data-run]").count())
    ]
    expected = [r["id"] for r in reversed(runs) if r["variant"] == "control"]
    assert [row.get_attribute("data-run") for row in shown] == expected
    # Keyset pages of two, newest first, keeping the filters.
    page.goto(f"/ui/runs?automation_id={automation['id']}&limit=2")
    seen: list[str | None] = []
    while True:
        seen += [
            page.locator("tr[data-run]").nth(i).get_attribute("data-run")
            for i in range(page.locator("tr[data-run]").count())
        ]
        older = page.locator("a[rel=next]")
        if older.count() == 0:
            break
        older.click()
        page.wait_for_load_state()
    assert seen == [r["id"] for r in reversed(runs)]
