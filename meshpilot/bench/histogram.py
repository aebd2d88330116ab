"""Latency histograms with HDR-style log-linear buckets.

Fortio's fixed buckets (and its ``-r`` resolution flag) are a known source of wrong percentiles: a
value lands in a bucket hundreds of microseconds wide and the reported P99 is an interpolation.
Here every value is kept to better than three significant digits over 1 µs .. 1 h with no flag to
tune, and histograms from several worker processes merge *exactly* by adding counts, because all of
them share one bucket layout.

Layout (the same as HdrHistogram with 2048 sub-buckets and a unit of 1 µs): values below 2048 µs have
one bucket per microsecond; above that, each power of two is split into 1024 equal buckets, so a
bucket is never wider than 1/1024 (< 0.1 %) of its lower bound.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

UNIT = 1e-6  # seconds per recorded unit: 1 µs
SUB_BUCKETS = 2048
HALF = SUB_BUCKETS // 2
MAX_VALUE_UNITS = 3_600_000_000  # 1 hour in µs; larger values are clamped (and counted as such)


def bucket_index(units: int) -> int:
    """Index of the bucket that holds ``units`` (a non-negative integer number of µs)."""
    if units < SUB_BUCKETS:
        return units
    shift = units.bit_length() - 11
    return SUB_BUCKETS + (shift - 1) * HALF + ((units >> shift) - HALF)


def bucket_bounds(index: int) -> tuple[int, int]:
    """[low, high) of a bucket, in units."""
    if index < SUB_BUCKETS:
        return index, index + 1
    shift = (index - SUB_BUCKETS) // HALF + 1
    mantissa = (index - SUB_BUCKETS) % HALF + HALF
    return mantissa << shift, (mantissa + 1) << shift


MAX_INDEX = bucket_index(MAX_VALUE_UNITS)


class CompactHistogram(TypedDict):
    """Wire form shipped from workers to the parent and stored in result files.

    ``runs`` lists ``[first_index, count, count, ...]`` for each run of consecutive non-empty buckets,
    which keeps a typical latency distribution to a few hundred integers.
    """

    v: int
    unit: float
    count: int
    min: float
    max: float
    sum: float
    sumsq: float
    clamped: int
    runs: list[list[int]]


class HistogramBucket(TypedDict):
    Start: float
    End: float
    Percent: float
    Count: int


class HistogramPercentile(TypedDict):
    Percentile: float
    Value: float


class HistogramData(TypedDict, total=False):
    """Fortio's ``stats.HistogramData`` (all values in seconds, as Fortio writes them)."""

    Count: int
    Min: float
    Max: float
    Sum: float
    Avg: float
    StdDev: float
    Data: list[HistogramBucket] | None
    Percentiles: list[HistogramPercentile]


