"""Compare two load-test results: percentile deltas with bootstrap confidence intervals.

Two runs never give identical percentiles; the question is whether B is slower than A by more than
noise. For each percentile we bootstrap from the stored histograms: a resample of n values from a
histogram has, as its p-th percentile, the histogram's quantile function at U(r), the r-th smallest
of n uniforms (r = ceil(p·n)), and U(r) ~ Beta(r, n − r + 1). Drawing that Beta variable is exact and
costs one draw per replicate, so thousands of replicates of a million-sample run take milliseconds.

Inputs are Fortio JSON results; meshpilot's own files carry exact HDR histograms
(``HDRHistograms``), Fortio's are rebuilt from their coarser ``DurationHistogram.Data``.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

from meshpilot.bench.histogram import CompactHistogram, Histogram, HistogramData


class CompareError(Exception):
    pass


@dataclass
class RunSummary:
    path: str
    histogram: Histogram
    errors: int
    total: int
    qps: float
    exact: bool  # histogram from HDR buckets (True) or rebuilt from Fortio's Data (False)

    @property
    def error_rate(self) -> float:
        return self.errors / self.total if self.total else 0.0


def load_result(path: str | Path) -> RunSummary:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except OSError as exc:
        raise CompareError(f"{p}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise CompareError(f"{p}:{exc.lineno}: not JSON: {exc.msg}") from None
    if not isinstance(doc, dict) or "DurationHistogram" not in doc:
        raise CompareError(f"{p}: not a Fortio/meshpilot result (no DurationHistogram)")
    hdr = (doc.get("HDRHistograms") or {}).get("DurationHistogram")
    try:
        if hdr:
            compact: CompactHistogram = hdr
            h = Histogram.from_compact(compact)
            exact = True
        else:
            data: HistogramData = doc["DurationHistogram"]
            h = Histogram.from_fortio(data)
            exact = False
    except (KeyError, TypeError, ValueError) as exc:
        raise CompareError(f"{p}: invalid DurationHistogram: {exc}") from None
    if not h.count:
        raise CompareError(f"{p}: the run has no samples")
    codes: dict[str, Any] = doc.get("RetCodes") or {}
    total = sum(int(n) for n in codes.values()) or h.count
    errors = sum(int(n) for code, n in codes.items() if not 200 <= int(code) < 300)
    return RunSummary(str(p), h, errors, total, float(doc.get("ActualQPS", 0.0)), exact)


@dataclass
class PercentileDelta:
    percentile: float
    a: float
    b: float
    delta: float  # relative: (b - a) / a
    low: float  # confidence interval of the relative delta
    high: float
    verdict: str  # "regression" | "improvement" | "no significant change"


@dataclass
class Comparison:
    deltas: list[PercentileDelta]
    error_a: float
    error_b: float
    error_low: float
    error_high: float
    error_verdict: str
    confidence: float
    tolerance: float

    @property
    def regression(self) -> bool:
        return any(d.verdict == "regression" for d in self.deltas) or self.error_verdict == "regression"


def bootstrap_percentile(h: Histogram, p: float, iterations: int, rng: random.Random) -> list[float]:
    q = h.quantile_function()
    n = h.count
    r = min(n, max(1, math.ceil(p / 100.0 * n - 1e-9)))
    return [q(rng.betavariate(r, n - r + 1)) for _ in range(iterations)]


def _quantile(sorted_values: list[float], u: float) -> float:
    i = min(len(sorted_values) - 1, max(0, int(u * len(sorted_values))))
    return sorted_values[i]


def compare(
    a: RunSummary,
    b: RunSummary,
    percentiles: list[float],
    tolerance: float = 0.05,
    error_tolerance: float = 0.001,
    confidence: float = 0.95,
    iterations: int = 2000,
    seed: int | None = 0,
) -> Comparison:
    """B against A: a percentile regresses when the whole confidence interval of its relative
    increase lies above ``tolerance``; the error rate regresses when the interval of its absolute
    increase lies above ``error_tolerance``."""
    rng = random.Random(seed)
    alpha = 1 - confidence
    deltas = []
    for p in percentiles:
        va = a.histogram.percentile(p)
        vb = b.histogram.percentile(p)
        sa = bootstrap_percentile(a.histogram, p, iterations, rng)
        sb = bootstrap_percentile(b.histogram, p, iterations, rng)
        rel = sorted((y - x) / x if x > 0 else 0.0 for x, y in zip(sa, sb, strict=True))
        low, high = _quantile(rel, alpha / 2), _quantile(rel, 1 - alpha / 2)
        if low > tolerance:
            verdict = "regression"
        elif high < -tolerance:
            verdict = "improvement"
        else:
            verdict = "no significant change"
        deltas.append(PercentileDelta(p, va, vb, (vb - va) / va if va > 0 else 0.0, low, high, verdict))
    # error rate: normal approximation of the difference of two proportions
    ea, eb = a.error_rate, b.error_rate
    se = math.sqrt(ea * (1 - ea) / max(a.total, 1) + eb * (1 - eb) / max(b.total, 1))
    z = NormalDist().inv_cdf(1 - alpha / 2)
    diff = eb - ea
    e_low, e_high = diff - z * se, diff + z * se
    if e_low > error_tolerance:
        e_verdict = "regression"
    elif e_high < -error_tolerance:
        e_verdict = "improvement"
    else:
        e_verdict = "no significant change"
    return Comparison(deltas, ea, eb, e_low, e_high, e_verdict, confidence, tolerance)
