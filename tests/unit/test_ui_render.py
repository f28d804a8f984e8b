# ruff: noqa: RUF001 - pages write the typographic minus (U+2212) and en dash (U+2013)
"""Dashboard templates: everything escaped, the sample-ratio warning, the comparison rows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from automation_server.api.ui.chart import colors_for, line_chart
from automation_server.api.ui.render import render
from automation_server.api.ui.session import Session
from automation_server.automations.schemas import AutomationOut, DecisionOut, VariantOut
from automation_server.automations.state import StateOut
from automation_server.security.accounts import Caller

HOSTILE = '<img src=x onerror="alert(1)">'
# What the automation page gets beside the automation: no weights chart, no state yet.
PAGE_EXTRAS: dict[str, Any] = {
    "older_revisions": 0,
    "weights": None,
    "state": StateOut(state={}, version=0, updated_at=None, updated_by_run=None),
}
T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def session(scope: str = "write") -> Session:
    return Session(Caller("org-1", "key-1", "abcd1234", scope), csrf="tok-123")  # type: ignore[arg-type]


def variant(name: str, weight: int, description: str = "") -> VariantOut:
    return VariantOut(
        name=name,
        weight=weight,
        tarball="blob:sha256:" + "a" * 64,
        digest="sha256:" + "a" * 64,
        entrypoint=["python3", "main.py"],
        env={"STYLE": HOSTILE},
        description=description,
        source={"kind": "upload"},
    )


def automation(**overrides: Any) -> AutomationOut:
    fields: dict[str, Any] = {
        "id": "0193b6c0-0000-7000-8000-000000000001",
        "name": "ranker",
        "trigger": {"type": "cron", "schedule": "0 9 * * 1-5", "timezone": "Europe/Berlin"},
        "experiment_id": "exp-1",
        "variants": [variant("control", 50), variant("fast", 50, HOSTILE)],
        "champion": None,
        "revision": 3,
        "enabled": True,
        "timeout_s": 600,
        "network": "none",
        "limits": {},
        "concurrency": {},
        "retry": {},
        "misfire": {},
        "auto_promote": None,
        "metrics": {},
        "allocation": {"mode": "fixed"},
        "assignment_key_path": None,
        "env": {},
        "secrets": ["API_TOKEN"],
        "created_at": "2026-11-20T09:00:00Z",
        "updated_at": "2026-11-20T09:00:00Z",
        "next_run_at": "2026-11-25T08:00:00Z",
        "last_run": None,
        "missed_ticks": 0,
        "disable_after_failures": 0,
        "consecutive_failures": 0,
        "disabled_reason": None,
    }
    fields.update(overrides)
    return AutomationOut(**fields)


def summary(*, srm_flagged: bool = False, metric: str = "score") -> dict[str, Any]:
    def item(name: str, rate: float, mean: float, vs: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "variant": name,
            "runs_assigned": 120,
            "runs_finished": {
                "succeeded": 90,
                "failed": 25,
                "timed_out": 3,
                "cancelled": 2,
                "skipped": 0,
            },
            "success_rate": {
                "estimate": rate,
                "interval": [rate - 0.07, rate + 0.06],
                "successes": 90,
                "trials": 118,
            },
            "duration_ms": {"count": 118, "p50": 812.0, "p95": 3210.0, "mean": 1000.0},
            "metrics": {metric: {"count": 90, "mean": mean, "interval": [mean - 0.1, mean + 0.1]}},
            "vs_control": vs,
        }

    def cmp(estimate: float, prob: float) -> dict[str, Any]:
        return {
            "difference": {
                "estimate": estimate,
                "interval": [estimate - 0.05, estimate + 0.05],
                "p_value": 0.0123,
                "adjusted_p_value": 0.0246,
            },
            "always_valid": {"interval": [estimate - 0.09, estimate + 0.09], "tau2": 0.002},
            "prob_better": prob,
            "prob_better_method": "normal approximation",
            "direction": "higher",
        }

    versus = {"success_rate": cmp(0.041, 0.973), "metrics": {metric: cmp(0.12, 0.9995)}}
    return {
        "experiment_id": "exp-1",
        "by": "variant",
        "control": "control",
        "include_forced": False,
        "variants": [item("control", 0.75, 1.0, None), item("fast", 0.79, 1.12, versus)],
        "srm": [
            {
                "automation_id": "a",
                "revision": 3,
                "observed": {"control": 180, "fast": 60},
                "weights": {"control": 50, "fast": 50},
                "flagged": srm_flagged,
                "p_value": 1.2e-9,
            }
        ],
        "srm_flagged": srm_flagged,
        "always_valid": {"method": "mSPRT", "tuning": "tau2 per comparison"},
        "metrics": {metric: {"direction": "higher", "unit": None}},
        "multiple_comparisons": {"method": "holm", "comparisons": 2},
    }


def charts(names: list[str], metric: str = "score") -> list[tuple[str, Any]]:
    colors = colors_for(names)
    series = [
        (n, [(T0 + timedelta(hours=h), 1.0 + 0.1 * i + 0.02 * (h % 3)) for h in range(12)])
        for i, n in enumerate(names)
    ]
    return [(f"metric:{metric}", line_chart(metric, series, colors=colors, y_label=str))]


def experiment_page(**overrides: Any) -> str:
    s = overrides.pop("summary", None) or summary()
    context: dict[str, Any] = {
        "session": session(),
        "experiment_id": "exp-1",
        "automations": [automation()],
        "summary": s,
        "entry": {"runs": 240, "last_activity_at": "2026-11-24T08:00:00Z"},
        "names": ["control", "fast"],
        "metrics": sorted({m for i in s["variants"] for m in i["metrics"]}),
        "colors": colors_for(["control", "fast"]),
        "bucket": "1h",
        "buckets": ["1m", "1h"],
        "charts": charts(["control", "fast"]),
        "promotable": {"control": [automation()], "fast": [automation()]},
    }
    context.update(overrides)
    return render("experiment.html", **context)


def test_experiment_page_shows_intervals_differences_and_a_chart_per_metric() -> None:
    html = experiment_page()
    assert "75.0% [68.0–81.0]" in html  # success rate with its Wilson interval
    assert "812 ms" in html and "3.2 s" in html  # duration p50 / p95
    assert "+4.1 pp [−0.9, +9.1]" in html  # rate difference in percentage points
    assert "97.3%" in html and "&gt;99.9%" in html  # P(better)
    assert "+0.12 [+0.03, +0.21]" in html  # always-valid interval of the metric
    assert "0.012" in html and "0.025" in html  # Welch p-value and Holm's adjustment
    assert html.count('data-reading="better"') == 2  # P(better) 97.3% and >99.9%
    svg = re.search(r'<figure class="chart" data-chart="metric:score">.*?</figure>', html, re.S)
    assert svg is not None
    assert len(re.findall(r'<path class="series"', svg.group(0))) == 2
    assert 'id="srm-warning"' not in html
    assert html.count('action="/ui/automations/0193b6c0-0000-7000-8000-000000000001/promote"') == 2


def test_a_lower_is_better_metric_is_labelled_and_a_low_p_better_reads_worse() -> None:
    body = summary(metric="latency_ms")
    body["metrics"]["latency_ms"] = {"direction": "lower", "unit": "ms"}
    versus = body["variants"][1]["vs_control"]
    versus["metrics"]["latency_ms"].update(direction="lower", prob_better=0.01)
    html = experiment_page(summary=body, metrics=["latency_ms"], charts=[])
    assert "latency_ms (ms), lower is better" in html
    assert html.count('data-reading="worse"') == 1


def test_flagged_sample_ratio_mismatch_is_a_warning_with_the_counts() -> None:
    html = experiment_page(summary=summary(srm_flagged=True))
    warning = re.search(r'<div class="banner warning".*?</div>', html, re.S)
    assert warning is not None
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", warning.group(0)))
    assert "Sample ratio mismatch" in text
    assert "revision 3: observed control 180, fast 60 against weights control 50, fast 50" in text
    assert "(p &lt;0.0001)" in text


def test_names_and_texts_from_users_are_escaped() -> None:
    html = experiment_page(summary=summary(metric=HOSTILE), charts=charts(["control"], HOSTILE))
    assert HOSTILE not in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    decision = DecisionOut(
        id="d1",
        kind="promote",
        variant="fast",
        reason=HOSTILE,
        automatic=False,
        actor="key:abcd1234",
        revision=4,
        summary=None,
        created_at="2026-11-24T08:00:00Z",
    )
    page = render(
        "automation.html",
        session=session(),
        a=automation(),
        revisions=[],
        **PAGE_EXTRAS,
        decisions=[decision],
        runs=[],
        more_runs=False,
        form={"reason": HOSTILE},
        idempotency_key="k",
    )
    assert HOSTILE not in page and "onerror=&#34;" in page
    kept = StateOut(state={"note": HOSTILE}, version=2, updated_at=None, updated_by_run=HOSTILE)
    page = render(
        "automation.html",
        session=session(),
        a=automation(),
        revisions=[],
        **{**PAGE_EXTRAS, "state": kept},
        decisions=[decision],
        runs=[],
        more_runs=False,
        form={},
        idempotency_key="k",
    )
    assert HOSTILE not in page and "onerror=&#34;" in page


def test_read_only_session_gets_disabled_forms_and_a_banner() -> None:
    page = render(
        "automation.html",
        session=session("read"),
        a=automation(),
        revisions=[],
        **PAGE_EXTRAS,
        decisions=[],
        runs=[],
        more_runs=False,
        form={},
        idempotency_key="k",
    )
    assert "Read-only key" in page
    dispatch = re.search(r'<form[^>]*id="dispatch-form".*?</form>', page, re.S)
    assert dispatch is not None and "disabled" in dispatch.group(0)
    writable = render(
        "automation.html",
        session=session("write"),
        a=automation(),
        revisions=[],
        **PAGE_EXTRAS,
        decisions=[],
        runs=[],
        more_runs=False,
        form={},
        idempotency_key="k",
    )
    assert "Read-only key" not in writable
    assert 'name="csrf_token" value="tok-123"' in writable


def test_automation_page_lists_each_variants_packages() -> None:
    from msgspec.structs import replace as struct_replace

    from automation_server.automations.schemas import EnvironmentOut, PackageOut

    env = EnvironmentOut(
        digest="sha256:" + "b" * 64,
        python="3.11.2",
        packages=[PackageOut("httpx", "0.28.1"), PackageOut("idna", "3.20")],
    )
    with_env = struct_replace(variant("fast", 50), environment=env)
    page = render(
        "automation.html",
        session=session(),
        a=automation(variants=[variant("control", 50), with_env]),
        revisions=[],
        **PAGE_EXTRAS,
        decisions=[],
        runs=[],
        more_runs=False,
        form={},
        idempotency_key="k",
    )
    assert "httpx 0.28.1, idna 3.20" in page and "standard library" in page


def test_automation_page_says_a_bandit_sets_the_weights() -> None:
    bandit = {"mode": "bandit", "metric": "success_rate", "every_runs": 50, "min_weight": 100}
    common: dict[str, Any] = {
        "session": session(),
        "revisions": [],
        **PAGE_EXTRAS,
        "decisions": [],
        "runs": [],
        "more_runs": False,
        "form": {},
        "idempotency_key": "k",
    }
    page = render("automation.html", a=automation(allocation=bandit), **common)
    assert 'id="allocation"' in page
    assert "bandit on success_rate: reweights every 50 runs, min weight 100" in page
    fixed = render("automation.html", a=automation(), **common)
    assert 'id="allocation"' not in fixed