@dataclass
class Histogram:
    """Counts per bucket plus exact count/min/max/sum/sum of squares (for Fortio's avg ± stddev)."""

    counts: dict[int, int] = field(default_factory=dict)
    count: int = 0
    min: float = math.inf
    max: float = -math.inf
    sum: float = 0.0
    sumsq: float = 0.0
    clamped: int = 0

    def record(self, seconds: float) -> None:
        """Record one value in seconds. Negative values (clock skew) count as 0."""
        if seconds < 0.0:
            seconds = 0.0
        units = int(seconds * 1e6)
        if units > MAX_VALUE_UNITS:
            units = MAX_VALUE_UNITS
            self.clamped += 1
        index = bucket_index(units)
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        self.count += 1
        if seconds < self.min:
            self.min = seconds
        if seconds > self.max:
            self.max = seconds
        self.sum += seconds
        self.sumsq += seconds * seconds

    def merge(self, other: Histogram) -> Histogram:
        """Add ``other`` into this histogram (exact: same bucket layout) and return self."""
        counts = self.counts
        for index, n in other.counts.items():
            counts[index] = counts.get(index, 0) + n
        self.count += other.count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.sum += other.sum
        self.sumsq += other.sumsq
        self.clamped += other.clamped
        return self

    def copy(self) -> Histogram:
        return Histogram().merge(self)

    # -- statistics -------------------------------------------------------------------------

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else 0.0

    @property
    def stddev(self) -> float:
        if not self.count:
            return 0.0
        variance = self.sumsq / self.count - self.mean**2
        return math.sqrt(variance) if variance > 0 else 0.0

    def _sorted(self) -> list[tuple[int, int]]:
        return sorted(self.counts.items())

    def _representative(self, index: int) -> float:
        """The value reported for a bucket: its midpoint, kept inside the observed [min, max]."""
        low, high = bucket_bounds(index)
        # below 2048 µs a bucket is one whole µs (values were truncated): report the middle of it
        value = (low + high) / 2 * UNIT
        return min(max(value, self.min), self.max)

    def percentile(self, p: float) -> float:
        """Value at percentile ``p`` (0..100): the smallest recorded value with at least p % of
        the values at or below it, to within the bucket width (< 0.1 %)."""
        if not self.count:
            return 0.0
        if p <= 0:
            return self.min
        if p >= 100:
            return self.max
        rank = max(1, math.ceil(p / 100.0 * self.count - 1e-9))
        seen = 0
        for index, n in self._sorted():
            seen += n
            if seen >= rank:
                return self._representative(index)
        return self.max

    def percentiles(self, ps: Iterable[float]) -> list[float]:
        return [self.percentile(p) for p in ps]

    def quantile_function(self) -> QuantileFunction:
        """A fast inverse CDF, for bootstrap resampling."""
        return QuantileFunction(self)

    # -- export -----------------------------------------------------------------------------

    def buckets(self) -> Iterator[tuple[float, float, int]]:
        """(start, end, count) in seconds for each non-empty bucket, in order."""
        for index, n in self._sorted():
            low, high = bucket_bounds(index)
            yield low * UNIT, high * UNIT, n

    def to_fortio(self, percentiles: Sequence[float]) -> HistogramData:
        """Fortio's HistogramData: intervals cover [Min, Max] (first Start is Min, last End is Max)."""
        if not self.count:
            return {"Count": 0, "Min": 0.0, "Max": 0.0, "Sum": 0.0, "Avg": 0.0, "StdDev": 0.0, "Data": None}
        data: list[HistogramBucket] = []
        seen = 0
        for start, end, n in self.buckets():
            seen += n
            data.append({"Start": start, "End": end, "Percent": 100.0 * seen / self.count, "Count": n})
        # values come from float clocks: keep nanoseconds, as Fortio's Go durations do
        lo, hi = round(self.min, 9), round(self.max, 9)
        data[0]["Start"] = lo
        data[-1]["End"] = hi
        return {
            "Count": self.count,
            "Min": lo,
            "Max": hi,
            "Sum": round(self.sum, 9),
            "Avg": self.mean,
            "StdDev": self.stddev,
            "Data": data,
            "Percentiles": [{"Percentile": p, "Value": self.percentile(p)} for p in percentiles],
        }

    def to_compact(self) -> CompactHistogram:
        runs: list[list[int]] = []
        previous = -2
        for index, n in self._sorted():
            if index == previous + 1:
                runs[-1].append(n)
            else:
                runs.append([index, n])
            previous = index
        return {
            "v": 1,
            "unit": UNIT,
            "count": self.count,
            "min": self.min if self.count else 0.0,
            "max": self.max if self.count else 0.0,
            "sum": self.sum,
            "sumsq": self.sumsq,
            "clamped": self.clamped,
            "runs": runs,
        }

    @classmethod
    def from_compact(cls, data: CompactHistogram) -> Histogram:
        if data.get("v") != 1 or data.get("unit") != UNIT:
            raise ValueError(f"unsupported histogram encoding v={data.get('v')} unit={data.get('unit')}")
        h = cls()
        for run in data["runs"]:
            first = run[0]
            for offset, n in enumerate(run[1:]):
                if n:
                    h.counts[first + offset] = n
        h.count = int(data["count"])
        if sum(h.counts.values()) != h.count:
            raise ValueError("histogram counts do not add up to its count")
        if h.count:
            h.min = float(data["min"])
            h.max = float(data["max"])
        h.sum = float(data["sum"])
        h.sumsq = float(data["sumsq"])
        h.clamped = int(data.get("clamped", 0))
        return h

    @classmethod
    def from_fortio(cls, data: HistogramData) -> Histogram:
        """Rebuild from a Fortio ``HistogramData`` (any bucket layout): each interval's count goes
        to the bucket of its midpoint. Exact for our own files, an approximation for Fortio's."""
        h = cls()
        for bucket in data.get("Data") or []:
            mid = (bucket["Start"] + bucket["End"]) / 2
            units = min(int(max(mid, 0.0) * 1e6), MAX_VALUE_UNITS)
            index = bucket_index(units)
            h.counts[index] = h.counts.get(index, 0) + int(bucket["Count"])
        h.count = sum(h.counts.values())
        if h.count:
            h.min = float(data.get("Min", 0.0))
            h.max = float(data.get("Max", 0.0))
            h.sum = float(data.get("Sum", 0.0))
            std = float(data.get("StdDev", 0.0))
            mean = h.sum / h.count
            h.sumsq = (std * std + mean * mean) * h.count
        return h

    def __repr__(self) -> str:
        if not self.count:
            return "<Histogram empty>"
        return (
            f"<Histogram count={self.count} min={self.min * 1e3:.3f}ms p50={self.percentile(50) * 1e3:.3f}ms "
            f"p99={self.percentile(99) * 1e3:.3f}ms max={self.max * 1e3:.3f}ms buckets={len(self.counts)}>"
        )


