"""The HDR histogram: exact merges across workers, bounded percentile error, lossless wire form."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from meshpilot.bench.histogram import (
    MAX_VALUE_UNITS,
    Histogram,
    bucket_bounds,
    bucket_index,
)

# latencies from 1 µs to 1 h, in seconds
latency = st.floats(min_value=1e-6, max_value=3600.0, allow_nan=False, allow_infinity=False)
samples = st.lists(latency, min_size=1, max_size=300)


def build(values: list[float]) -> Histogram:
    h = Histogram()
    for v in values:
        h.record(v)
    return h


@given(st.integers(min_value=0, max_value=MAX_VALUE_UNITS))
def test_every_value_falls_inside_its_bucket_and_buckets_are_narrow(units: int) -> None:
    low, high = bucket_bounds(bucket_index(units))
    assert low <= units < high
    # three significant digits: a bucket is at most 1/1024 of its lower bound wide (or 1 µs)
    assert high - low <= max(1, low / 1024)


@given(samples, samples, samples)
def test_merge_is_exact_and_order_independent(a: list[float], b: list[float], c: list[float]) -> None:
    whole = build(a + b + c)
    merged = build(a).merge(build(b)).merge(build(c))
    other_order = build(c).merge(build(a)).merge(build(b))
    for h in (merged, other_order):
        assert h.counts == whole.counts
        assert h.count == whole.count
        assert h.min == whole.min and h.max == whole.max
        assert math.isclose(h.sum, whole.sum, rel_tol=1e-9)
        for p in (1, 50, 90, 99, 99.9, 100):
            assert h.percentile(p) == whole.percentile(p)


@settings(max_examples=200)
@given(samples, st.floats(min_value=0.1, max_value=100.0))
def test_percentile_error_is_bounded(values: list[float], p: float) -> None:
    h = build(values)
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered) - 1e-9))
    exact = ordered[rank - 1]
    # < 0.1 % relative (bucket width / 2 ≈ 0.05 %), or 1 µs below 2 ms where buckets are 1 µs wide
    assert abs(h.percentile(p) - exact) <= max(1e-6, exact / 1000)


@given(samples)
def test_compact_form_round_trips(values: list[float]) -> None:
    h = build(values)
    back = Histogram.from_compact(h.to_compact())
    assert back.counts == h.counts
    assert (back.count, back.min, back.max, back.sum, back.sumsq) == (h.count, h.min, h.max, h.sum, h.sumsq)


def test_compact_form_is_compact() -> None:
    h = build([0.010 + i * 1e-6 for i in range(5000)])  # 5000 values, 5 ms wide
    compact = h.to_compact()
    assert len(compact["runs"]) == 1  # one run of consecutive buckets
    assert sum(len(r) for r in compact["runs"]) < 2500


def test_fortio_export_covers_min_to_max_with_cumulative_percent() -> None:
    h = build([0.001, 0.002, 0.002, 0.010])
    data = h.to_fortio([50, 99])
    assert data["Count"] == 4
    buckets = data["Data"]
    assert buckets is not None
    assert buckets[0]["Start"] == 0.001 and buckets[-1]["End"] == 0.010
    assert [b["Count"] for b in buckets] == [1, 2, 1]
    assert [b["Percent"] for b in buckets] == [25.0, 75.0, 100.0]
    assert data["Percentiles"][0] == {"Percentile": 50, "Value": h.percentile(50)}
    assert abs(h.percentile(50) - 0.002) < 1e-6


def test_values_beyond_an_hour_are_clamped_and_counted() -> None:
    h = build([7200.0, 0.5])
    assert h.clamped == 1
    assert h.max == 7200.0
    assert h.count == 2


def test_repr_shows_the_distribution() -> None:
    h = build([0.001] * 99 + [0.1])
    assert repr(h).startswith("<Histogram count=100 min=1.000ms p50=1.000ms")
