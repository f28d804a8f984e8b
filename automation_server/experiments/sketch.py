"""Mergeable quantile sketch for run durations (DDSketch's logarithmic mapping).

A sketch is a plain mapping ``bucket_index -> count``. That shape is what the
server stores, one row per ``(experiment, variant, revision, bucket_index)``, and
two sketches merge by adding counts per index, i.e. in SQL
``SELECT bucket_index, SUM(count) ... GROUP BY bucket_index``. Merging is exact:
the merge of two sketches *is* the sketch of the union of their values.

Mapping (Masson, Rim and Lee, "DDSketch: a fast and fully-mergeable quantile
sketch with relative-error guarantees", PVLDB 12(12), 2019, section 2):

    gamma = (1 + alpha) / (1 - alpha)
    index(x) = ceil(log(x) / log(gamma))         for x >= 1 ms
    bucket i holds the values in (gamma**(i-1), gamma**i]
    value(i) = 2 * gamma**i / (1 + gamma)        (the representative value)

Accuracy guarantee. For every ``x`` in bucket ``i``,
``|value(i) - x| <= alpha * x``: the representative sits at relative distance
exactly ``(gamma - 1) / (gamma + 1) = alpha`` from both bucket edges.
:func:`quantile` returns the representative of the bucket holding the
order statistic of rank ``floor(q * (n - 1))`` (0-based), so for durations
>= 1 ms the answer is within ``alpha`` (1%) relative error of
``numpy.quantile(values, q, method="lower")``. Values below 1 ms (including 0)
share :data:`ZERO_BUCKET` whose representative is 0, so there the error is
absolute and below 1 ms. With alpha = 1 %, a day (8.64e7 ms) is index 914:
a variant's sketch has at most about a thousand rows whatever its run count.

DataDog's ``ddsketch`` package (3.0.1) uses the same mapping
(``LogarithmicMapping`` with offset 0 gives the same indices and values up to
floating-point rounding at bucket edges), but its sketch objects keep
dense, offset stores and protobuf serialisation rather than a sparse
``index -> count`` map; the two formulas are all we need from it, so it is
not a dependency.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

from automation_server.errors import Invalid

RELATIVE_ACCURACY = 0.01
"""alpha: the relative error bound of every quantile of values >= 1 ms."""

GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)

ZERO_BUCKET = -1
"""Index of the bucket for values below 1 ms (0 included); values >= 1 ms have index >= 0."""

MIN_INDEXED_MS = 1.0
"""Smallest value that gets a logarithmic bucket; below it the zero bucket applies."""


def bucket_index(value_ms: float) -> int:
    """Index of the bucket that holds ``value_ms``: ``ceil(ln(x) / ln(gamma))``, or
    :data:`ZERO_BUCKET` for values below 1 ms."""
    if not math.isfinite(value_ms) or value_ms < 0:
        raise Invalid(
            f"duration must be a finite number >= 0 ms, got {value_ms!r}", code="invalid_duration"
        )
    if value_ms < MIN_INDEXED_MS:
        return ZERO_BUCKET
    return math.ceil(math.log(value_ms) / _LOG_GAMMA)


def bucket_value(index: int) -> float:
    """Representative value of bucket ``index``: ``2 * gamma**index / (1 + gamma)``
    (0.0 for :data:`ZERO_BUCKET`), within ``alpha`` of every value in the bucket."""
    if index == ZERO_BUCKET:
        return 0.0
    if index < 0:
        raise Invalid(f"no such duration bucket: {index}", code="invalid_bucket")
    return 2.0 * GAMMA**index / (1.0 + GAMMA)


def sketch(values_ms: Iterable[float]) -> dict[int, int]:
    """The sketch (``bucket_index -> count``) of a collection of durations."""
    return dict(Counter(bucket_index(v) for v in values_ms))


def merge(*sketches: Mapping[int, int]) -> dict[int, int]:
    """Sum of sketches per bucket index: the Python twin of ``SUM(count) GROUP BY``."""
    total: Counter[int] = Counter()
    for counts in sketches:
        total.update(counts)
    return dict(total)


def quantile(counts: Mapping[int, int], q: float) -> float | None:
    """The ``q``-quantile (0 <= q <= 1) of the values in the sketch, or None if it is empty.

    Rank convention as in DDSketch: the bucket holding the order statistic of
    0-based rank ``floor(q * (n - 1))``, i.e. ``numpy.quantile(..., method="lower")``
    up to the relative accuracy stated in the module docstring.
    """
    if not 0.0 <= q <= 1.0:
        raise Invalid(f"quantile must be in [0, 1], got {q!r}", code="invalid_quantile")
    if any(c < 0 for c in counts.values()):
        raise Invalid("sketch counts must be >= 0", code="invalid_sketch")
    n = sum(counts.values())
    if n == 0:
        return None
    rank = math.floor(q * (n - 1))
    seen = 0
    for index in sorted(counts):
        seen += counts[index]
        # Cumulative count above the rank means this bucket holds that order statistic.
        if seen > rank:
            return bucket_value(index)
    raise AssertionError("unreachable: the cumulative count reaches n > rank")
