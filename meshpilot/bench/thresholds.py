"""k6-style pass/fail thresholds for CI: ``p99<50ms``, ``errors<0.1%``, ``rps>1000``.

Latency metrics: ``p50 p90 p95 p99 p99.9`` (also k6's ``p(99)``), ``avg``, ``med``, ``min``, ``max``;
a bare number is in milliseconds, as in k6, or give a unit (``us``, ``ms``, ``s``). They are judged
on the coordinated-omission-corrected latency. ``errors`` is the fraction of non-2xx responses and
socket errors (``0.1%`` or ``0.001``); ``rps`` the achieved requests per second. A breach exits with
k6's code 99.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

EXIT_THRESHOLDS_FAILED = 99  # k6's exit code when thresholds are crossed

_EXPR = re.compile(
    r"^\s*(?P<metric>p\(\s*[\d.]+\s*\)|p[\d.]+|avg|med|min|max|errors|error_rate|rps)\s*"
    r"(?P<op><=|>=|<|>)\s*(?P<value>[\d.]+(?:e-?\d+)?)\s*(?P<unit>us|µs|ms|s|%)?\s*$"
)
_LATENCY_UNITS = {None: 1e-3, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "s": 1.0}


@dataclass(frozen=True)
class Threshold:
    text: str
    metric: str  # "p99.9", "avg", "med", "min", "max", "errors", "rps"
    op: str
    limit: float  # seconds for latencies, a fraction for errors, requests/s for rps

    @classmethod
    def parse(cls, text: str) -> Threshold:
        m = _EXPR.match(text)
        if not m:
            raise ValueError(
                f"invalid threshold {text!r}: expected e.g. 'p99<50ms', 'avg<=20', 'errors<0.1%', 'rps>100'"
            )
        metric = m.group("metric").replace("(", "").replace(")", "").replace(" ", "")
        if metric == "error_rate":
            metric = "errors"
        unit = m.group("unit")
        value = float(m.group("value"))
        if metric == "errors":
            if unit not in (None, "%"):
                raise ValueError(f"invalid threshold {text!r}: errors take a fraction or a percentage")
            limit = value / 100 if unit == "%" else value
        elif metric == "rps":
            if unit is not None:
                raise ValueError(f"invalid threshold {text!r}: rps takes a plain number")
            limit = value
        else:
            if unit == "%":
                raise ValueError(f"invalid threshold {text!r}: latencies take us, ms or s")
            if metric.startswith("p"):
                p = float(metric[1:])
                if not 0 <= p <= 100:
                    raise ValueError(f"invalid threshold {text!r}: percentile must be 0..100")
            limit = value * _LATENCY_UNITS[unit]
        return cls(text.strip(), metric, m.group("op"), limit)

    def holds(self, observed: float) -> bool:
        if self.op == "<":
            return observed < self.limit
        if self.op == "<=":
            return observed <= self.limit
        if self.op == ">":
            return observed > self.limit
        return observed >= self.limit


@dataclass(frozen=True)
class Verdict:
    threshold: Threshold
    observed: float
    ok: bool

    def describe(self) -> str:
        t = self.threshold
        if t.metric == "errors":
            shown = f"{self.observed * 100:.4g}%"
        elif t.metric == "rps":
            shown = f"{self.observed:.1f}"
        else:
            shown = f"{self.observed * 1e3:.3f}ms"
        return f"{'ok  ' if self.ok else 'FAIL'} {t.text} (observed {shown})"


def evaluate(
    thresholds: list[Threshold],
    percentile: Callable[[float], float],
    avg: float,
    min_: float,
    max_: float,
    error_rate: float,
    rps: float,
) -> list[Verdict]:
    """Judge each threshold; ``percentile`` maps p (0..100) to seconds."""
    verdicts = []
    for t in thresholds:
        if t.metric == "errors":
            observed = error_rate
        elif t.metric == "rps":
            observed = rps
        elif t.metric == "avg":
            observed = avg
        elif t.metric == "min":
            observed = min_
        elif t.metric == "max":
            observed = max_
        elif t.metric == "med":
            observed = percentile(50.0)
        else:
            observed = percentile(float(t.metric[1:]))
        verdicts.append(Verdict(t, observed, t.holds(observed)))
    return verdicts
