"""Address allocation for pods and Services inside one cluster's 127.N.0.0/16.

Pods get 127.N.1.1-127.N.127.254 and Services 127.N.128.1-127.N.255.254 (docs/internals.md).
Addresses whose last byte is 0 or 255 are skipped so that no address looks like a network or
broadcast address to a reader. Allocation is next-fit (a cursor that moves on), so an address that
was just released is not handed out again at once: a stale connection to a dead pod then fails
instead of reaching a stranger.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


class RangeExhausted(Exception):
    """Every address of the range is in use."""


class IPRange:
    """An allocator over an inclusive range of IPv4 addresses."""

    def __init__(self, first: str, last: str) -> None:
        self._first = int(ipaddress.IPv4Address(first))
        self._last = int(ipaddress.IPv4Address(last))
        self._used: set[int] = set()
        self._cursor = self._first

    def __repr__(self) -> str:
        first, last = ipaddress.IPv4Address(self._first), ipaddress.IPv4Address(self._last)
        return f"<IPRange {first}-{last} [{len(self._used)} used]>"

    def contains(self, ip: str) -> bool:
        try:
            value = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return False
        return self._first <= value <= self._last and _usable(value)

    def in_use(self, ip: str) -> bool:
        return self.contains(ip) and int(ipaddress.IPv4Address(ip)) in self._used

    def reserve(self, ip: str) -> None:
        """Mark ``ip`` as used (e.g. one recorded in the store before a restart)."""
        if self.contains(ip):
            self._used.add(int(ipaddress.IPv4Address(ip)))

    def release(self, ip: str) -> None:
        if self.contains(ip):
            self._used.discard(int(ipaddress.IPv4Address(ip)))

    def sync(self, used: Iterable[str]) -> None:
        """Replace the used set with ``used`` (the addresses the store says are taken)."""
        self._used = {int(ipaddress.IPv4Address(ip)) for ip in used if self.contains(ip)}

    def allocate(self) -> str:
        size = self._last - self._first + 1
        value = self._cursor
        for _ in range(size):
            if value > self._last:
                value = self._first
            if _usable(value) and value not in self._used:
                self._used.add(value)
                self._cursor = value + 1
                return str(ipaddress.IPv4Address(value))
            value += 1
        raise RangeExhausted(f"no free address in {self!r}")


def _usable(value: int) -> bool:
    return value & 0xFF not in (0, 255)


def pod_range(index: int) -> IPRange:
    return IPRange(f"127.{index}.1.1", f"127.{index}.127.254")


def service_range(index: int) -> IPRange:
    return IPRange(f"127.{index}.128.1", f"127.{index}.255.254")
