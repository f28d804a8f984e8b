# ruff: noqa: RUF001 - pages write the typographic minus (U+2212) and en dash (U+2013)
"""The experiment comparison, promotion, cloning, weights and enable/disable, in Chromium."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.ui_support import (
    ARTIFACTS,
    SCRIPT_REPORTING,
    Ui,
    screenshot,
    sign_in,
    text_of,
    ui_harness,
    unique,
)
from tests.support import SqliteDatabases

SCRIPT_MANY_METRICS = """
import os, random, sys
from automation_sdk import report
shift = float(os.environ["SHIFT"])
report.metric("score", 1.0 + shift + random.gauss(0, 0.15))
report.metric("latency_ms", 400 - 150 * shift + random.gauss(0, 40))
report.metric("tokens_per_request_generated", 900 + random.gauss(0, 60))
report.metric("judge_quality_rating_0_to_10", 6 + 2 * shift + random.gauss(0, 1))
report.metric("cost_usd_per_thousand_requests", 2.5 + random.gauss(0, 0.3))
if random.random() < float(os.environ["FAIL_P"]):
    sys.exit(1)
"""
WIDE = {"width": 1300, "height": 900}
# A signed difference and interval; a difference that rounds to zero has no sign.
_SIGNED = r"(?:[+−]\d[\d,]*(?:\.\d+)?|0(?:\.0+)?)"
READING = re.compile(rf"^{_SIGNED}( pp| ms)? \[{_SIGNED}, {_SIGNED}\]")
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


@pytest.fixture(scope="module")
def spread_experiment(ui: Ui) -> dict[str, Any]:
    """A control and a better treatment with five metrics (latency declared lower is
    better), 72 runs created over the past three hours, all finished."""
    ref = ui.stack.upload({"main.py": SCRIPT_MANY_METRICS})
    automation = ui.stack.create(
        name=unique("spread"),
        experiment_id=unique("spread-exp"),
        concurrency={"max_running": 100, "on_overlap": "queue"},
        env={"FAIL_P": "0.25"},
        metrics={"latency_ms": {"direction": "lower", "unit": "ms"}},
        variants=[
            {"name": "control", "weight": 1, "tarball": ref, "env": {"SHIFT": "0"}},
            {"name": "treatment", "weight": 1, "tarball": ref, "env": {"SHIFT": "0.4"}},
        ],
    )
    start = datetime.now(UTC) - timedelta(hours=3)
    ids = [ui.dispatch_at(automation["id"], start + timedelta(minutes=2.5 * i)) for i in range(72)]
    for run_id in ids:
        ui.stack.wait(run_id, timeout=120)
    return automation


EFFECTS = (
    "effect:success_rate",
    "effect:score",
    "effect:latency_ms",
    "effect:cost_usd_per_thousand_requests",
)


def test_effect_charts_show_cumulative_differences_with_intervals(
    ui: Ui, spread_experiment: dict[str, Any]
) -> None:
    page = ui.signed_in_page(ui.key())
    page.goto(f"/ui/experiments/{spread_experiment['experiment_id']}")
    assert "5m buckets" in text_of(page, "#effects h2") + text_of(page, "body")
    assert page.locator("select[name=bucket] option:checked").inner_text() == "auto (5m)"
    for chart in EFFECTS:
        figure = f"figure[data-chart='{chart}']"
        assert page.locator(f"{figure} svg line.zero").count() == 1, chart
        assert "0: no difference" in svg_text(page, figure)  # the zero line's label
        band = page.locator(f"{figure} path.band[data-variant='treatment']")
        assert band.count() == 1, chart
        d = band.get_attribute("d") or ""
        assert d.startswith("M") and d.endswith("Z") and d.count("L") > 20, chart
        line = page.locator(f"{figure} path.series[data-variant='treatment']")
        assert (line.get_attribute("d") or "").count("L") > 10, chart
        reading = text_of(page, f"{figure} li[data-variant='treatment'] .reading")
        assert READING.match(reading), (chart, reading)
    # The last point is what the table says now.
    versus = page.locator("#versus tr", has_text="success rate").first
    always = versus.locator("td").nth(4).inner_text().strip()
    assert text_of(page, "figure[data-chart='effect:success_rate'] .reading") == always
    latency = svg_text(page, "figure[data-chart='effect:latency_ms']")
    assert "▲ treatment worse" in latency and "▼ treatment better" in latency
    assert text_of(page, "figure[data-chart='effect:latency_ms'] .reading").endswith("] ms")
    # Per-bucket charts keep one line per variant and write each line's latest value.
    labels = page.locator("figure[data-chart='metric:score'] text.end-label")
    assert labels.count() == 2
    screenshot(page, "experiment-effects")
    page.locator("#effects").screenshot(path=str(screenshot_path("effects-section")))
    for chart in ("effect:success_rate", "effect:latency_ms", "metric:score"):
        shot = screenshot_path("chart-" + chart.replace(":", "-"))
        page.locator(f"figure[data-chart='{chart}']").screenshot(path=str(shot))


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"


def svg_text(page: Any, figure: str) -> str:
    """The words of a figure's chart (SVG has text content, not rendered inner text)."""
    return re.sub(r"\s+", " ", page.locator(f"{figure} > svg").text_content() or "").strip()


