"""The translator: registry + Istio config -> one proxy's listeners, routes, clusters, endpoints.

Every config produced here is checked against meshpilot.xds.types, and routing is asserted by
running requests through a reference implementation of Envoy's route matching (cp_helpers), so
the tests state Istio's semantics rather than the shape of our dicts.
"""

from __future__ import annotations

from typing import Any

import pytest
from cp_helpers import assert_valid, endpoints, istio, pod, resolve, route_clusters, service, target

from meshpilot.controlplane._util import ConfigError, parse_duration
from meshpilot.controlplane.mesh import parse_mesh
from meshpilot.controlplane.registry import Registry, Snapshot, parse_node_id, proxy_from_pod
from meshpilot.controlplane.translate import ProxyConfig, generate

PC = "productcatalog.production.svc.cluster.local"
FE = "frontend.production.svc.cluster.local"
RV = "reviews.other.svc.cluster.local"


def pc_pods() -> list[dict[str, Any]]:
    return [
        pod(
            "productcatalog-v1-5d9f8b7c6-abcde",
            "production",
            "127.1.1.10",
            {"app": "productcatalog", "version": "v1", "pod-template-hash": "5d9f8b7c6"},
            [8080],
            owner="productcatalog-v1-5d9f8b7c6",
            sa="productcatalog",
        ),
        pod(
            "productcatalog-v1-5d9f8b7c6-fghij",
            "production",
            "127.1.1.11",
            {"app": "productcatalog", "version": "v1", "pod-template-hash": "5d9f8b7c6"},
            [8080],
            owner="productcatalog-v1-5d9f8b7c6",
            sa="productcatalog",
        ),
        pod(
            "productcatalog-v2-7f6d5c4b3-klmno",
            "production",
            "127.1.1.12",
            {"app": "productcatalog", "version": "v2", "pod-template-hash": "7f6d5c4b3"},
            [8080],
            owner="productcatalog-v2-7f6d5c4b3",
            sa="productcatalog",
        ),
    ]


FRONTEND = pod(
    "frontend-6b7c8d9e0f-zzzzz",
    "production",
    "127.1.1.20",
    {"app": "frontend", "version": "v1", "pod-template-hash": "6b7c8d9e0f"},
    [8080],
    owner="frontend-6b7c8d9e0f",
    sa="frontend",
    annotations={"meshpilot.io/app-ports": "8080=15180"},
)
REVIEWS_POD = pod(
    "reviews-1", "other", "127.1.1.30", {"app": "reviews"}, [9080], env=[{"name": "PORT", "value": "19080"}]
)


def snapshot(**extra: Any) -> Snapshot:
    pcs = pc_pods()
    base: dict[str, Any] = {
        "services": [
            service("productcatalog", "production", [("http", 8080, 8080)], "127.1.128.10"),
            service("frontend", "production", [("http", 80, 8080)], "127.1.128.11"),
            service("reviews", "other", [("http", 9080, 9080)], "127.1.128.12"),
        ],
        "endpoints": [
            endpoints("productcatalog", "production", pcs, [("http", 8080)]),
            endpoints("frontend", "production", [FRONTEND], [("http", 8080)]),
            endpoints("reviews", "other", [REVIEWS_POD], [("http", 9080)]),
        ],
        "pods": [*pcs, FRONTEND, REVIEWS_POD],
    }
    for k, v in extra.items():
        if k in base and isinstance(v, list):
            base[k] = base[k] + v
        else:
            base[k] = v
    return Snapshot(**base)


def gen(snap: Snapshot | None = None, proxy_pod: dict[str, Any] = FRONTEND) -> ProxyConfig:
    snap = snap or snapshot()
    config = generate(Registry(snap), proxy_from_pod(proxy_pod))
    assert_valid(config)
    return config


def cluster(config: ProxyConfig, name: str) -> dict[str, Any]:
    return next(dict(c) for c in config.clusters if c["name"] == name)


def cla(config: ProxyConfig, name: str) -> list[tuple[str, int]]:
    (load,) = [e for e in config.endpoints if e["cluster_name"] == name]
    return sorted((ep["address"], ep["port"]) for group in load["endpoints"] for ep in group["lb_endpoints"])


def vhost(config: ProxyConfig, port: int, name: str) -> dict[str, Any]:
    rc = next(r for r in config.routes if r["name"] == str(port))
    return next(dict(v) for v in rc["virtual_hosts"] if v["name"] == name)


# --- default config (no Istio resources) ------------------------------------------------------------


def test_every_service_port_gets_an_eds_cluster_with_its_ready_endpoints() -> None:
    config = gen()
    c = cluster(config, f"outbound|8080||{PC}")
    assert c["type"] == "EDS"
    assert c["lb_policy"] == "LEAST_REQUEST"  # Istio's default
    assert c["metadata"]["istio"]["services"] == [
        {"host": PC, "name": "productcatalog", "namespace": "production"}
    ]
    assert cla(config, f"outbound|8080||{PC}") == [
        ("127.1.1.10", 8080),
        ("127.1.1.11", 8080),
        ("127.1.1.12", 8080),
    ]
    assert cla(config, f"outbound|9080||{RV}") == [("127.1.1.30", 9080)]
    names = {c["name"] for c in config.clusters}
    assert {"PassthroughCluster", "BlackHoleCluster", "InboundPassthroughClusterIpv4"} <= names


