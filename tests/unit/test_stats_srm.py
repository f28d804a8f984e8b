"""Sample-ratio-mismatch check: skewed assignment is flagged, fair assignment is not."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from automation_server.errors import Invalid
from automation_server.experiments.stats import srm_check


def test_flags_a_skewed_fifty_fifty_split() -> None:
    result = srm_check([5300, 4700], [50, 50])
    # Independent: (300^2 / 5000) * 2 = 36 with 1 degree of freedom.
    assert result.applicable and result.flagged
    assert result.statistic == pytest.approx(36.0)
    assert result.df == 1
    assert result.p_value == pytest.approx(sps.chi2.sf(36.0, 1), rel=1e-9)


def test_does_not_flag_a_fair_split() -> None:
    result = srm_check([5030, 4970], [50, 50])
    assert result.applicable and not result.flagged
    assert result.p_value is not None and result.p_value > 0.5


def test_expected_counts_follow_unequal_weights() -> None:
    fair = srm_check([5000, 2500, 2500], [2, 1, 1])
    assert fair.applicable and not fair.flagged
    assert fair.statistic == pytest.approx(0.0)
    # The same counts against equal weights are a gross mismatch.
    assert srm_check([5000, 2500, 2500], [1, 1, 1]).flagged


def test_zero_weight_variant_without_runs_is_left_out() -> None:
    result = srm_check([5300, 0, 4700], [50, 0, 50])
    assert result.df == 1
    assert result.statistic == pytest.approx(36.0)


def test_runs_on_a_zero_weight_variant_are_a_mismatch() -> None:
    result = srm_check([500, 3, 500], [50, 0, 50])
    assert result.flagged
    assert result.p_value == 0.0
    json.dumps(result.to_json(), allow_nan=False)


def test_not_applicable_with_a_single_weighted_variant() -> None:
    result = srm_check([900, 0], [100, 0])
    assert not result.applicable and not result.flagged
    assert result.p_value is None


def test_not_applicable_while_expected_counts_are_small() -> None:
    assert not srm_check([3, 1], [1, 1]).applicable
    assert not srm_check([990, 10], [999, 1]).applicable  # expected 1 run on the small side
    assert srm_check([6, 4], [1, 1]).applicable


def test_fair_random_assignment_is_flagged_at_about_the_threshold_rate() -> None:
    # Under a correct 70/30 assignment the p-value is uniform: P(p < 0.05) ~ 5%.
    rng = np.random.default_rng(99)
    draws = rng.multinomial(2000, [0.7, 0.3], size=2000)
    rate = np.mean([srm_check(list(map(int, d)), [70, 30], threshold=0.05).flagged for d in draws])
    assert 0.03 < rate < 0.07


def test_result_serialises_to_strict_json() -> None:
    payload = srm_check([5300, 4700], [1, 1]).to_json()
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload
    assert payload["threshold"] == 0.001


@pytest.mark.parametrize(
    ("observed", "weights"), [([1, 2], [1]), ([-1, 2], [1, 1]), ([1, 2], [1, -1])]
)
def test_rejects_malformed_input(observed: list[int], weights: list[float]) -> None:
    with pytest.raises(Invalid):
        srm_check(observed, weights)
