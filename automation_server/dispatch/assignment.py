"""Variant choice: GrowthBook-compatible hashing and bucket ranges (DESIGN.md section 4).

Pure functions, no I/O. The server picks a run's variant here *before* anything
executes, and records the result (:meth:`Assignment.to_json`) on the run.

How a variant is chosen:

- The weights ``w_1..w_n`` (in variant order) become ranges on [0, 1) exactly as
  GrowthBook's ``getBucketRanges`` lays them out for coverage 1: shares
  ``w_i / sum(w)`` as floats, placed end to end by a running float sum, so the
  float rounding (and therefore every boundary) matches GrowthBook's SDKs.
- A number ``u`` in [0, 1) picks the first range with ``start <= u < end``
  (GrowthBook's ``chooseVariation``). ``u`` comes from:

  * ``forced``: the caller named the variant; no ``u`` (``bucket`` is None).
    A named variant wins over a key, and may have weight 0.
  * ``sticky``: ``u = gb_hash(seed, key, 2)``, GrowthBook's hash version 2.
  * ``random``: ``u`` from the operating system's CSPRNG at full float precision.

The ``seed`` is the caller's job: the automation's ``experiment_id``, or the
automation's id when it has no experiment. With the experiment id as seed, a
sticky key gets the same variant as GrowthBook's SDKs would give it for an
experiment with that key and the same weights.

One deliberate difference from GrowthBook: a running float sum can end a few
ulps below 1.0 (e.g. ten weights of 1 end at 0.9999999999999999). GrowthBook
would answer "no variation" for a ``u`` in that sliver; a dispatch must run
something, so :func:`choose_variant` gives it to the last weighted variant.
Hash-based ``u`` (multiples of 1/10000) never falls there.

Strings are hashed as GrowthBook's JavaScript SDK (the reference, whose test
cases we check against) does: over UTF-16 code units. GrowthBook's Python SDK
hashes code points (the same for text in the Basic Multilingual Plane, not for
e.g. emoji) and its Go SDK hashes UTF-8 bytes (different for any non-ASCII),
so for non-ASCII keys the SDKs themselves disagree.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from automation_server.errors import Invalid

__all__ = [
    "Assignment",
    "bucket_ranges",
    "bucket_ranges_from_fractions",
    "choose_index",
    "choose_variant",
    "equal_weights",
    "fnv1a32",
    "gb_hash",
]

Range = tuple[float, float]
Method = Literal["random", "sticky", "forced"]

_FNV_OFFSET_BASIS = 0x811C9DC5
_FNV_PRIME = 0x01000193
_UINT32_MASK = 0xFFFFFFFF

# GrowthBook falls back to equal weights when fractions do not add up to 1 within this.
_WEIGHT_SUM_TOLERANCE = 0.01

# SystemRandom reads os.urandom: cryptographically seeded, 53-bit floats in [0, 1).
_SYSTEM_RANDOM = random.SystemRandom()


def _utf16_code_units(text: str) -> Iterator[int]:
    """Yield the UTF-16 code units of ``text``, as JavaScript's ``charCodeAt`` sees them."""
    for char in text:
        point = ord(char)
        if point < 0x10000:
            # Includes lone surrogates, which a JS string may hold as well.
            yield point
        else:
            offset = point - 0x10000
            yield 0xD800 | (offset >> 10)
            yield 0xDC00 | (offset & 0x3FF)


def fnv1a32(text: str) -> int:
    """FNV-1a 32-bit hash of ``text``'s UTF-16 code units (GrowthBook's ``hashFnv32a``)."""
    value = _FNV_OFFSET_BASIS
    for unit in _utf16_code_units(text):
        value = ((value ^ unit) * _FNV_PRIME) & _UINT32_MASK
    return value


def gb_hash(seed: str, value: str, version: int = 2) -> float | None:
    """GrowthBook's ``hash()``: a number in [0, 1) for ``value``; None for an unknown version.

    Version 2 (ours) hashes twice to remove version 1's bias; version 1 is kept
    only so the published test cases can check :func:`fnv1a32`.
    """
    if version == 2:
        return _hash_v2(seed, value)
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def _hash_v2(seed: str, value: str) -> float:
    return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000


def equal_weights(count: int) -> list[float]:
    """GrowthBook's ``getEqualWeights``: ``count`` shares of ``1 / count`` (empty if count <= 0)."""
    if count <= 0:
        return []
    return [1 / count] * count