def test_endpoint_metadata_names_the_workload_for_telemetry() -> None:
    config = gen()
    (load,) = [e for e in config.endpoints if e["cluster_name"] == f"outbound|8080||{PC}"]
    md = {ep["address"]: ep["metadata"] for ep in load["endpoints"][0]["lb_endpoints"]}
    assert md["127.1.1.12"] == {
        "workload": "productcatalog-v2",
        "namespace": "production",
        "app": "productcatalog",
        "version": "v2",
        "service_account": "productcatalog",
        "canonical_service": "productcatalog",
        "canonical_revision": "v2",
        "cluster": "Kubernetes",
        "labels": {"app": "productcatalog", "version": "v2", "pod-template-hash": "7f6d5c4b3"},
    }


def test_not_ready_endpoints_are_not_sent() -> None:
    snap = snapshot()
    ep = snap.endpoints[0]
    ep["subsets"][0]["notReadyAddresses"] = ep["subsets"][0]["addresses"][2:]  # type: ignore[index]
    ep["subsets"][0]["addresses"] = ep["subsets"][0]["addresses"][:2]  # type: ignore[index]
    assert cla(gen(snap), f"outbound|8080||{PC}") == [("127.1.1.10", 8080), ("127.1.1.11", 8080)]


@pytest.mark.parametrize(
    "host",
    [
        "productcatalog",
        "productcatalog:8080",
        "productcatalog.production",
        "productcatalog.production:8080",
        "productcatalog.production.svc",
        "productcatalog.production.svc:8080",
        PC,
        f"{PC}:8080",
        "127.1.128.10",
        "127.1.128.10:8080",
        "PRODUCTCATALOG.production",
    ],
)
def test_hosts_resolve_like_kubernetes_dns(host: str) -> None:
    assert target(resolve(gen(), host, 8080, "/products")) == f"outbound|8080||{PC}"


def test_short_names_only_resolve_in_the_proxys_namespace() -> None:
    config = gen()
    assert target(resolve(config, "reviews.other", 9080)) == f"outbound|9080||{RV}"
    # "reviews" alone is not a name in production: it falls to the passthrough (ALLOW_ANY)
    assert target(resolve(config, "reviews", 9080)) == "PassthroughCluster"
    reviews_proxy = gen(proxy_pod=REVIEWS_POD)
    assert target(resolve(reviews_proxy, "reviews", 9080)) == f"outbound|9080||{RV}"


def test_default_route_has_istio_default_retries_and_no_timeout() -> None:
    route = resolve(gen(), "productcatalog", 8080)
    assert route is not None and route["name"] == "default"
    assert route["route"]["timeout"] == 0
    assert route["route"]["retry_policy"]["num_retries"] == 2
    assert route["route"]["retry_policy"]["retriable_status_codes"] == [503]


def test_unknown_hosts_pass_through_or_not_per_outbound_traffic_policy() -> None:
    allow = gen()
    assert target(resolve(allow, "example.com", 8080)) == "PassthroughCluster"
    listener = next(x for x in allow.listeners if x["name"] == "virtualOutbound")
    assert listener["cluster"] == "PassthroughCluster" and listener["port"] == 15001
    strict = gen(snapshot(mesh=parse_mesh("outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n")))
    assert resolve(strict, "example.com", 8080) is None  # no virtual host: the listener's fallback
    assert target(resolve(strict, "productcatalog", 8080)) == f"outbound|8080||{PC}"
    listener = next(x for x in strict.listeners if x["name"] == "virtualOutbound")
    assert listener["cluster"] == "BlackHoleCluster"  # the proxy answers 404 NR for unknown hosts


def test_sidecar_outbound_traffic_policy_overrides_the_mesh() -> None:
    sc = istio("Sidecar", "default", "production", {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}})
    assert resolve(gen(snapshot(sidecars=[sc])), "example.com", 8080) is None


# --- inbound -------------------------------------------------------------------------------------------


def test_inbound_listener_forwards_container_port_to_the_apps_internal_port() -> None:
    config = gen()
    listener = next(x for x in config.listeners if x["name"] == "127.1.1.20_8080")
    assert listener == {
        "name": "127.1.1.20_8080",
        "address": "127.1.1.20",
        "port": 8080,
        "traffic_direction": "INBOUND",
        "cluster": "inbound|8080||",
    }
    c = cluster(config, "inbound|8080||")
    assert c["type"] == "STATIC"
    assert c["load_assignment"]["endpoints"][0]["lb_endpoints"] == [{"address": "127.1.1.20", "port": 15180}]
    assert cla(config, "inbound|8080||") == [("127.1.1.20", 15180)]
    assert c["metadata"]["istio"]["services"] == [{"host": FE, "name": "frontend", "namespace": "production"}]


def test_inbound_internal_port_falls_back_to_the_port_env() -> None:
    config = gen(proxy_pod=REVIEWS_POD)
    assert cla(config, "inbound|9080||") == [("127.1.1.30", 19080)]


def test_node_id_round_trips() -> None:
    proxy = proxy_from_pod(FRONTEND)
    assert proxy.id == "sidecar~127.1.1.20~frontend-6b7c8d9e0f-zzzzz.production~production.svc.cluster.local"
    assert parse_node_id(proxy.id) == ("127.1.1.20", "frontend-6b7c8d9e0f-zzzzz", "production")
    with pytest.raises(ValueError):
        parse_node_id("router~x")


# --- VirtualService ------------------------------------------------------------------------------------


SUBSETS_DR = istio(
    "DestinationRule",
    "productcatalog",
    "production",
    {
        "host": "productcatalog",
        "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}],
    },
)


