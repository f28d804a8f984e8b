"""Results read the right way round: declared metric directions and units, Holm's
adjustment over many comparisons, and the CLI's view of a real server's summary."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from automation_sdk.cli import main
from click.testing import CliRunner
from scipy import stats as sps
from sqlalchemy import select

from automation_server.db.models import Run
from automation_server.queue.results import RunResult
from automation_server.statuses import FailureOrigin, RunStatus
from tests.support import LiveServer, targz

# The README's A/B example: "fast" has a latency 37 ms lower than "control".
LATENCY = {"control": 120.0, "fast": 83.0, "slow": 125.0}
SCORE = {"control": 1.0, "fast": 1.1, "slow": 0.9}
P_SUCCESS = {"control": 0.8, "fast": 0.85, "slow": 0.7}


@pytest.fixture
def http(server: LiveServer) -> httpx.Client:
    return server.client(server.new_key("acme"))


def create(http: httpx.Client, experiment: str, variants: list[str], **body: Any) -> str:
    ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
    r = http.post(
        "/v1/automations",
        json={
            "name": experiment,
            "experiment_id": experiment,
            "concurrency": {"max_running": 1000, "on_overlap": "queue"},
            "variants": [{"name": v, "weight": 1, "tarball": ref} for v in variants],
            **body,
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def run_many(
    server: LiveServer, http: httpx.Client, automation_id: str, runs: int, seed: int = 7
) -> dict[str, dict[str, list[float]]]:
    """Dispatch and finish ``runs`` runs as a worker would; returns each variant's raw
    metric values (the independent side of the comparison)."""
    for _ in range(runs):
        assert http.post(f"/v1/automations/{automation_id}/dispatch").status_code == 202
    rng = random.Random(seed)
    raw: dict[str, dict[str, list[float]]] = {}
    queue = server.services.queue
    while ids := [c.run_id for c in queue.claim("sim", 200, 60)]:
        with server.services.db.read() as session:
            rows = session.execute(select(Run.id, Run.variant).where(Run.id.in_(ids))).all()
            variants = {run_id: variant for run_id, variant in rows}
        for run_id in ids:
            v = variants[run_id]
            if rng.random() < 0.03:  # a platform failure: retried, never counted against v
                queue.finish(run_id, "sim", RunResult.infrastructure("sandbox could not start"))
                continue
            ok = rng.random() < P_SUCCESS[v]
            metrics = {"latency_ms": rng.gauss(LATENCY[v], 15), "score": rng.gauss(SCORE[v], 0.3)}
            for name, value in metrics.items():
                raw.setdefault(v, {}).setdefault(name, []).append(value)
            queue.finish(
                run_id,
                "sim",
                RunResult(
                    status=RunStatus.SUCCEEDED if ok else RunStatus.FAILED,
                    exit_code=0 if ok else 1,
                    error=None,
                    duration_ms=rng.randint(50, 150),
                    metrics=metrics,
                    origin=FailureOrigin.RUN,
                ),
            )
    return raw


def test_a_lower_is_better_metric_gets_p_better_near_one_for_the_lower_variant(
    server: LiveServer, http: httpx.Client
) -> None:
    declared = create(
        http,
        "declared",
        ["control", "fast"],
        metrics={"latency_ms": {"direction": "lower", "unit": "ms"}},
    )
    undeclared = create(http, "undeclared", ["control", "fast"])
    run_many(server, http, declared, 200)
    run_many(server, http, undeclared, 200)

    summary = http.get("/v1/experiments/declared").json()
    assert summary["metrics"]["latency_ms"] == {"direction": "lower", "unit": "ms"}
    assert summary["metrics"]["score"] == {"direction": "higher", "unit": None}
    fast = next(v for v in summary["variants"] if v["variant"] == "fast")
    latency = fast["vs_control"]["metrics"]["latency_ms"]
    assert latency["direction"] == "lower" and latency["difference"]["estimate"] < -25
    assert latency["prob_better"] > 0.999
    assert fast["metrics"]["latency_ms"]["unit"] == "ms"
    assert fast["vs_control"]["success_rate"]["direction"] == "higher"

    # Without the declaration the same numbers read as higher-is-better.
    plain = http.get("/v1/experiments/undeclared").json()
    fast_plain = next(v for v in plain["variants"] if v["variant"] == "fast")
    assert fast_plain["vs_control"]["metrics"]["latency_ms"]["prob_better"] < 0.001


def independent_holm(p_values: list[float]) -> list[float]:
    """Holm's definition, computed the long way: for each p, the largest over every p'
    no larger than it of min(1, (m - rank(p') + 1) p')."""
    m = len(p_values)
    ranked = sorted(p_values)
    out = []
    for p in p_values:
        candidates = [min(1.0, (m - k) * q) for k, q in enumerate(ranked) if q <= p]
        out.append(max(candidates))
    return out


def test_every_p_value_in_a_summary_has_its_holm_adjustment(
    server: LiveServer, http: httpx.Client
) -> None:
    automation = create(
        http,
        "many",
        ["control", "fast", "slow"],
        metrics={"latency_ms": {"direction": "lower", "unit": "ms"}},
    )
    raw = run_many(server, http, automation, 360, seed=11)
    summary = http.get("/v1/experiments/many").json()
    assert summary["multiple_comparisons"] == {"method": "holm", "comparisons": 6}
    differences, expected_welch = [], []
    for item in summary["variants"]:
        if item["vs_control"] is None:
            continue
        versus = item["vs_control"]
        differences.append(versus["success_rate"]["difference"])
        for name in ("latency_ms", "score"):
            differences.append(versus["metrics"][name]["difference"])
            welch = sps.ttest_ind(raw[item["variant"]][name], raw["control"][name], equal_var=False)
            expected_welch.append((versus["metrics"][name]["difference"], welch.pvalue))
    for difference, p_value in expected_welch:
        assert difference["p_value"] == pytest.approx(p_value, rel=1e-6)
    p_values = [d["p_value"] for d in differences]
    adjusted = [d["adjusted_p_value"] for d in differences]
    assert adjusted == pytest.approx(independent_holm(p_values), rel=1e-12)
    assert all(a >= p for a, p in zip(adjusted, p_values, strict=True))


def test_the_cli_renders_a_real_summary(server: LiveServer, http: httpx.Client) -> None:
    key = server.new_key("acme")
    automation = create(
        http,
        "rendered",
        ["control", "fast"],
        metrics={"latency_ms": {"direction": "lower", "unit": "ms"}},
    )
    run_many(server, http, automation, 120, seed=3)
    summary = http.get("/v1/experiments/rendered").json()
    control = next(v for v in summary["variants"] if v["variant"] == "control")
    fast = next(v for v in summary["variants"] if v["variant"] == "fast")
    env = {"AUTOMATION_URL": server.base_url, "AUTOMATION_API_KEY": key, "COLUMNS": "250"}
    result = CliRunner().invoke(main, ["experiment", "rendered"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = result.output
    done = control["runs_finished"]
    assert f"{done['succeeded']} succeeded, {done['failed']} failed" in text  # by status
    assert "metric latency_ms (ms), lower is better" in text
    assert "metric score, higher is better" in text
    srm = summary["srm"][0]
    assert f"sample ratio mismatch, revision {srm['revision']}: not flagged" in text
    assert "Holm p" in text and "over all 3 comparisons" in text
    latency = fast["vs_control"]["metrics"]["latency_ms"]
    assert latency["prob_better"] > 0.95
    lines = text.splitlines()
    after_title = lines[next(i for i, line in enumerate(lines) if "metric latency_ms" in line) :]
    fast_latency_row = next(line for line in after_title if line.startswith("│ fast"))
    assert "│ better" in fast_latency_row, text
    assert f"{fast['infrastructure_failures']}" in text
    # --by-revision renders the per-revision shape the API returns.
    by_revision = CliRunner().invoke(
        main, ["experiment", "rendered", "--by-revision"], env=env, catch_exceptions=False
    )
    assert by_revision.exit_code == 0 and "rendered, revision 1" in by_revision.output


@pytest.mark.parametrize(
    ("metrics", "field"),
    [
        ({"latency_ms": {"direction": "sideways"}}, "direction"),
        ({"latency_ms": {"unit": "u" * 17}}, "unit"),
        ({f"m{i}": {} for i in range(51)}, "metrics"),
        ({"success_rate": {"direction": "lower"}}, "success_rate"),
        ({"not a name": {}}, "metrics"),
    ],
)
def test_bad_metric_declarations_are_refused(
    http: httpx.Client, metrics: dict[str, Any], field: str
) -> None:
    ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
    r = http.post("/v1/automations", json={"name": "bad", "tarball": ref, "metrics": metrics})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_metric" and field in r.json()["field"]


def test_an_unknown_field_in_a_metric_declaration_fails_the_schema(http: httpx.Client) -> None:
    ref = http.post("/v1/uploads", content=targz({"main.py": "1"})).json()["ref"]
    metrics = {"latency_ms": {"direction": "lower", "colour": "red"}}
    r = http.post("/v1/automations", json={"name": "bad", "tarball": ref, "metrics": metrics})
    assert r.status_code == 400 and "colour" in r.text


def test_metrics_can_be_patched_and_are_shown(http: httpx.Client) -> None:
    automation = create(http, "patched", ["control"])
    r = http.patch(
        f"/v1/automations/{automation}", json={"metrics": {"cost": {"direction": "lower"}}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["metrics"] == {"cost": {"direction": "lower"}}
    bad = http.patch(
        f"/v1/automations/{automation}", json={"metrics": {"cost": {"direction": "down"}}}
    )
    assert bad.status_code == 422
    assert http.get(f"/v1/automations/{automation}").json()["metrics"] == {
        "cost": {"direction": "lower"}
    }
