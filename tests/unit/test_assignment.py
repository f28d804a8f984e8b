"""Variant choice: GrowthBook compatibility, stickiness, distribution and edge cases.

``tests/data/growthbook_cases.json`` is a trimmed, unchanged copy of the
``hash``, ``getBucketRange``, ``chooseVariation`` and ``getEqualWeights``
sections of GrowthBook's published SDK test cases
(https://github.com/growthbook/growthbook, ``packages/sdk-js/test/cases.json``,
commit 8f1db4456915a8e7b7faf23d5632ca7219d2f469, spec 0.8.0, MIT licence).
GrowthBook's own test harness compares ranges and weights after
``Math.floor(n * 1e8) / 1e8``; :func:`_floor8` does the same here.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chisquare

from automation_server.dispatch.assignment import (
    Assignment,
    bucket_ranges,
    bucket_ranges_from_fractions,
    choose_index,
    choose_variant,
    equal_weights,
    fnv1a32,
    gb_hash,
)
from automation_server.errors import Invalid

CASES: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "data" / "growthbook_cases.json").read_text("utf-8")
)


def _floor8(values: list[float]) -> list[float]:
    return [math.floor(v * 1e8) / 1e8 for v in values]


def _floor8_ranges(ranges: list[Any]) -> list[list[float]]:
    return [_floor8(list(r)) for r in ranges]


# --- published GrowthBook cases -------------------------------------------------


@pytest.mark.parametrize(("seed", "value", "version", "expected"), CASES["hash"])
def test_hash_matches_growthbook_published_cases(
    seed: str, value: str, version: int, expected: float | None
) -> None:
    assert gb_hash(seed, value, version) == expected


def test_published_cases_cover_both_versions_and_unknown_version() -> None:
    versions = {case[2] for case in CASES["hash"]}
    assert {1, 2} <= versions
    assert any(case[3] is None for case in CASES["hash"])


@pytest.mark.parametrize(("name", "args", "expected"), CASES["getBucketRange"])
def test_bucket_ranges_match_growthbook_published_cases(
    name: str, args: list[Any], expected: list[list[float]]
) -> None:
    num_variations, coverage, fractions = args
    ranges = bucket_ranges_from_fractions(fractions, coverage, num_variations=num_variations)
    assert _floor8_ranges(ranges) == _floor8_ranges(expected), name


@pytest.mark.parametrize(("name", "u", "ranges", "expected"), CASES["chooseVariation"])
def test_choose_index_matches_growthbook_published_cases(
    name: str, u: float, ranges: list[list[float]], expected: int
) -> None:
    result = choose_index([(r[0], r[1]) for r in ranges], u)
    assert result == (None if expected == -1 else expected), name


@pytest.mark.parametrize(("count", "expected"), CASES["getEqualWeights"])
def test_equal_weights_match_growthbook_published_cases(count: int, expected: list[float]) -> None:
    assert _floor8(equal_weights(count)) == _floor8(expected)


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        case
        for case in CASES["getBucketRange"]
        if case[1][1] == 1 and case[1][2] and len(case[1][2]) == case[1][0] and sum(case[1][2]) == 1
    ],
)
def test_integer_weights_give_growthbook_ranges_for_whole_coverage(
    name: str, args: list[Any], expected: list[list[float]]
) -> None:
    # e.g. [0.2, 0.3, 0.5] -> integer weights [2, 3, 5] must give the same ranges.
    fractions = args[2]
    integers = [round(f * 1000) for f in fractions]
    assert _floor8_ranges(bucket_ranges(integers)) == _floor8_ranges(expected), name


def test_sticky_bucket_equals_growthbook_hash_for_published_v2_cases() -> None:
    v2_cases = [c for c in CASES["hash"] if c[2] == 2]
    assert v2_cases
    for seed, key, _, expected in v2_cases:
        got = choose_variant([("a", 1), ("b", 1)], seed=seed, key=key)
        assert got.bucket == expected
        assert got.variant == ("a" if expected < 0.5 else "b")


# --- FNV-1a over UTF-16 code units ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    # Reference vectors from the FNV authors' test suite (ASCII, so bytes == code units).
    [("", 0x811C9DC5), ("a", 0xE40C292C), ("foobar", 0xBF9CF968)],
)
def test_fnv1a32_matches_reference_vectors(text: str, expected: int) -> None:
    assert fnv1a32(text) == expected


def test_fnv1a32_hashes_a_bmp_character_as_one_code_unit() -> None:
    # JavaScript's charCodeAt("é") is 0xE9: one step, not the two UTF-8 bytes.
    one_step = ((0x811C9DC5 ^ 0xE9) * 0x01000193) % 2**32
    assert fnv1a32("é") == one_step


def test_fnv1a32_hashes_an_astral_character_as_its_surrogate_pair() -> None:
    # "😀" is two UTF-16 code units in JavaScript, 0xD83D 0xDE00.
    assert fnv1a32("😀") == fnv1a32("\ud83d\ude00")
    assert fnv1a32("x😀y") == fnv1a32("x\ud83d\ude00y")
    # GrowthBook's Python SDK would XOR the code point 0x1F600 in one step instead.
    assert fnv1a32("😀") != ((0x811C9DC5 ^ 0x1F600) * 0x01000193) % 2**32


# --- sticky ---------------------------------------------------------------------


def test_same_key_always_gets_same_variant() -> None:
    variants = [("control", 50), ("terse", 30), ("verbose", 20)]
    first = [choose_variant(variants, seed="exp-1", key=f"user-{i}") for i in range(1000)]
    again = [choose_variant(variants, seed="exp-1", key=f"user-{i}") for i in range(1000)]
    assert [a.variant for a in first] == [a.variant for a in again]
    assert [a.bucket for a in first] == [a.bucket for a in again]
    assert all(a.method == "sticky" for a in first)
    assert {a.variant for a in first} == {"control", "terse", "verbose"}


def test_sticky_choice_depends_on_seed() -> None:
    variants = [("a", 1), ("b", 1)]
    keys = [f"k{i}" for i in range(200)]
    one = [choose_variant(variants, seed="exp-1", key=k).variant for k in keys]
    two = [choose_variant(variants, seed="exp-2", key=k).variant for k in keys]
    assert one != two


def test_sticky_keys_spread_by_weight() -> None:
    variants = [("a", 70), ("b", 30)]
    counts = Counter(
        choose_variant(variants, seed="exp", key=f"user-{i}").variant for i in range(20_000)
    )
    expected = [20_000 * 0.7, 20_000 * 0.3]
    assert chisquare([counts["a"], counts["b"]], expected).pvalue > 1e-6


def test_key_is_ignored_when_a_variant_is_forced() -> None:
    got = choose_variant([("a", 1), ("b", 1)], seed="exp", forced="b", key="user-1")
    assert (got.variant, got.method, got.bucket, got.key) == ("b", "forced", None, "user-1")


# --- random ---------------------------------------------------------------------


@pytest.mark.parametrize("weights", [[70, 30], [1, 1, 2]])
def test_random_choices_follow_weights(weights: list[int]) -> None:
    variants = [(f"v{i}", w) for i, w in enumerate(weights)]
    draws = 20_000
    counts = Counter(choose_variant(variants, seed="exp").variant for _ in range(draws))
    observed = [counts[name] for name, _ in variants]
    expected = [draws * w / sum(weights) for w in weights]
    assert chisquare(observed, expected).pvalue > 1e-6


def test_random_bucket_has_full_float_precision() -> None:
    buckets = [choose_variant([("a", 1)], seed="exp").bucket for _ in range(50)]
    assert all(b is not None and 0 <= b < 1 for b in buckets)
    assert len(set(buckets)) == 50
    # Not quantised to GrowthBook's 1/10000 hash steps.
    assert any(b is not None and b * 10_000 != int(b * 10_000) for b in buckets)


def test_random_uses_the_given_generator() -> None:
    got = choose_variant([("a", 1), ("b", 3)], seed="exp", rng=lambda: 0.3)
    assert (got.variant, got.method, got.bucket, got.key) == ("b", "random", 0.3, None)


def test_rejects_generator_value_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="outside"):
        choose_variant([("a", 1)], seed="exp", rng=lambda: 1.0)


def test_weight_zero_variant_is_never_chosen() -> None:
    variants = [("off", 0), ("a", 1), ("off2", 0), ("b", 1), ("off3", 0)]
    chosen = {choose_variant(variants, seed="exp").variant for _ in range(2000)}
    chosen |= {choose_variant(variants, seed="exp", key=f"k{i}").variant for i in range(2000)}
    assert chosen == {"a", "b"}


# --- forced and errors ----------------------------------------------------------


def test_forced_variant_with_weight_zero_is_chosen() -> None:
    got = choose_variant([("a", 1), ("shadow", 0)], seed="exp", forced="shadow")
    assert (got.variant, got.method, got.bucket) == ("shadow", "forced", None)


def test_forced_unknown_variant_raises_invalid() -> None:
    with pytest.raises(Invalid) as caught:
        choose_variant([("a", 1)], seed="exp", forced="nope")
    assert caught.value.code == "unknown_variant"
    assert caught.value.field == "variant"
    assert caught.value.detail == "variant: unknown variant 'nope'"


@pytest.mark.parametrize("variants", [[("a", 0), ("b", 0)], []])
def test_all_zero_weights_raise_invalid(variants: list[tuple[str, int]]) -> None:
    with pytest.raises(Invalid) as caught:
        choose_variant(variants, seed="exp")
    assert caught.value.code == "no_weighted_variant"
    with pytest.raises(Invalid):
        bucket_ranges([w for _, w in variants])


def test_negative_weight_raises_invalid() -> None:
    with pytest.raises(Invalid) as caught:
        choose_variant([("a", 2), ("b", -1)], seed="exp")
    assert caught.value.code == "invalid_weight"


def test_duplicate_variant_names_raise_invalid() -> None:
    with pytest.raises(Invalid) as caught:
        choose_variant([("a", 1), ("a", 2)], seed="exp")
    assert caught.value.code == "duplicate_variant"


# --- record shape ---------------------------------------------------------------


def test_to_json_has_the_run_record_assignment_shape() -> None:
    got = choose_variant([("control", 50), ("terse-prompt", 50)], seed="exp", key="user-7")
    record = got.to_json()
    assert list(record) == ["method", "bucket", "key", "weights"]
    assert record["method"] == "sticky"
    assert record["key"] == "user-7"
    assert record["bucket"] == gb_hash("exp", "user-7")
    assert list(record["weights"].items()) == [("control", 50), ("terse-prompt", 50)]  # type: ignore[attr-defined]
    assert json.loads(json.dumps(record)) == record


def test_assignment_is_immutable() -> None:
    got = Assignment("a", "forced", None, None, {"a": 1})
    with pytest.raises(AttributeError):
        got.variant = "b"  # type: ignore[misc]


# --- properties -----------------------------------------------------------------

weight_lists = st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=12).filter(
    lambda ws: sum(ws) > 0
)


@given(weight_lists)
def test_ranges_are_contiguous_from_zero_to_one(weights: list[int]) -> None:
    ranges = bucket_ranges(weights)
    assert len(ranges) == len(weights)
    assert ranges[0][0] == 0.0
    for (_, prev_end), (start, _) in itertools.pairwise(ranges):
        assert start == prev_end
    for (start, end), weight in zip(ranges, weights, strict=True):
        assert start <= end
        assert (start == end) == (weight == 0)
    assert abs(ranges[-1][1] - 1.0) <= len(weights) * 2**-52


@given(weight_lists, st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_every_bucket_maps_to_a_weighted_variant(weights: list[int], u: float) -> None:
    variants = [(f"v{i}", w) for i, w in enumerate(weights)]
    for bucket in (u, math.nextafter(1.0, 0.0), bucket_ranges(weights)[-1][1]):
        if not bucket < 1.0:
            continue
        got = choose_variant(variants, seed="exp", rng=functools.partial(float, bucket))
        assert dict(variants)[got.variant] > 0
        index = choose_index(bucket_ranges(weights), bucket)
        if index is not None:
            assert got.variant == variants[index][0]


def test_bucket_in_float_sliver_below_one_goes_to_last_weighted_variant() -> None:
    weights = [1] * 10 + [0]
    last_end = bucket_ranges(weights)[-1][1]
    assert last_end < 1.0  # ten additions of 0.1 fall short of 1.0
    assert choose_index(bucket_ranges(weights), last_end) is None
    variants = [(f"v{i}", w) for i, w in enumerate(weights)]
    assert choose_variant(variants, seed="exp", rng=lambda: last_end).variant == "v9"