def vs(spec_http: list[dict[str, Any]], name: str = "productcatalog", **spec: Any) -> dict[str, Any]:
    return istio(
        "VirtualService", name, "production", {"hosts": ["productcatalog"], "http": spec_http, **spec}
    )


def test_weighted_split_between_subsets() -> None:
    split = vs(
        [
            {
                "route": [
                    {"destination": {"host": "productcatalog", "subset": "v1"}, "weight": 90},
                    {"destination": {"host": "productcatalog", "subset": "v2"}, "weight": 10},
                ]
            }
        ]
    )
    config = gen(snapshot(virtual_services=[split], destination_rules=[SUBSETS_DR]))
    assert target(resolve(config, "productcatalog", 8080)) == [
        (f"outbound|8080|v1|{PC}", 90),
        (f"outbound|8080|v2|{PC}", 10),
    ]
    assert cla(config, f"outbound|8080|v1|{PC}") == [("127.1.1.10", 8080), ("127.1.1.11", 8080)]
    assert cla(config, f"outbound|8080|v2|{PC}") == [("127.1.1.12", 8080)]
    route = resolve(config, "productcatalog", 8080)
    assert route is not None
    assert route["metadata"] == {
        "istio": {
            "config": "/apis/networking.istio.io/v1/namespaces/production/virtual-service/productcatalog"
        }
    }
    names = {c["name"] for c in config.clusters}
    assert set(route_clusters(config)) - {"PassthroughCluster"} <= names


def test_matches_first_match_wins_and_blocks_are_ored() -> None:
    rules = vs(
        [
            {
                "name": "v2-users",
                "match": [
                    {"headers": {"end-user": {"exact": "jason"}}},
                    {"queryParams": {"beta": {"exact": "1"}}},
                ],
                "route": [{"destination": {"host": "productcatalog", "subset": "v2"}}],
            },
            {
                "name": "api",
                "match": [{"uri": {"prefix": "/api"}, "method": {"exact": "POST"}}],
                "route": [{"destination": {"host": "reviews.other.svc.cluster.local"}}],
            },
            {
                "name": "exact",
                "match": [{"uri": {"exact": "/health"}}, {"uri": {"regex": "/items/[0-9]+"}}],
                "route": [{"destination": {"host": "productcatalog", "subset": "v2"}}],
            },
            {
                "name": "ci",
                "match": [{"uri": {"prefix": "/CASE"}, "ignoreUriCase": True}],
                "directResponse": {"status": 418},
            },
            {"name": "rest", "route": [{"destination": {"host": "productcatalog", "subset": "v1"}}]},
            {"name": "never", "route": [{"destination": {"host": "productcatalog", "subset": "v2"}}]},
        ]
    )
    config = gen(snapshot(virtual_services=[rules], destination_rules=[SUBSETS_DR]))
    v1, v2 = f"outbound|8080|v1|{PC}", f"outbound|8080|v2|{PC}"

    def go(path: str, method: str = "GET", **headers: str) -> Any:
        return target(resolve(config, "productcatalog:8080", 8080, path, method, headers))

    assert go("/", **{"end-user": "jason"}) == v2
    assert go("/", **{"end-user": "jasonx"}) == v1
    assert go("/x?beta=1") == v2
    assert go("/x?beta=12") == v1
    assert go("/api/items", "POST") == f"outbound|9080||{RV}"  # single-port service: its port
    assert go("/api/items", "GET") == v1
    assert go("/health") == v2
    assert go("/health/x") == v1
    assert go("/items/42") == v2
    assert go("/items/4x") == v1
    assert go("/case/x")["direct_response"] == {"status": 418}
    routes = vhost(config, 8080, f"{PC}:8080")["routes"]
    assert [r["name"] for r in routes][-1] == "rest"  # routes after a catch-all are dropped
    assert sum(r["name"] == "v2-users" for r in routes) == 2


def test_without_headers_authority_and_header_regex() -> None:
    rules = vs(
        [
            {
                "match": [{"withoutHeaders": {"x-canary": {}}, "authority": {"prefix": "productcatalog"}}],
                "route": [{"destination": {"host": "productcatalog", "subset": "v1"}}],
            },
            {
                "match": [{"headers": {"x-canary": {"regex": "yes|true"}}}],
                "route": [{"destination": {"host": "productcatalog", "subset": "v2"}}],
            },
        ]
    )
    config = gen(snapshot(virtual_services=[rules], destination_rules=[SUBSETS_DR]))
    assert target(resolve(config, "productcatalog", 8080)) == f"outbound|8080|v1|{PC}"
    assert (
        target(resolve(config, "productcatalog", 8080, headers={"x-canary": "true"}))
        == f"outbound|8080|v2|{PC}"
    )
    assert resolve(config, "productcatalog", 8080, headers={"x-canary": "no"}) is None  # 404 NR
    assert resolve(config, "127.1.128.10", 8080) is None  # authority prefix does not match


def test_source_labels_and_source_namespace_are_decided_per_proxy() -> None:
    rules = vs(
        [
            {
                "match": [{"sourceLabels": {"app": "frontend"}}],
                "route": [{"destination": {"host": "productcatalog", "subset": "v2"}}],
            },
            {"match": [{"sourceNamespace": "other"}], "directResponse": {"status": 403}},
            {"route": [{"destination": {"host": "productcatalog", "subset": "v1"}}]},
        ],
        exportTo=["*"],
    )
    snap = snapshot(virtual_services=[rules], destination_rules=[SUBSETS_DR])
    assert target(resolve(gen(snap), "productcatalog", 8080)) == f"outbound|8080|v2|{PC}"
    reviews = gen(snap, REVIEWS_POD)
    assert target(resolve(reviews, PC, 8080))["direct_response"]["status"] == 403
    v1_pod = pc_pods()[0]
    assert target(resolve(gen(snap, v1_pod), "productcatalog", 8080)) == f"outbound|8080|v1|{PC}"


