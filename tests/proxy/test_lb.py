"""Load balancers: distribution, stickiness of hashing policies, least-request preference."""

from __future__ import annotations

import collections

from meshpilot.proxy import lb


def hosts(n: int, weights=None) -> list[lb.Host]:
    return [lb.Host(f"10.0.0.{i + 1}", 8080, (weights or [1] * n)[i]) for i in range(n)]


def test_round_robin_rotates_and_respects_weights():
    hs = hosts(3)
    b = lb.build("ROUND_ROBIN", hs)
    seq = [b.choose().address for _ in range(6)]
    assert seq[:3] == seq[3:] and len(set(seq[:3])) == 3
    w = lb.build("ROUND_ROBIN", hosts(2, [3, 1]))
    counts = collections.Counter(w.choose().address for _ in range(400))
    assert counts["10.0.0.1"] == 300 and counts["10.0.0.2"] == 100


def test_least_request_prefers_the_idle_host():
    hs = hosts(2)
    hs[0].active = 50
    b = lb.build("LEAST_REQUEST", hs)
    assert all(b.choose() is hs[1] for _ in range(50))


def test_random_covers_all_hosts():
    b = lb.build("RANDOM", hosts(4))
    assert len({b.choose().address for _ in range(400)}) == 4


def test_ring_hash_and_maglev_are_sticky_and_spread():
    for policy in ("RING_HASH", "MAGLEV"):
        b = lb.build(policy, hosts(3))
        for key in (b"alice", b"bob", b"carol"):
            first = b.choose(key)
            assert all(b.choose(key) is first for _ in range(20))
        spread = collections.Counter(b.choose(f"user-{i}".encode()).address for i in range(3000))
        assert len(spread) == 3 and min(spread.values()) > 500, (policy, spread)
        # a second balancer over the same hosts (another proxy process) agrees
        again = lb.build(policy, hosts(3))
        assert all(again.choose(f"k{i}".encode()).key == b.choose(f"k{i}".encode()).key for i in range(100))


def test_maglev_moves_few_keys_when_a_host_leaves():
    before = lb.build("MAGLEV", hosts(5))
    after = lb.build("MAGLEV", hosts(4))
    keys = [f"k{i}".encode() for i in range(2000)]
    moved = sum(
        before.choose(k).key != after.choose(k).key for k in keys if before.choose(k).address != "10.0.0.5"
    )
    assert moved < 0.1 * len(keys)


def test_priority_failover_uses_the_best_priority_present():
    hs = hosts(3)
    hs[0].priority = 1
    b = lb.build("ROUND_ROBIN", hs)
    assert {b.choose().address for _ in range(10)} == {"10.0.0.2", "10.0.0.3"}


def test_no_hosts():
    for policy in lb.POLICIES:
        assert lb.build(policy, []).choose(b"x") is None
