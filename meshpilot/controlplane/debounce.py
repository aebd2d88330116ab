"""Push debouncing: coalesce bursts of changes into one push.

A rollout touches Pods, Endpoints and ReplicaSets many times a second; pushing for each would
recompute and resend every affected proxy's config for nothing. Like istiod (PILOT_DEBOUNCE_AFTER
/ PILOT_DEBOUNCE_MAX) we push after ``quiet`` seconds without a new change, but never later than
``max_delay`` after the first change of the burst. The state machine takes the time as an
argument so tests drive it with a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Debouncer:
    quiet: float = 0.1
    max_delay: float = 1.0
    _first: float | None = None
    _last: float = 0.0
    _keys: set[str] = field(default_factory=set)
    _full: bool = False

    def add(self, keys: set[str] | None, now: float) -> None:
        """Record changed object keys (``None``: everything may have changed)."""
        if self._first is None:
            self._first = now
        self._last = now
        if keys is None:
            self._full = True
        else:
            self._keys |= keys

    @property
    def pending(self) -> bool:
        return self._first is not None

    def deadline(self) -> float | None:
        """When the pending burst must be pushed, or None when nothing is pending."""
        if self._first is None:
            return None
        return min(self._last + self.quiet, self._first + self.max_delay)

    def take(self, now: float) -> tuple[set[str] | None, float] | None:
        """The keys to push (None = full push) and when the burst started, once it is due."""
        due = self.deadline()
        if due is None or now < due:
            return None
        first = self._first
        assert first is not None
        keys: set[str] | None = None if self._full else set(self._keys)
        self._first, self._keys, self._full = None, set(), False
        return keys, first