def test_port_match_puts_routes_only_in_that_ports_table() -> None:
    two_ports = service("multi", "production", [("http", 80, 8080), ("admin", 9000, 9000)], "127.1.128.20")
    rules = istio(
        "VirtualService",
        "multi",
        "production",
        {
            "hosts": ["multi"],
            "http": [
                {"match": [{"port": 9000}], "directResponse": {"status": 403}},
                {"route": [{"destination": {"host": "multi"}}]},
            ],
        },
    )
    config = gen(snapshot(services=[two_ports], virtual_services=[rules]))
    assert target(resolve(config, "multi", 9000))["direct_response"]["status"] == 403
    # no destination port on a multi-port service: the port of the table being built
    assert target(resolve(config, "multi", 80)) == "outbound|80||multi.production.svc.cluster.local"


def test_rewrite_redirect_headers_timeout_retries_fault_mirror() -> None:
    rules = vs(
        [
            {
                "match": [{"uri": {"prefix": "/old"}}],
                "redirect": {"uri": "/new", "authority": "example.com", "redirectCode": 302},
            },
            {
                "match": [{"uri": {"prefix": "/v1/"}}],
                "rewrite": {"uri": "/", "authority": "backend"},
                "headers": {"request": {"set": {"x-a": "1"}, "add": {"x-b": "2"}, "remove": ["x-c"]}},
                "route": [
                    {
                        "destination": {"host": "productcatalog", "subset": "v1"},
                        "headers": {"response": {"set": {"x-served-by": "v1"}, "remove": ["server"]}},
                    }
                ],
                "timeout": "1.5s",
                "retries": {"attempts": 3, "perTryTimeout": "500ms", "retryOn": "5xx,connect-failure"},
                "fault": {
                    "delay": {"fixedDelay": "2s", "percentage": {"value": 10}},
                    "abort": {"httpStatus": 503, "percentage": {"value": 5.5}},
                },
                "mirror": {"host": "productcatalog", "subset": "v2"},
                "mirrorPercentage": {"value": 25},
            },
            {
                "match": [{"uri": {"regex": "/r/(.*)"}}],
                "rewrite": {"uriRegexRewrite": {"match": "/r/(.*)", "rewrite": "/\\1"}},
                "route": [
                    {
                        "destination": {"host": "productcatalog", "subset": "v1"},
                        "weight": 50,
                        "headers": {"request": {"add": {"x-w": "a"}}},
                    },
                    {"destination": {"host": "productcatalog", "subset": "v2"}, "weight": 50},
                ],
                "retries": {"attempts": 0},
            },
        ]
    )
    config = gen(snapshot(virtual_services=[rules], destination_rules=[SUBSETS_DR]))
    red = resolve(config, "productcatalog", 8080, "/old/x")
    assert red is not None and red["redirect"] == {
        "response_code": 302,
        "path_redirect": "/new",
        "host_redirect": "example.com",
    }
    r = resolve(config, "productcatalog", 8080, "/v1/items")
    assert r is not None
    action = r["route"]
    assert action["cluster"] == f"outbound|8080|v1|{PC}"
    assert action["prefix_rewrite"] == "/" and action["host_rewrite_literal"] == "backend"
    assert action["timeout"] == 1.5
    assert action["retry_policy"] == {
        "num_retries": 3,
        "retry_on": "5xx,connect-failure",
        "per_try_timeout": 0.5,
    }
    assert r["fault"] == {
        "delay": {"fixed_delay": 2.0, "percentage": 10.0},
        "abort": {"http_status": 503, "percentage": 5.5},
    }
    assert action["request_mirror_policies"] == [{"cluster": f"outbound|8080|v2|{PC}", "percentage": 25.0}]
    assert r["request_headers_to_add"] == [
        {"header": {"key": "x-a", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "x-b", "value": "2"}, "append_action": "APPEND_IF_EXISTS_OR_ADD"},
    ]
    assert r["request_headers_to_remove"] == ["x-c"]
    # a single destination's header edits apply at the route
    assert r["response_headers_to_add"] == [
        {"header": {"key": "x-served-by", "value": "v1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
    ]
    assert r["response_headers_to_remove"] == ["server"]
    rx = resolve(config, "productcatalog", 8080, "/r/abc")
    assert rx is not None
    assert rx["route"]["regex_rewrite"] == {"pattern": "/r/(.*)", "substitution": "/\\1"}
    assert rx["route"]["retry_policy"]["num_retries"] == 0
    wc = rx["route"]["weighted_clusters"]
    assert wc[0]["request_headers_to_add"] == [
        {"header": {"key": "x-w", "value": "a"}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}
    ]
    assert "request_headers_to_add" not in wc[1]


def test_oldest_virtual_service_wins_a_host_and_multi_host_vs_applies_to_each() -> None:
    old = istio(
        "VirtualService",
        "a-old",
        "production",
        {
            "hosts": ["productcatalog", "reviews.other.svc.cluster.local"],
            "http": [{"directResponse": {"status": 201}}],
        },
        created="2026-01-01T00:00:00Z",
    )
    new = istio(
        "VirtualService",
        "b-new",
        "production",
        {"hosts": ["productcatalog"], "http": [{"directResponse": {"status": 202}}]},
        created="2026-02-01T00:00:00Z",
    )
    config = gen(snapshot(virtual_services=[new, old]))
    assert target(resolve(config, "productcatalog", 8080))["direct_response"]["status"] == 201
    assert target(resolve(config, "reviews.other", 9080))["direct_response"]["status"] == 201


def test_virtual_service_for_a_host_outside_the_registry() -> None:
    ext = istio(
        "VirtualService",
        "ext",
        "production",
        {"hosts": ["api.example.com"], "http": [{"directResponse": {"status": 204}}]},
    )
    config = gen(
        snapshot(virtual_services=[ext], mesh=parse_mesh("outboundTrafficPolicy: {mode: REGISTRY_ONLY}"))
    )
    assert target(resolve(config, "api.example.com", 80))["direct_response"]["status"] == 204


def test_export_to_and_gateways_scope_virtual_services() -> None:
    private = vs([{"directResponse": {"status": 299}}], exportTo=["."])
    snap = snapshot(virtual_services=[private])
    assert target(resolve(gen(snap), "productcatalog", 8080))["direct_response"]["status"] == 299
    assert resolve(gen(snap, REVIEWS_POD), PC, 8080)["name"] == "default"  # type: ignore[index]
    gateway_only = vs([{"directResponse": {"status": 299}}], gateways=["istio-system/ingress"])
    assert (
        resolve(gen(snapshot(virtual_services=[gateway_only])), "productcatalog", 8080)["name"] == "default"
    )  # type: ignore[index]


def test_service_export_to_annotation_hides_it_from_other_namespaces() -> None:
    hidden = service(
        "secret",
        "production",
        [("http", 80, 8080)],
        "127.1.128.30",
        annotations={"networking.istio.io/exportTo": "."},
    )
    snap = snapshot(services=[hidden])
    assert any(c["name"] == "outbound|80||secret.production.svc.cluster.local" for c in gen(snap).clusters)
    assert not any("secret" in c["name"] for c in gen(snap, REVIEWS_POD).clusters)


def test_invalid_virtual_service_falls_back_to_default_route_with_a_warning() -> None:
    # invalid per the schema (the API server would refuse it), but a translator must survive it
    broken = istio(
        "VirtualService",
        "productcatalog",
        "production",
        {"hosts": ["productcatalog"], "http": [{"route": [{"destination": {}}]}]},
        valid=False,
    )
    config = gen(snapshot(virtual_services=[broken]))
    assert resolve(config, "productcatalog", 8080)["name"] == "default"  # type: ignore[index]
    assert config.warnings and "destination.host" in config.warnings[0]


# --- DestinationRule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lb", "policy"),
    [
        ({"simple": "ROUND_ROBIN"}, "ROUND_ROBIN"),
        ({"simple": "LEAST_REQUEST"}, "LEAST_REQUEST"),
        ({"simple": "RANDOM"}, "RANDOM"),
        ({"consistentHash": {"httpHeaderName": "x-user"}}, "RING_HASH"),
        ({"consistentHash": {"httpHeaderName": "x-user", "maglev": {"tableSize": 65537}}}, "MAGLEV"),
    ],
)
def test_load_balancer_policy(lb: dict[str, Any], policy: str) -> None:
    dr = istio("DestinationRule", "pc", "production", {"host": PC, "trafficPolicy": {"loadBalancer": lb}})
    assert cluster(gen(snapshot(destination_rules=[dr])), f"outbound|8080||{PC}")["lb_policy"] == policy


def test_passthrough_load_balancer_is_an_original_destination_cluster() -> None:
    dr = istio(
        "DestinationRule",
        "pc",
        "production",
        {"host": PC, "trafficPolicy": {"loadBalancer": {"simple": "PASSTHROUGH"}}},
    )
    config = gen(snapshot(destination_rules=[dr]))
    c = cluster(config, f"outbound|8080||{PC}")
    assert (c["type"], c["lb_policy"]) == ("ORIGINAL_DST", "CLUSTER_PROVIDED")
    assert not [e for e in config.endpoints if e["cluster_name"] == c["name"]]


@pytest.mark.parametrize(
    ("ch", "hp"),
    [
        ({"httpHeaderName": "X-User"}, {"header": {"header_name": "x-user"}}),
        (
            {"httpCookie": {"name": "sid", "ttl": "60s", "path": "/"}},
            {"cookie": {"name": "sid", "ttl": 60.0, "path": "/"}},
        ),
        ({"useSourceIp": True}, {"connection_properties": {"source_ip": True}}),
        ({"httpQueryParameterName": "user"}, {"query_parameter": {"name": "user"}}),
    ],
)
def test_consistent_hash_becomes_route_hash_policy(ch: dict[str, Any], hp: dict[str, Any]) -> None:
    dr = istio(
        "DestinationRule",
        "pc",
        "production",
        {"host": "productcatalog", "trafficPolicy": {"loadBalancer": {"consistentHash": ch}}},
    )
    config = gen(snapshot(destination_rules=[dr]))
    route = resolve(config, "productcatalog", 8080)
    assert route is not None and route["route"]["hash_policy"] == [hp]
    with_vs = gen(
        snapshot(
            destination_rules=[dr],
            virtual_services=[vs([{"route": [{"destination": {"host": "productcatalog"}}]}])],
        )
    )
    assert resolve(with_vs, "productcatalog", 8080)["route"]["hash_policy"] == [hp]  # type: ignore[index]


def test_port_level_and_subset_policies_layer_over_the_top_level() -> None:
    dr = istio(
        "DestinationRule",
        "pc",
        "production",
        {
            "host": "productcatalog",
            "trafficPolicy": {
                "loadBalancer": {"simple": "ROUND_ROBIN"},
                "connectionPool": {
                    "tcp": {"maxConnections": 100, "connectTimeout": "30s"},
                    "http": {
                        "http1MaxPendingRequests": 50,
                        "maxRequestsPerConnection": 10,
                        "http2MaxRequests": 7,
                        "maxRetries": 4,
                        "idleTimeout": "90s",
                    },
                },
                "outlierDetection": {
                    "consecutive5xxErrors": 3,
                    "interval": "5s",
                    "baseEjectionTime": "1m",
                    "maxEjectionPercent": 50,
                    "consecutiveGatewayErrors": 2,
                },
                "portLevelSettings": [{"port": {"number": 8080}, "loadBalancer": {"simple": "RANDOM"}}],
            },
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {
                    "name": "v2",
                    "labels": {"version": "v2"},
                    "trafficPolicy": {"loadBalancer": {"consistentHash": {"useSourceIp": True}}},
                },
            ],
        },
    )
    config = gen(snapshot(destination_rules=[dr]))
    base = cluster(config, f"outbound|8080||{PC}")
    assert base["lb_policy"] == "RANDOM"
    assert base["connect_timeout"] == 30.0
    assert base["idle_timeout"] == 90.0
    assert base["circuit_breakers"] == {
        "max_connections": 100,
        "max_pending_requests": 50,
        "max_requests": 7,
        "max_retries": 4,
        "max_requests_per_connection": 10,
    }
    assert base["outlier_detection"] == {
        "consecutive_5xx": 3,
        "interval": 5.0,
        "base_ejection_time": 60.0,
        "max_ejection_percent": 50,
        "consecutive_gateway_failure": 2,
    }
    assert (
        base["metadata"]["istio"]["config"]
        == "/apis/networking.istio.io/v1/namespaces/production/destination-rule/pc"
    )
    assert cluster(config, f"outbound|8080|v1|{PC}")["lb_policy"] == "RANDOM"
    v2 = cluster(config, f"outbound|8080|v2|{PC}")
    assert v2["lb_policy"] == "RING_HASH" and v2["circuit_breakers"]["max_connections"] == 100
    assert v2["metadata"]["istio"]["subset"] == "v2"