def test_wide_table_scrolls_inside_the_page_at_1300px(
    ui: Ui, spread_experiment: dict[str, Any]
) -> None:
    page = ui.signed_in_page(ui.key(), viewport=WIDE)
    page.goto(f"/ui/experiments/{spread_experiment['experiment_id']}")
    assert page.locator("#comparison th").count() >= 11  # five metric columns
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1300, width
    table = page.evaluate(
        "(() => { const t = document.querySelector('#comparison');"
        " const box = t.parentElement; return [t.scrollWidth, box.clientWidth]; })()"
    )
    assert table[1] <= 1300
    screenshot(page, "experiment-1300px")
    page.screenshot(path=str(screenshot_path("experiment-1300px-top")))  # the viewport only


def test_effect_charts_read_without_javascript_and_follow_the_bucket(
    ui: Ui, spread_experiment: dict[str, Any]
) -> None:
    context = ui.browser.new_context(base_url=ui.base_url, java_script_enabled=False, viewport=WIDE)
    ui.contexts.append(context)
    page = context.new_page()
    sign_in(page, ui.key())
    page.goto(f"/ui/experiments/{spread_experiment['experiment_id']}?bucket=1h")
    assert page.locator("select[name=bucket] option:checked").inner_text() == "1h"
    assert "1h buckets" in text_of(page, "body")
    figure = "figure[data-chart='effect:score']"
    assert page.locator(f"{figure} path.band").count() == 1
    assert page.locator(f"{figure} line.zero").count() == 1
    # Three hours in hourly buckets: a handful of points, each a marker with a tooltip.
    markers = page.locator(f"{figure} circle")
    assert 3 <= markers.count() <= 5
    assert "measured runs" in (markers.first.locator("title").text_content() or "")
    screenshot(page, "experiment-1h-no-js")


def _revisions_once_settled(ui: Ui, automation_id: str, wanted: int) -> dict[str, Any]:
    """The revisions once the bandit has made ``wanted`` (it reweights after the run that
    completes a batch has been recorded, so a moment after the client saw it finish)."""
    deadline = time.monotonic() + 20
    while True:
        revisions = ui.stack.http.get(f"/v1/automations/{automation_id}/revisions").json()
        if len(revisions["items"]) >= wanted or time.monotonic() > deadline:
            assert len(revisions["items"]) == wanted, revisions
            return dict(revisions)
        time.sleep(0.2)


def test_automation_page_charts_a_bandits_reweights_and_shows_the_state(ui: Ui) -> None:
    """Real sandboxed runs: the bandit moves weight to the variant that always succeeds,
    and the page draws each revision's shares; the state a client set is shown."""
    ref = ui.stack.upload({"main.py": SCRIPT_REPORTING})
    automation = ui.stack.create(
        name=unique("bandit"),
        experiment_id=unique("bandit-exp"),
        concurrency={"max_running": 50, "on_overlap": "queue"},
        allocation={"mode": "bandit", "metric": "success_rate", "every_runs": 10},
        variants=[
            {"name": "control", "weight": 1, "tarball": ref, "env": {"FAIL_P": "0.9"}},
            {"name": "fast", "weight": 1, "tarball": ref, "env": {"FAIL_P": "0"}},
        ],
    )
    for _ in range(3):
        for run in [ui.stack.dispatch(automation["id"]) for _ in range(10)]:
            ui.stack.wait(run["id"])
    revisions = _revisions_once_settled(ui, automation["id"], wanted=4)  # 1 + 30 runs / 10
    put = ui.stack.http.put(
        f"/v1/automations/{automation['id']}/state", json={"state": {"last_ticket": 7}}
    )
    assert put.status_code == 200, put.text

    page = ui.signed_in_page(ui.key(), viewport=WIDE)
    page.goto(f"/ui/automations/{automation['id']}")
    bars = page.locator("figure[data-chart='weights'] g.bar")
    assert bars.count() == len(revisions["items"])
    newest = revisions["items"][0]
    last = page.locator(f"g.bar[data-revision='{newest['revision']}'] rect[data-variant='fast']")
    share = newest["weights"]["fast"] / sum(newest["weights"].values())
    assert f"fast {share:.1%}" in (last.locator("title").text_content() or "")
    assert share > 0.5, newest["weights"]
    label = page.locator("figure[data-chart='weights'] text.end-label[data-variant='fast']")
    assert label.text_content() == f"{share:.0%}"
    assert '"last_ticket": 7' in text_of(page, "#state-json")
    assert "set through the API" in text_of(page, "#state")
    screenshot(page, "automation-bandit")
