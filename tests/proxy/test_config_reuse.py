"""Pushes reuse unchanged clusters' balancers; removed clusters' counters are released."""

from __future__ import annotations

from typing import Any

import pytest

from meshpilot.proxy import lb
from meshpilot.proxy.config import Snapshot
from meshpilot.proxy.server import Identity, Proxy
from meshpilot.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE

KEYS = [f"user-{i}".encode() for i in range(500)]


def cluster(name: str, policy: str = "MAGLEV", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "EDS", "lb_policy": policy, **extra}


def cla(name: str, ips: list[str]) -> dict[str, Any]:
    return {
        "cluster_name": name,
        "endpoints": [{"lb_endpoints": [{"address": ip, "port": 8080} for ip in ips]}],
    }


def route(name: str, body: str) -> dict[str, Any]:
    return {
        "name": name,
        "virtual_hosts": [
            {
                "name": "vh",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": body}}],
            }
        ],
    }


IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]


def resources(ips: list[str] = IPS, policy: str = "MAGLEV", body: str = "a") -> dict[str, list[Any]]:
    return {
        CLUSTER_TYPE: [cluster("hashed", policy), cluster("other", "ROUND_ROBIN")],
        ENDPOINT_TYPE: [cla("hashed", ips), cla("other", ["10.1.0.1"])],
        ROUTE_TYPE: [route("80", body)],
    }


def mapping(s: Snapshot, name: str = "hashed") -> list[str]:
    b = s.clusters[name].balancer
    return [h.key for k in KEYS if (h := b.choose(k)) is not None]


@pytest.mark.parametrize("policy", ["MAGLEV", "RING_HASH"])
def test_unrelated_pushes_reuse_the_balancer_and_keep_every_key_on_its_host(policy):
    first = Snapshot.build(resources(policy=policy), {})
    before = mapping(first)
    # a route push, then a push that changes another cluster's endpoints and adds a cluster
    routes = Snapshot.build(resources(policy=policy, body="b"), {}, previous=first)
    res = resources(policy=policy, body="b")
    res[ENDPOINT_TYPE][1] = cla("other", ["10.1.0.1", "10.1.0.2"])
    res[CLUSTER_TYPE].append(cluster("new", "RING_HASH"))
    res[ENDPOINT_TYPE].append(cla("new", ["10.2.0.1"]))
    more = Snapshot.build(res, {}, previous=routes)
    for s in (routes, more):
        assert s.clusters["hashed"].balancer is first.clusters["hashed"].balancer
        assert s.clusters["hashed"].hosts is first.clusters["hashed"].hosts
        assert mapping(s) == before
    assert more.clusters["other"].balancer is not first.clusters["other"].balancer
    # and a reused balancer maps exactly as one built from scratch (another proxy process) would
    assert mapping(Snapshot.build(res, {})) == before


@pytest.mark.parametrize("policy", ["MAGLEV", "RING_HASH"])
def test_changed_endpoints_rebuild_the_balancer(policy):
    first = Snapshot.build(resources(policy=policy), {})
    grown = Snapshot.build(resources([*IPS, "10.0.0.5"], policy=policy), {}, previous=first)
    assert grown.clusters["hashed"].balancer is not first.clusters["hashed"].balancer
    assert "10.0.0.5:8080" in mapping(grown)
    shrunk = Snapshot.build(resources(IPS[:3], policy=policy), {}, previous=grown)
    assert shrunk.clusters["hashed"].balancer is not grown.clusters["hashed"].balancer
    assert set(mapping(shrunk)) == {f"{ip}:8080" for ip in IPS[:3]}
    # a changed weight is a changed endpoint set too
    res = resources(IPS[:3], policy=policy)
    res[ENDPOINT_TYPE][0]["endpoints"][0]["lb_endpoints"][0]["load_balancing_weight"] = 5
    weighted = Snapshot.build(res, {}, previous=shrunk)
    assert weighted.clusters["hashed"].balancer is not shrunk.clusters["hashed"].balancer
    assert mapping(weighted) == mapping(Snapshot.build(res, {}))


def test_changed_policy_rebuilds_the_balancer():
    first = Snapshot.build(resources(policy="MAGLEV"), {})
    ring = Snapshot.build(resources(policy="RING_HASH"), {}, previous=first)
    assert isinstance(ring.clusters["hashed"].balancer, lb.RingHash)


def test_strict_dns_keeps_its_resolved_hosts_while_the_names_stay():
    dns = {
        "name": "ext",
        "type": "STRICT_DNS",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {"endpoints": [{"lb_endpoints": [{"address": "localhost", "port": 80}]}]},
    }
    first = Snapshot.build({CLUSTER_TYPE: [dns]}, {})
    first.clusters["ext"].set_hosts([lb.Host("127.0.0.1", 80)])  # what the resolver does
    again = Snapshot.build({CLUSTER_TYPE: [dns], ROUTE_TYPE: [route("80", "x")]}, {}, previous=first)
    assert again.clusters["ext"].balancer is first.clusters["ext"].balancer
    assert [h.key for h in again.clusters["ext"].hosts] == ["127.0.0.1:80"]
    renamed = dict(
        dns, load_assignment={"endpoints": [{"lb_endpoints": [{"address": "x.test", "port": 80}]}]}
    )
    fresh = Snapshot.build({CLUSTER_TYPE: [renamed]}, {}, previous=again)
    assert fresh.clusters["ext"].hosts == []


async def test_removed_clusters_counters_are_released():
    p = Proxy(Identity("sidecar~127.0.0.1~t.default~default.svc.cluster.local", "127.0.0.1"))
    try:
        await p.apply(resources(), {})
        p.snapshot.clusters["hashed"].stats.upstream_rq_total = 7
        p.snapshot.clusters["other"].stats.upstream_rq_total = 3
        res = resources(body="b")
        res[CLUSTER_TYPE] = [cluster("hashed")]
        res[ENDPOINT_TYPE] = [cla("hashed", IPS)]
        await p.apply(res, {})
        counters = p.cluster_counters()
        assert counters["cluster.hashed.upstream_rq_total"] == 7  # kept across the push
        assert not any(k.startswith("cluster.other.") for k in counters)
        assert "other" not in p.cluster_stats
        await p.apply(resources(), {})  # pushed again: starts from zero, as in Envoy
        assert p.cluster_counters()["cluster.other.upstream_rq_total"] == 0
        assert p.cluster_counters()["cluster.hashed.upstream_rq_total"] == 7
    finally:
        await p.stop()