def test_outlier_detection_defaults_are_istios() -> None:
    dr = istio("DestinationRule", "pc", "production", {"host": PC, "trafficPolicy": {"outlierDetection": {}}})
    od = cluster(gen(snapshot(destination_rules=[dr])), f"outbound|8080||{PC}")["outlier_detection"]
    assert od == {
        "consecutive_5xx": 5,
        "interval": 10.0,
        "base_ejection_time": 30.0,
        "max_ejection_percent": 10,
    }


def test_destination_rule_in_the_proxys_namespace_beats_the_services() -> None:
    theirs = istio(
        "DestinationRule", "r", "other", {"host": RV, "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}}
    )
    ours = istio(
        "DestinationRule",
        "r",
        "production",
        {"host": RV, "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}},
    )
    assert cluster(gen(snapshot(destination_rules=[theirs])), f"outbound|9080||{RV}")["lb_policy"] == "RANDOM"
    assert (
        cluster(gen(snapshot(destination_rules=[theirs, ours])), f"outbound|9080||{RV}")["lb_policy"]
        == "ROUND_ROBIN"
    )


# --- ServiceEntry, WorkloadEntry, Sidecar ------------------------------------------------------------------


def test_service_entry_static_dns_and_none() -> None:
    static = istio(
        "ServiceEntry",
        "ext-static",
        "production",
        {
            "hosts": ["legacy.internal"],
            "addresses": ["127.1.200.1"],
            "location": "MESH_EXTERNAL",
            "ports": [{"number": 8000, "name": "http", "protocol": "HTTP"}],
            "resolution": "STATIC",
            "endpoints": [
                {"address": "127.0.0.5", "ports": {"http": 18000}, "labels": {"version": "a"}},
                {"address": "127.0.0.6"},
            ],
        },
    )
    dns = istio(
        "ServiceEntry",
        "ext-dns",
        "production",
        {
            "hosts": ["api.example.com"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "DNS",
        },
    )
    none = istio(
        "ServiceEntry",
        "ext-any",
        "production",
        {
            "hosts": ["*.wild.example"],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "NONE",
        },
    )
    config = gen(
        snapshot(
            service_entries=[static, dns, none],
            mesh=parse_mesh("outboundTrafficPolicy: {mode: REGISTRY_ONLY}"),
        )
    )
    assert cluster(config, "outbound|8000||legacy.internal")["type"] == "EDS"
    assert cla(config, "outbound|8000||legacy.internal") == [("127.0.0.5", 18000), ("127.0.0.6", 8000)]
    (load,) = [e for e in config.endpoints if e["cluster_name"] == "outbound|8000||legacy.internal"]
    for ep in load["endpoints"][0]["lb_endpoints"]:  # no workload to name: telemetry says "unknown"
        assert (ep["metadata"]["workload"], ep["metadata"]["namespace"]) == ("", "production")
    for host in ("legacy.internal", "legacy.internal:8000", "127.1.200.1:8000"):
        assert target(resolve(config, host, 8000)) == "outbound|8000||legacy.internal"
    d = cluster(config, "outbound|80||api.example.com")
    assert d["type"] == "STRICT_DNS"
    assert d["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["address"] == "api.example.com"
    assert target(resolve(config, "api.example.com", 80)) == "outbound|80||api.example.com"
    n = cluster(config, "outbound|443||*.wild.example")
    assert (n["type"], n["lb_policy"]) == ("ORIGINAL_DST", "CLUSTER_PROVIDED")
    assert target(resolve(config, "x.wild.example", 443)) == "outbound|443||*.wild.example"


def test_service_entry_workload_selector_picks_pods_and_workload_entries() -> None:
    se = istio(
        "ServiceEntry",
        "vm-svc",
        "production",
        {
            "hosts": ["vm.production.mesh"],
            "ports": [{"number": 9000, "name": "http", "targetPort": 9100}],
            "resolution": "STATIC",
            "location": "MESH_INTERNAL",
            "workloadSelector": {"labels": {"app": "vm"}},
        },
    )
    we = istio(
        "WorkloadEntry",
        "vm-1",
        "production",
        {
            "address": "127.0.0.9",
            "labels": {"app": "vm", "version": "v3"},
            "ports": {"http": 9200},
            "serviceAccount": "vm",
        },
    )
    other_ns_we = istio("WorkloadEntry", "vm-2", "other", {"address": "127.0.0.10", "labels": {"app": "vm"}})
    vm_pod = pod("vm-pod", "production", "127.1.1.40", {"app": "vm"}, [9100])
    config = gen(snapshot(service_entries=[se], workload_entries=[we, other_ns_we], pods=[vm_pod]))
    assert cla(config, "outbound|9000||vm.production.mesh") == [("127.0.0.9", 9200), ("127.1.1.40", 9100)]
    assert "WorkloadEntry/production/vm-1" in config.dependencies


def test_sidecar_egress_limits_what_the_proxy_sees() -> None:
    sc = istio("Sidecar", "default", "production", {"egress": [{"hosts": ["./*", "istio-system/*"]}]})
    config = gen(snapshot(sidecars=[sc]))
    names = {c["name"] for c in config.clusters}
    assert f"outbound|8080||{PC}" in names
    assert f"outbound|9080||{RV}" not in names
    selective = istio(
        "Sidecar",
        "reviews-only",
        "production",
        {
            "workloadSelector": {"labels": {"app": "frontend"}},
            "egress": [{"hosts": ["other/reviews.other.svc.cluster.local"]}],
        },
    )
    config = gen(snapshot(sidecars=[sc, selective]))
    names = {c["name"] for c in config.clusters}
    assert f"outbound|9080||{RV}" in names and f"outbound|8080||{PC}" not in names
    assert "Sidecar/production/reviews-only" in config.dependencies
    # the namespace-wide Sidecar still applies to the other workloads
    assert f"outbound|8080||{PC}" in {
        c["name"] for c in gen(snapshot(sidecars=[sc, selective]), pc_pods()[0]).clusters
    }


def test_root_namespace_sidecar_applies_mesh_wide() -> None:
    sc = istio("Sidecar", "default", "istio-system", {"egress": [{"hosts": ["./*"]}]})
    names = {c["name"] for c in gen(snapshot(sidecars=[sc]), REVIEWS_POD).clusters}
    assert f"outbound|9080||{RV}" in names and f"outbound|8080||{PC}" not in names


# --- mesh config and access log --------------------------------------------------------------------------


def test_access_log_on_every_listener_when_the_mesh_asks() -> None:
    assert all("access_log" not in x for x in gen().listeners)
    mesh = parse_mesh(
        'accessLogFile: /dev/stdout\naccessLogEncoding: JSON\naccessLogFormat: |\n  [%START_TIME%] "%REQ(:METHOD)%"\n'
    )
    config = gen(snapshot(mesh=mesh))
    for listener in config.listeners:
        assert listener["access_log"] == [
            {"path": "/dev/stdout", "encoding": "JSON", "format": '[%START_TIME%] "%REQ(:METHOD)%"\n'}
        ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accessLogEncoding: XML", "accessLogEncoding"),
        ("outboundTrafficPolicy: {mode: DENY}", "outboundTrafficPolicy.mode"),
        ("[1, 2", "not valid YAML"),
        ("- a", "mapping"),
    ],
)
def test_bad_mesh_config_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_mesh(text)


def test_mesh_defaults() -> None:
    mesh = parse_mesh("")
    assert (mesh.access_log_file, mesh.outbound_mode, mesh.connect_timeout) == ("", "ALLOW_ANY", 10.0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("1.5s", 1.5), ("250ms", 0.25), ("1m30s", 90.0), ("2h", 7200.0), (3, 3.0)],
)
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "1x", "s", "1s2"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


# --- determinism and dependencies ---------------------------------------------------------------------------


def test_generation_is_deterministic_and_names_its_dependencies() -> None:
    snap = snapshot(
        virtual_services=[vs([{"route": [{"destination": {"host": "productcatalog", "subset": "v1"}}]}])],
        destination_rules=[SUBSETS_DR],
    )
    a, b = gen(snap), gen(snap)
    assert a.by_type() == b.by_type()
    assert {
        "VirtualService/production/productcatalog",
        "DestinationRule/production/productcatalog",
        "Service/production/productcatalog",
        "Endpoints/production/productcatalog",
        "Pod/production/productcatalog-v2-7f6d5c4b3-klmno",
        "Pod/production/frontend-6b7c8d9e0f-zzzzz",
        "ConfigMap/istio-system/istio",
    } <= a.dependencies


def test_inbound_ports_come_from_the_injectors_app_ports_env() -> None:
    injected = pod("web-1", "production", "127.1.1.50", {"app": "web"}, [8080, 9090])
    injected["spec"]["containers"][1]["env"] = [
        {
            "name": "ISTIO_META_APP_PORTS",
            "value": '[{"name":"http","containerPort":8080,"internalPort":28080,"protocol":"TCP","container":"app"},'
            '{"name":"","containerPort":9090,"internalPort":29090,"protocol":"TCP","container":"app"}]',
        }
    ]
    config = gen(proxy_pod=injected)
    assert cla(config, "inbound|8080||") == [("127.1.1.50", 28080)]
    assert cla(config, "inbound|9090||") == [("127.1.1.50", 29090)]
    assert {x["name"] for x in config.listeners} >= {"127.1.1.50_8080", "127.1.1.50_9090"}


def test_identity_from_node_metadata_when_the_pod_is_not_known_yet() -> None:
    from meshpilot.controlplane.server import identity_from_node

    node = {
        "id": "sidecar~127.1.1.60~late-1.production~production.svc.cluster.local",
        "metadata": {"LABELS": {"app": "late"}, "APP_PORTS": '[{"containerPort":80,"internalPort":20080}]'},
    }
    ident = identity_from_node(node, Registry(snapshot()))  # type: ignore[arg-type]
    assert (ident.pod, ident.namespace, ident.ip, dict(ident.labels)) == (
        "late-1",
        "production",
        "127.1.1.60",
        {"app": "late"},
    )
    assert ident.inbound_ports == ((80, 20080, ""),)


def test_destination_rules_for_one_host_in_one_namespace_merge() -> None:
    a = istio(
        "DestinationRule",
        "a",
        "production",
        {"host": "productcatalog", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]},
        created="2026-01-01T00:00:00Z",
    )
    b = istio(
        "DestinationRule",
        "b",
        "production",
        {
            "host": "productcatalog",
            "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}},
            "subsets": [
                {"name": "v2", "labels": {"version": "v2"}},
                {"name": "v1", "labels": {"version": "v2"}},
            ],
        },
        created="2026-01-02T00:00:00Z",
    )
    config = gen(snapshot(destination_rules=[b, a]))
    assert cla(config, f"outbound|8080|v1|{PC}") == [
        ("127.1.1.10", 8080),
        ("127.1.1.11", 8080),
    ]  # a's v1 wins
    assert cla(config, f"outbound|8080|v2|{PC}") == [("127.1.1.12", 8080)]
    assert cluster(config, f"outbound|8080||{PC}")["lb_policy"] == "RANDOM"
    assert {"DestinationRule/production/a", "DestinationRule/production/b"} <= config.dependencies


@pytest.mark.parametrize(
    ("retry_on", "conditions", "codes"),
    [
        ("5xx,connect-failure", "5xx,connect-failure", None),
        ("gateway-error,503,504", "gateway-error,retriable-status-codes", [503, 504]),
        ("retriable-status-codes", "retriable-status-codes", [503]),
    ],
)
def test_retry_on_status_codes_become_retriable_status_codes(
    retry_on: str, conditions: str, codes: Any
) -> None:
    rules = vs(
        [
            {
                "route": [{"destination": {"host": "productcatalog"}}],
                "retries": {"attempts": 3, "retryOn": retry_on},
            }
        ]
    )
    policy = resolve(gen(snapshot(virtual_services=[rules])), "productcatalog", 8080)["route"]["retry_policy"]  # type: ignore[index]
    assert policy["retry_on"] == conditions and policy.get("retriable_status_codes") == codes


def test_external_name_service_is_a_dns_cluster() -> None:
    ext = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "payments", "namespace": "production"},
        "spec": {
            "type": "ExternalName",
            "externalName": "api.payments.example",
            "ports": [{"name": "http", "port": 80}],
        },
    }
    config = gen(snapshot(services=[ext]))
    c = cluster(config, "outbound|80||payments.production.svc.cluster.local")
    assert c["type"] == "STRICT_DNS"
    assert c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["address"] == "api.payments.example"
    assert target(resolve(config, "payments", 80)) == "outbound|80||payments.production.svc.cluster.local"


def test_sidecar_egress_listener_port_limits_the_hosts_to_that_port() -> None:
    multi = service("multi", "production", [("http", 80, 8080), ("admin", 9000, 9000)], "127.1.128.20")
    sc = istio(
        "Sidecar",
        "default",
        "production",
        {
            "egress": [
                {
                    "port": {"number": 9000, "protocol": "HTTP", "name": "admin"},
                    "hosts": ["./multi.production.svc.cluster.local"],
                },
                {"hosts": ["other/*"]},
            ],
        },
    )
    config = gen(snapshot(services=[multi], sidecars=[sc]))
    names = {c["name"] for c in config.clusters}
    assert "outbound|9000||multi.production.svc.cluster.local" in names
    assert "outbound|80||multi.production.svc.cluster.local" not in names
    assert f"outbound|9080||{RV}" in names and f"outbound|8080||{PC}" not in names
    assert target(resolve(config, "multi", 9000)) == "outbound|9000||multi.production.svc.cluster.local"