def bucket_ranges_from_fractions(
    fractions: Sequence[float] | None,
    coverage: float = 1.0,
    *,
    num_variations: int | None = None,
) -> list[Range]:
    """GrowthBook's ``getBucketRanges(numVariations, coverage, weights)`` for fractional weights.

    As in GrowthBook: coverage is clamped to [0, 1]; missing weights, a length
    other than ``num_variations`` (default ``len(fractions)``), or a sum outside
    1 +/- 0.01 fall back to equal weights; each range starts at the running sum
    of the earlier weights and spans ``coverage * weight``.
    """
    if num_variations is None:
        num_variations = 0 if fractions is None else len(fractions)
    coverage = min(max(coverage, 0.0), 1.0)
    weights = list(fractions) if fractions is not None else equal_weights(num_variations)
    if len(weights) != num_variations or not _sums_to_one(weights):
        weights = equal_weights(num_variations)

    ranges: list[Range] = []
    cumulative = 0.0
    for weight in weights:
        start = cumulative
        cumulative += weight
        ranges.append((start, start + coverage * weight))
    return ranges


def _sums_to_one(weights: Sequence[float]) -> bool:
    # A plain left-to-right float sum, as JavaScript's reduce() computes it.
    total = 0.0
    for weight in weights:
        total += weight
    return abs(total - 1.0) <= _WEIGHT_SUM_TOLERANCE


def bucket_ranges(weights: Sequence[int]) -> list[Range]:
    """Ranges on [0, 1) for integer weights: shares ``w_i / sum(w)``, coverage 1.

    Weight-0 variants get empty ranges. Raises :class:`Invalid` for a negative
    weight or when no weight is positive.
    """
    _check_weights(weights)
    total = sum(weights)
    return bucket_ranges_from_fractions([weight / total for weight in weights])


def _check_weights(weights: Sequence[int]) -> None:
    if any(weight < 0 for weight in weights):
        raise Invalid(
            "variants: weights must be 0 or more", field="variants", code="invalid_weight"
        )
    if not any(weight > 0 for weight in weights):
        raise Invalid(
            "variants: at least one variant needs a weight above 0",
            field="variants",
            code="no_weighted_variant",
        )


def choose_index(ranges: Sequence[Range], u: float) -> int | None:
    """GrowthBook's ``chooseVariation``: first ``i`` with ``start_i <= u < end_i``, else None."""
    for index, (start, end) in enumerate(ranges):
        if start <= u < end:
            return index
    return None


@dataclass(frozen=True)
class Assignment:
    """The variant chosen for a run and how it was chosen, as recorded on the run."""

    variant: str
    method: Method
    bucket: float | None
    key: str | None
    weights: dict[str, int]

    def to_json(self) -> dict[str, object]:
        """The run record's ``assignment`` object."""
        return {
            "method": self.method,
            "bucket": self.bucket,
            "key": self.key,
            "weights": dict(self.weights),
        }


def choose_variant(
    variants: Sequence[tuple[str, int]],
    *,
    seed: str,
    forced: str | None = None,
    key: str | None = None,
    rng: Callable[[], float] | None = None,
) -> Assignment:
    """Choose one of ``variants`` (``(name, weight)`` in variant order).

    ``seed`` is the experiment_id, or the automation id when the automation has
    no experiment. ``forced`` names the variant (wins over ``key``; weight 0 is
    allowed); ``key`` makes the choice sticky; otherwise ``u`` comes from ``rng``
    (default: the OS CSPRNG). Raises :class:`Invalid` for an unknown forced name,
    duplicate names, negative weights, or no positive weight.
    """
    names = [name for name, _ in variants]
    if len(set(names)) != len(names):
        raise Invalid("variants: names must be unique", field="variants", code="duplicate_variant")
    weights = dict(variants)
    _check_weights(list(weights.values()))

    if forced is not None:
        if forced not in weights:
            raise Invalid(
                f"variant: unknown variant '{forced}'", field="variant", code="unknown_variant"
            )
        return Assignment(forced, "forced", None, key, weights)

    method: Method
    if key is not None:
        method, u = "sticky", _hash_v2(seed, key)
    else:
        method, u = "random", (rng or _SYSTEM_RANDOM.random)()
    if not 0.0 <= u < 1.0:
        raise ValueError(f"bucket {u!r} is outside [0, 1)")
    index = _index_for(bucket_ranges(list(weights.values())), u)
    return Assignment(names[index], method, u, key, weights)


def _index_for(ranges: Sequence[Range], u: float) -> int:
    index = choose_index(ranges, u)
    if index is not None:
        return index
    # u sits in the few-ulp sliver a running float sum can leave below 1.0;
    # it belongs to the last variant that has a non-empty range.
    return max(i for i, (start, end) in enumerate(ranges) if end > start)
