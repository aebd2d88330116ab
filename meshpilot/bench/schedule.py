"""When each request is meant to be sent: durations, stages and the open-loop send schedule.

A fixed-rate run is open loop: request number ``g`` (counting from 0 over the whole run, across all
workers) is due at the time ``t`` where the integral of the target rate reaches ``g``. With k6-style
stages the rate ramps linearly from one stage's target to the next, so the integral is piecewise
quadratic and each due time is the root of a quadratic. Worker ``w`` of ``W`` takes the requests
``w, w + W, w + 2W, ...``, which interleaves the workers evenly instead of making them fire together.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> float:
    """Seconds from a Go-style duration (``10s``, ``1m30s``, ``250ms``, ``1.5h``); a bare number
    means seconds. Raises ValueError with the offending text."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if value < 0 or math.isnan(value):
            raise ValueError(f"invalid duration {text!r}")
        return value
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            raise ValueError(f"invalid duration {text!r} (expected e.g. 10s, 1m30s, 250ms)")
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return total


def format_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` layout (``5s``, ``1m30s``, ``1.5s``, ``250ms``), as Fortio
    writes RequestedDuration."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1e3
        if ms >= 1:
            return f"{ms:g}ms"
        return f"{seconds * 1e6:g}µs"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{int(hours)}h"
    if hours or minutes:
        out += f"{int(minutes)}m"
    out += f"{round(secs, 9):g}s"
    return out


@dataclass(frozen=True)
class Stage:
    """Ramp linearly to ``target`` requests/s over ``duration`` seconds (k6's ``{duration, target}``)."""

    duration: float
    target: float

    @classmethod
    def parse(cls, text: str) -> Stage:
        duration_text, sep, target_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"invalid stage {text!r}: expected DURATION:TARGET_RPS such as 30s:100")
        try:
            duration = parse_duration(duration_text)
            target = float(target_text)
        except ValueError as exc:
            raise ValueError(f"invalid stage {text!r}: {exc}") from None
        if duration <= 0 or target < 0 or not math.isfinite(target):
            raise ValueError(f"invalid stage {text!r}: duration must be > 0 and target >= 0")
        return cls(duration, target)


class RateSchedule:
    """Piecewise-linear target rate r(t) and the due time of the g-th request (t where ∫r = g)."""

    def __init__(self, segments: list[tuple[float, float, float]]) -> None:
        # (duration, start_rate, end_rate); the last segment may have duration inf (constant rate)
        self.segments = segments
        self._starts: list[float] = []  # time at which each segment starts
        self._counts: list[float] = []  # requests due before each segment starts
        t = 0.0
        n = 0.0
        for duration, r0, r1 in segments:
            self._starts.append(t)
            self._counts.append(n)
            t += duration
            n += (r0 + r1) / 2 * duration if math.isfinite(duration) else 0.0
        self.duration = t
        self.total = n if math.isfinite(t) else math.inf

    @classmethod
    def constant(cls, rate: float, duration: float = math.inf) -> RateSchedule:
        return cls([(duration, rate, rate)])

    @classmethod
    def from_stages(cls, stages: list[Stage], start_rate: float = 0.0) -> RateSchedule:
        segments = []
        previous = start_rate
        for stage in stages:
            segments.append((stage.duration, previous, stage.target))
            previous = stage.target
        return cls(segments)

    def rate_at(self, t: float) -> float:
        for (duration, r0, r1), start in zip(self.segments, self._starts, strict=True):
            if t < start + duration:
                if not math.isfinite(duration):
                    return r0
                return r0 + (r1 - r0) * (t - start) / duration
        return self.segments[-1][2] if self.segments else 0.0

    def due(self, g: float) -> float:
        """Time (seconds from the start) at which request number ``g`` is due; inf if never."""
        for i, (duration, r0, r1) in enumerate(self.segments):
            n0 = self._counts[i]
            start = self._starts[i]
            if math.isfinite(duration):
                n_end = n0 + (r0 + r1) / 2 * duration
                if g >= n_end:
                    continue
            k = g - n0  # requests into this segment
            if not math.isfinite(duration) or r1 == r0:
                if r0 <= 0:
                    return math.inf
                return start + k / r0
            a = (r1 - r0) / (2 * duration)  # n(τ) = r0 τ + a τ²
            disc = r0 * r0 + 4 * a * k
            tau = (-r0 + math.sqrt(max(disc, 0.0))) / (2 * a)
            return start + min(max(tau, 0.0), duration)
        return math.inf
