"""Duration sketch: relative accuracy against numpy, exact merges, edge values."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from automation_server.errors import Invalid
from automation_server.experiments.sketch import (
    RELATIVE_ACCURACY,
    ZERO_BUCKET,
    bucket_index,
    bucket_value,
    merge,
    quantile,
    sketch,
)

# Bucket edges are powers of gamma; a value on an edge may land one bucket up by
# rounding, which moves it by a factor (1 + alpha) exactly, so allow a hair more.
TOLERANCE = RELATIVE_ACCURACY * (1 + 1e-9)
QS = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0]


def lognormal_durations(seed: int, size: int) -> np.ndarray:
    # Run durations: median about 800 ms with a long right tail.
    return np.random.default_rng(seed).lognormal(mean=math.log(800), sigma=1.5, size=size)


@given(st.floats(min_value=1.0, max_value=1e12, allow_nan=False))
def test_representative_is_within_relative_accuracy_of_every_value(value: float) -> None:
    represented = bucket_value(bucket_index(value))
    assert abs(represented - value) <= TOLERANCE * value


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quantiles_match_numpy_within_relative_accuracy(seed: int) -> None:
    values = lognormal_durations(seed, 20_000)
    counts = sketch(values.tolist())
    for q in QS:
        exact = float(np.quantile(values, q, method="lower"))
        estimate = quantile(counts, q)
        assert estimate is not None
        assert abs(estimate - exact) <= TOLERANCE * exact, q


def test_quantiles_bracket_numpy_linear_interpolation() -> None:
    values = lognormal_durations(4, 5_001)
    counts = sketch(values.tolist())
    for q in QS:
        linear = float(np.quantile(values, q))
        lower = float(np.quantile(values, q, method="lower"))
        higher = float(np.quantile(values, q, method="higher"))
        estimate = quantile(counts, q)
        assert estimate is not None
        assert lower * (1 - TOLERANCE) <= estimate <= higher * (1 + TOLERANCE)
        assert lower <= linear <= higher


def test_p50_and_p95_of_integer_millisecond_durations() -> None:
    # The server stores duration_ms as an integer.
    values = np.round(lognormal_durations(5, 3_000)).astype(int)
    counts = sketch(values.tolist())
    for q in (0.5, 0.95):
        exact = float(np.quantile(values, q, method="lower"))
        estimate = quantile(counts, q)
        assert estimate is not None
        assert abs(estimate - exact) <= TOLERANCE * exact


@given(
    st.lists(st.floats(min_value=0, max_value=1e8), max_size=200),
    st.lists(st.floats(min_value=0, max_value=1e8), max_size=200),
)
def test_merge_of_two_sketches_equals_sketch_of_union(
    left: list[float], right: list[float]
) -> None:
    assert merge(sketch(left), sketch(right)) == sketch(left + right)


def test_sql_sum_group_by_merges_like_the_sketch_of_all_runs() -> None:
    # The storage model: one row per (variant, revision, bucket_index) with a count.
    by_revision = {1: lognormal_durations(6, 700), 2: lognormal_durations(7, 900)}
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE d (variant TEXT, revision INT, bucket_index INT, count INT)")
    for revision, values in by_revision.items():
        rows = [("a", revision, i, c) for i, c in sketch(values.tolist()).items()]
        db.executemany("INSERT INTO d VALUES (?, ?, ?, ?)", rows)
    merged = dict(
        db.execute(
            "SELECT bucket_index, SUM(count) FROM d WHERE variant = 'a' GROUP BY bucket_index"
        ).fetchall()
    )
    everything = np.concatenate(list(by_revision.values()))
    assert merged == sketch(everything.tolist())
    exact = float(np.quantile(everything, 0.95, method="lower"))
    estimate = quantile(merged, 0.95)
    assert estimate is not None
    assert abs(estimate - exact) <= TOLERANCE * exact


def test_empty_sketch_has_no_quantile() -> None:
    assert quantile({}, 0.5) is None
    assert quantile({3: 0, 7: 0}, 0.95) is None


def test_zero_and_sub_millisecond_durations_share_the_zero_bucket() -> None:
    assert bucket_index(0.0) == bucket_index(0.4) == bucket_index(0.999) == ZERO_BUCKET
    assert bucket_value(ZERO_BUCKET) == 0.0
    assert bucket_index(1.0) != ZERO_BUCKET
    assert quantile(sketch([0, 0, 0]), 0.5) == 0.0


def test_zeros_take_their_share_of_the_ranks() -> None:
    counts = sketch([0] * 60 + [1000] * 40)
    assert quantile(counts, 0.5) == 0.0
    high = quantile(counts, 0.95)
    assert high is not None
    assert abs(high - 1000) <= TOLERANCE * 1000


def test_single_value_is_every_quantile() -> None:
    counts = sketch([1234.0])
    for q in (0.0, 0.5, 1.0):
        estimate = quantile(counts, q)
        assert estimate is not None
        assert abs(estimate - 1234.0) <= TOLERANCE * 1234.0


def test_a_day_long_range_needs_about_a_thousand_buckets() -> None:
    assert bucket_index(24 * 3600 * 1000) < 1000
    values = np.geomspace(1, 24 * 3600 * 1000, 100_000)
    assert len(sketch(values.tolist())) <= 1000


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_rejects_negative_and_non_finite_durations(value: float) -> None:
    with pytest.raises(Invalid):
        bucket_index(value)


@pytest.mark.parametrize("q", [-0.1, 1.5])
def test_rejects_quantile_outside_unit_interval(q: float) -> None:
    with pytest.raises(Invalid):
        quantile({1: 1}, q)


def test_rejects_negative_counts() -> None:
    with pytest.raises(Invalid):
        quantile({1: 3, 2: -1}, 0.5)
