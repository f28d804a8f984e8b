# ruff: noqa: RUF001 - pages write the typographic minus (U+2212) and en dash (U+2013)
"""The experiment comparison, promotion, cloning, weights and enable/disable, in Chromium."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.ui_support import (
    SCRIPT_REPORTING,
    Ui,
    screenshot,
    sign_in,
    text_of,
    ui_harness,
    unique,
)
from tests.support import SqliteDatabases

PERCENT_INTERVAL = re.compile(r"^\d{1,3}\.\d% \[\d{1,3}\.\d–\d{1,3}\.\d\]$")
ESTIMATE = re.compile(r"^−?\d[\d,]*(\.\d+)? \[−?\d[\d,]*(\.\d+)?–−?\d[\d,]*(\.\d+)?\]")


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, sqlite_databases: SqliteDatabases) -> Iterator[Ui]:
    yield from ui_harness(tmp_path_factory, sqlite_databases)


def experiment_with_runs(ui: Ui) -> dict[str, Any]:
    """Two variants with a noisy score and some failures, randomly assigned until each
    variant has both succeeded and failed runs (so every interval has a width)."""
    ref = ui.stack.upload({"main.py": SCRIPT_REPORTING})
    automation = ui.stack.create(
        name=unique("ranker"),
        experiment_id=unique("ranker-exp"),
        concurrency={"max_running": 50, "on_overlap": "queue"},
        env={"JITTER": "0.2", "FAIL_P": "0.4"},
        variants=[
            {"name": "control", "weight": 1, "tarball": ref, "env": {"SCORE": "1.0"}},
            {"name": "fast", "weight": 1, "tarball": ref, "env": {"SCORE": "1.3"}},
        ],
    )
    outcomes: Counter[tuple[str, str]] = Counter()
    wanted = [(v, s) for v in ("control", "fast") for s in ("succeeded", "failed")]
    dispatched = 0
    while not all(outcomes[w] >= 2 for w in wanted):
        assert dispatched < 80, f"too few outcomes of each kind: {outcomes}"
        batch = [ui.stack.dispatch(automation["id"]) for _ in range(6)]
        dispatched += len(batch)
        for run in batch:
            done = ui.stack.wait(run["id"])
            outcomes[(done["variant"], done["status"])] += 1
    return automation


def test_experiment_page_compares_variants_charts_them_and_promotes(ui: Ui) -> None:
    automation = experiment_with_runs(ui)
    experiment = automation["experiment_id"]
    page = ui.signed_in_page(ui.key())
    page.goto("/ui/experiments")
    screenshot(page, "experiments")
    page.click(f"a[href='/ui/experiments/{experiment}']")
    page.wait_for_load_state()

    for variant in ("control", "fast"):
        row = f"#comparison tr[data-variant='{variant}']"
        cells = [c.strip() for c in page.locator(f"{row} td").all_inner_texts()]
        assert cells[0].startswith(variant)
        assert PERCENT_INTERVAL.match(cells[3]), cells
        assert re.match(r"^\d+(\.\d)? (ms|s)$", cells[4]), cells  # duration p50
        assert ESTIMATE.match(cells[6]), cells  # score mean [95% CI]
    versus = text_of(page, "#versus")
    assert "fast" in versus and "success rate" in versus and "score" in versus
    assert " pp [" in versus and "%" in versus

    for chart in ("metric:score", "success_rate", "runs"):
        paths = page.locator(f"figure[data-chart='{chart}'] svg path.series")
        assert paths.count() == 2, chart
        assert {paths.nth(i).get_attribute("data-variant") for i in range(2)} == {
            "control",
            "fast",
        }
    score_paths = page.locator("figure[data-chart='metric:score'] svg path.series")
    assert all((score_paths.nth(i).get_attribute("d") or "").startswith("M") for i in range(2))
    assert page.locator("#srm-warning").count() == 0
    screenshot(page, "experiment")

    row = "#comparison tr[data-variant='fast']"
    page.fill(f"{row} input[name=reason]", "higher score in the dashboard test")
    page.click(f"{row} button[data-promote='fast']")
    page.wait_for_url(re.compile(rf".*/ui/automations/{automation['id']}\?notice=promoted$"))
    assert "Promoted" in text_of(page, "p.notice")
    assert text_of(page, "#current-revision") == "2"
    newest = text_of(page, "#revisions tr[data-revision='2']")
    assert "fast" in newest and "control 0" in newest
    assert "champion" in text_of(page, "#variants tr[data-variant='fast']")
    decision = text_of(page, "#decisions tbody tr")
    assert "promote" in decision and "fast" in decision
    assert "higher score in the dashboard test" in decision
    screenshot(page, "automation-promoted")
    after = ui.stack.http.get(f"/v1/automations/{automation['id']}").json()
    assert after["champion"] == "fast" and after["revision"] == 2


def test_experiment_chart_reads_without_javascript(ui: Ui) -> None:
    automation = experiment_with_runs(ui)
    context = ui.browser.new_context(base_url=ui.base_url, java_script_enabled=False)
    ui.contexts.append(context)
    page = context.new_page()
    sign_in(page, ui.key())
    page.goto(f"/ui/experiments/{automation['experiment_id']}")
    assert page.locator("figure[data-chart='metric:score'] svg path.series").count() == 2
    assert page.locator("#comparison tr[data-variant]").count() == 2
    page.goto(f"/ui/experiments/{automation['experiment_id']}?control=fast&by=revision")
    assert "Against the control (fast)" in text_of(page, "body")
    assert "control" in text_of(page, "#versus")
    response = page.goto(f"/ui/experiments/{automation['experiment_id']}?by=weekday")
    assert response is not None and response.status == 400
    assert "by: must be 'variant' or 'revision'" in text_of(page, "p.message")


def test_clones_a_variant_and_edits_weights(ui: Ui) -> None:
    ref = ui.stack.upload({"main.py": SCRIPT_REPORTING})
    automation = ui.stack.create(
        name=unique("weights"),
        experiment_id=unique("weights-exp"),
        variants=[
            {"name": "control", "weight": 1, "tarball": ref},
            {"name": "fast", "weight": 1, "tarball": ref},
        ],
    )
    page = ui.signed_in_page(ui.key())
    page.goto(f"/ui/automations/{automation['id']}")
    # A rule the server checks (the name is taken) is shown next to the form, input kept.
    page.select_option("#clone-source", "fast")
    page.fill("#clone-name", "control")
    page.click("#clone-form button[type=submit]")
    assert "Clone:" in text_of(page, "p.error")
    assert page.locator("#clone-name").input_value() == "control"

    page.fill("#clone-name", "bold")
    page.fill("#clone-description", "louder copy")
    page.click("#clone-form button[type=submit]")
    page.wait_for_url(re.compile(r".*\?notice=cloned$"))
    row = text_of(page, "#variants tr[data-variant='bold']")
    assert "clone of fast (rev 1)" in row and "louder copy" in row

    page.fill("input[name='weight.control']", "3")
    page.fill("input[name='weight.bold']", "2")
    page.click("button[form=weights-form]")
    page.wait_for_url(re.compile(r".*\?notice=weights$"))
    assert text_of(page, "#current-revision") == "3"
    after = ui.stack.http.get(f"/v1/automations/{automation['id']}").json()
    assert {v["name"]: v["weight"] for v in after["variants"]} == {
        "control": 3,
        "fast": 1,
        "bold": 2,
    }
    assert "50.0%" in text_of(page, "#variants tr[data-variant='control']")


def test_disables_and_enables_from_the_list(ui: Ui) -> None:
    ref = ui.stack.upload({"main.py": "print(1)\n"})
    automation = ui.stack.create(
        name=unique("ticker"), trigger={"type": "interval", "seconds": 3600}, tarball=ref
    )
    page = ui.signed_in_page(ui.key())
    row = f"tr[data-automation='{automation['id']}']"
    assert "every 1 h" in text_of(page, row)
    page.click(f"{row} button[type=submit]")
    page.wait_for_url(re.compile(r".*notice=disabled$"))
    assert "off" in text_of(page, f"{row} .state")
    assert ui.stack.http.get(f"/v1/automations/{automation['id']}").json()["next_run_at"] is None
    page.click(f"{row} button[type=submit]")
    page.wait_for_url(re.compile(r".*notice=enabled$"))
    assert ui.stack.http.get(f"/v1/automations/{automation['id']}").json()["enabled"]