class QuantileFunction:
    """Inverse of the empirical CDF of a histogram: ``q(u)`` for u in [0, 1)."""

    def __init__(self, histogram: Histogram) -> None:
        self._h = histogram
        self._cumulative: list[int] = []
        self._values: list[float] = []
        total = 0
        for index, n in histogram._sorted():
            total += n
            self._cumulative.append(total)
            self._values.append(histogram._representative(index))
        self._total = total

    def __call__(self, u: float) -> float:
        if not self._total:
            return 0.0
        rank = min(self._total, max(1, math.ceil(u * self._total)))
        return self._values[bisect.bisect_left(self._cumulative, rank)]


def merge_all(histograms: Iterable[Histogram]) -> Histogram:
    total = Histogram()
    for h in histograms:
        total.merge(h)
    return total


@dataclass
class ValueCounter:
    """Exact distribution of small integer values (response sizes in bytes): they take few distinct
    values, so keeping each one is both exact and cheap."""

    values: dict[int, int] = field(default_factory=dict)

    def record(self, value: int) -> None:
        self.values[value] = self.values.get(value, 0) + 1

    def merge(self, other: ValueCounter) -> ValueCounter:
        for v, n in other.values.items():
            self.values[v] = self.values.get(v, 0) + n
        return self

    @property
    def count(self) -> int:
        return sum(self.values.values())

    def to_wire(self) -> list[list[int]]:
        return [[v, n] for v, n in sorted(self.values.items())]

    @classmethod
    def from_wire(cls, pairs: list[list[int]]) -> ValueCounter:
        return cls({int(v): int(n) for v, n in pairs})

    def stats(self) -> tuple[int, float, float, float, float, float]:
        """count, avg, stddev, min, max, sum."""
        n = self.count
        if not n:
            return 0, 0.0, 0.0, 0.0, 0.0, 0.0
        total = float(sum(v * c for v, c in self.values.items()))
        mean = total / n
        var = sum(c * (v - mean) ** 2 for v, c in self.values.items()) / n
        return n, mean, math.sqrt(var), float(min(self.values)), float(max(self.values)), total

    def to_fortio(self) -> HistogramData:
        n, mean, std, lo, hi, total = self.stats()
        if not n:
            return {"Count": 0, "Min": 0.0, "Max": 0.0, "Sum": 0.0, "Avg": 0.0, "StdDev": 0.0, "Data": None}
        data: list[HistogramBucket] = []
        seen = 0
        for v, c in sorted(self.values.items()):
            seen += c
            data.append({"Start": float(v), "End": float(v), "Percent": 100.0 * seen / n, "Count": c})
        return {"Count": n, "Min": lo, "Max": hi, "Sum": total, "Avg": mean, "StdDev": std, "Data": data}
