"""Load balancers, one per Cluster.lb_policy, over the cluster's healthy endpoints.

Sans-IO: a balancer is built from a list of hosts once per pushed configuration and answers
``choose(hash_key)`` synchronously. The proxy counts requests in flight on each ``Host`` so that
LEAST_REQUEST can compare them.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, eq=False)
class Host:
    """One upstream endpoint; ``active`` is the number of requests in flight to it."""

    address: str
    port: int
    weight: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    active: int = 0
    pool: Any = field(default=None, repr=False)  # the proxy's connection pool for this address, cached
    fast_pool: Any = field(default=None, repr=False)  # the same, for the compiled fast lane's connections
    # (cluster name, Istio metric label key, its series table), cached by the proxy's telemetry.
    stats_key: tuple[str, tuple[str, ...], Any] | None = field(default=None, repr=False)
    key: str = field(default="", init=False)  # "address:port", computed once

    def __post_init__(self) -> None:
        self.key = f"{self.address}:{self.port}"

    def __repr__(self) -> str:
        return f"<Host {self.key} weight={self.weight} active={self.active}>"


def hash64(data: bytes) -> int:
    """A stable 64-bit hash: the same key picks the same host in every proxy process."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class LoadBalancer:
    policy = ""

    def __init__(self, hosts: Sequence[Host]) -> None:
        self.hosts = list(hosts)

    def choose(self, hash_key: bytes | None = None) -> Host | None:
        raise NotImplementedError


class RoundRobin(LoadBalancer):
    """Smooth weighted round robin (nginx's), which degenerates to plain rotation for equal weights."""

    policy = "ROUND_ROBIN"

    def __init__(self, hosts: Sequence[Host]) -> None:
        super().__init__(hosts)
        self._equal = len({h.weight for h in self.hosts}) <= 1
        self._next = random.randrange(len(self.hosts)) if self.hosts else 0
        self._current = [0] * len(self.hosts)
        self._total = sum(h.weight for h in self.hosts)

    def choose(self, hash_key: bytes | None = None) -> Host | None:
        n = len(self.hosts)
        if not n:
            return None
        if self._equal:
            i = self._next % n
            self._next = i + 1
            return self.hosts[i]
        best = 0
        for i, h in enumerate(self.hosts):
            self._current[i] += h.weight
            if self._current[i] > self._current[best]:
                best = i
        self._current[best] -= self._total
        return self.hosts[best]


class Random(LoadBalancer):
    policy = "RANDOM"

    def __init__(self, hosts: Sequence[Host]) -> None:
        super().__init__(hosts)
        self._cum: list[int] = []
        total = 0
        for h in self.hosts:
            total += h.weight
            self._cum.append(total)

    def choose(self, hash_key: bytes | None = None) -> Host | None:
        if not self.hosts:
            return None
        return self.hosts[bisect.bisect_right(self._cum, random.random() * self._cum[-1])]


class LeastRequest(LoadBalancer):
    """Envoy's default for LEAST_REQUEST: two random choices, the one with fewer requests in flight."""

    policy = "LEAST_REQUEST"

    def choose(self, hash_key: bytes | None = None) -> Host | None:
        n = len(self.hosts)
        if n == 0:
            return None
        if n == 1:
            return self.hosts[0]
        a, b = random.sample(self.hosts, 2)
        return a if a.active * b.weight <= b.active * a.weight else b


class RingHash(LoadBalancer):
    """Ketama-style ring: each host owns points in proportion to its weight; a key takes the next point."""

    policy = "RING_HASH"
    MIN_RING = 1024

    def __init__(self, hosts: Sequence[Host]) -> None:
        super().__init__(hosts)
        total = sum(h.weight for h in self.hosts) or 1
        points: list[tuple[int, int]] = []
        for idx, h in enumerate(self.hosts):
            n = max(1, round(self.MIN_RING * h.weight / total))
            for i in range(n):
                points.append((hash64(f"{h.key}_{i}".encode()), idx))
        points.sort()
        self._hashes = [p[0] for p in points]
        self._owners = [p[1] for p in points]

    def choose(self, hash_key: bytes | None = None) -> Host | None:
        if not self.hosts:
            return None
        if hash_key is None:
            return random.choice(self.hosts)
        i = bisect.bisect_left(self._hashes, hash64(hash_key))
        return self.hosts[self._owners[i % len(self._owners)]]


class Maglev(LoadBalancer):
    """Google's Maglev lookup table (prime size 65537), filled by each host's permutation in turn."""

    policy = "MAGLEV"
    TABLE_SIZE = 65537

    def __init__(self, hosts: Sequence[Host]) -> None:
        super().__init__(hosts)
        m = self.TABLE_SIZE
        table = [-1] * m
        if self.hosts:
            perms = []
            for h in self.hosts:
                offset = hash64(h.key.encode()) % m
                skip = hash64(b"skip" + h.key.encode()) % (m - 1) + 1
                perms.append((offset, skip))
            nxt = [0] * len(self.hosts)
            max_w = max(h.weight for h in self.hosts)
            credit = [0] * len(self.hosts)
            filled = 0
            while filled < m:
                for i, h in enumerate(self.hosts):
                    # Weighted Maglev: a host takes a turn each time its credit reaches the top weight.
                    credit[i] += h.weight
                    if credit[i] < max_w:
                        continue
                    credit[i] -= max_w
                    offset, skip = perms[i]
                    while True:
                        c = (offset + nxt[i] * skip) % m
                        nxt[i] += 1
                        if table[c] < 0:
                            break
                    table[c] = i
                    filled += 1
                    if filled == m:
                        break
        self._table = table

    def choose(self, hash_key: bytes | None = None) -> Host | None:
        if not self.hosts:
            return None
        if hash_key is None:
            return random.choice(self.hosts)
        return self.hosts[self._table[hash64(hash_key) % self.TABLE_SIZE]]


POLICIES: dict[str, type[LoadBalancer]] = {
    "ROUND_ROBIN": RoundRobin,
    "RANDOM": Random,
    "LEAST_REQUEST": LeastRequest,
    "RING_HASH": RingHash,
    "MAGLEV": Maglev,
    "CLUSTER_PROVIDED": RoundRobin,
}


def build(policy: str, hosts: Sequence[Host]) -> LoadBalancer:
    """A balancer over the hosts of the best (lowest) priority that has any, as Envoy fails over."""
    if hosts:
        best = min(h.priority for h in hosts)
        hosts = [h for h in hosts if h.priority == best]
    return POLICIES[policy](hosts)
