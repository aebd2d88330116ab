"""DestinationRule semantics: which rule applies to a host, and what it means for a cluster.

A DestinationRule's trafficPolicy is layered: the top level, then ``portLevelSettings`` for the
port, then the subset's own policy (with its own port-level settings). Each of loadBalancer,
connectionPool and outlierDetection is replaced as a whole by the more specific layer, which is
how Istio merges them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshpilot.controlplane._util import (
    as_list,
    creation_order,
    labels_match,
    namespace_of,
    parse_duration,
    spec_of,
)
from meshpilot.controlplane.registry import expand_host, exported_to, host_matches, parse_export_to
from meshpilot.xds.types import CircuitBreakers, Cluster, HashPolicy, OutlierDetection

_POLICY_FIELDS = ("loadBalancer", "connectionPool", "outlierDetection", "tls")

_SIMPLE_LB = {
    "ROUND_ROBIN": "ROUND_ROBIN",
    "LEAST_REQUEST": "LEAST_REQUEST",
    "LEAST_CONN": "LEAST_REQUEST",
    "RANDOM": "RANDOM",
    # Istio's default since 1.14 when nothing (or UNSPECIFIED) is given.
    "UNSPECIFIED": "LEAST_REQUEST",
}


@dataclass(frozen=True)
class BoundRule:
    """A DestinationRule chosen for one host, with its host expanded."""

    obj: Mapping[str, Any]
    host: str
    # the spec in effect: the rule's own, or several rules for the host merged (see select_rule)
    merged_spec: Mapping[str, Any] | None = None
    merged_from: tuple[Mapping[str, Any], ...] = ()

    @property
    def namespace(self) -> str:
        return namespace_of(self.obj)

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.merged_spec if self.merged_spec is not None else spec_of(self.obj)

    @property
    def config_path(self) -> str:
        meta = self.obj.get("metadata") or {}
        return f"/apis/networking.istio.io/v1/namespaces/{self.namespace}/destination-rule/{meta.get('name', '')}"

    def subsets(self) -> list[Mapping[str, Any]]:
        return [s for s in as_list(self.spec.get("subsets")) if isinstance(s, Mapping) and s.get("name")]

    def subset(self, name: str) -> Mapping[str, Any] | None:
        for s in self.subsets():
            if s.get("name") == name:
                return s
        return None


@dataclass(frozen=True)
class ParsedRule:
    """A DestinationRule with what lookups need computed once per registry."""

    obj: Mapping[str, Any]
    namespace: str
    host: str  # expanded
    export_to: frozenset[str] | None
    selector: Mapping[str, str] | None  # workloadSelector.matchLabels, when set
    order: tuple[str, str, str]


class RuleIndex:
    """DestinationRules by host (exact hosts in a dict, wildcards in a list), built once per push."""

    def __init__(self, rules: Sequence[Mapping[str, Any]], known_hosts: frozenset[str]) -> None:
        self.exact: dict[str, list[ParsedRule]] = {}
        self.wildcards: list[ParsedRule] = []
        for obj in rules:
            spec = spec_of(obj)
            host = spec.get("host")
            if not isinstance(host, str) or not host:
                continue
            ns = namespace_of(obj)
            sel = spec.get("workloadSelector")
            match_labels = sel.get("matchLabels") if isinstance(sel, Mapping) else None
            parsed = ParsedRule(
                obj=obj,
                namespace=ns,
                host=expand_host(host, ns, known_hosts),
                export_to=parse_export_to(spec.get("exportTo")),
                selector=(match_labels if isinstance(match_labels, Mapping) else {})
                if sel is not None
                else None,
                order=creation_order(obj),
            )
            if "*" in parsed.host:
                self.wildcards.append(parsed)
            else:
                self.exact.setdefault(parsed.host, []).append(parsed)

    def candidates(self, hostname: str) -> list[ParsedRule]:
        return [*self.exact.get(hostname, ()), *(r for r in self.wildcards if host_matches(r.host, hostname))]


def select_rule(
    index: RuleIndex,
    hostname: str,
    *,
    proxy_namespace: str,
    proxy_labels: Mapping[str, str],
    service_namespace: str,
    root_namespace: str,
) -> BoundRule | None:
    """The one DestinationRule a proxy applies to ``hostname``.

    Lookup order is Istio's: the proxy's namespace, the service's namespace, the root namespace,
    then any other namespace exporting to the proxy; within a namespace an exact host beats a
    wildcard, a longer wildcard beats a shorter one, and the oldest rule wins a tie.
    """
    ranked: list[tuple[tuple[int, int, int, tuple[str, str, str]], ParsedRule]] = []
    for rule in index.candidates(hostname):
        ns = rule.namespace
        if not exported_to(rule.export_to, ns, proxy_namespace):
            continue
        if rule.selector is not None and (
            ns != proxy_namespace or not labels_match(rule.selector, proxy_labels)
        ):
            continue
        tier = (
            0 if ns == proxy_namespace else 1 if ns == service_namespace else 2 if ns == root_namespace else 3
        )
        exact = 0 if rule.host == hostname else 1
        ranked.append(((tier, exact, -len(rule.host), rule.order), rule))
    if not ranked:
        return None
    ranked.sort(key=lambda item: item[0])
    first = ranked[0][1]
    # Istio merges the rules of one namespace for the same host: subsets are added (the oldest
    # rule's subset wins a name clash) and the oldest rule that sets a traffic policy gives it.
    peers = [r for _, r in ranked[1:] if r.namespace == first.namespace and r.host == first.host]
    if not peers:
        return BoundRule(obj=first.obj, host=first.host)
    spec = dict(spec_of(first.obj))
    subsets = [x for x in as_list(spec.get("subsets")) if isinstance(x, Mapping)]
    names = {x.get("name") for x in subsets}
    for peer in peers:
        other = spec_of(peer.obj)
        if "trafficPolicy" not in spec and "trafficPolicy" in other:
            spec["trafficPolicy"] = other["trafficPolicy"]
        for x in as_list(other.get("subsets")):
            if isinstance(x, Mapping) and x.get("name") not in names:
                subsets.append(x)
                names.add(x.get("name"))
    spec["subsets"] = subsets
    return BoundRule(
        obj=first.obj, host=first.host, merged_spec=spec, merged_from=tuple(p.obj for p in peers)
    )


def _port_layer(policy: Mapping[str, Any], port: int) -> dict[str, Any]:
    merged = {k: policy[k] for k in _POLICY_FIELDS if k in policy}
    for pls in as_list(policy.get("portLevelSettings")):
        if not isinstance(pls, Mapping):
            continue
        number = (pls.get("port") or {}).get("number") if isinstance(pls.get("port"), Mapping) else None
        if number == port:
            merged.update({k: pls[k] for k in _POLICY_FIELDS if k in pls})
    return merged


def effective_policy(rule: BoundRule | None, port: int, subset: str = "") -> dict[str, Any]:
    """The traffic policy that applies to ``port`` (and ``subset``) after Istio's layering."""
    if rule is None:
        return {}
    top = rule.spec.get("trafficPolicy")
    merged = _port_layer(top, port) if isinstance(top, Mapping) else {}
    if subset:
        s = rule.subset(subset)
        sub_policy = s.get("trafficPolicy") if s else None
        if isinstance(sub_policy, Mapping):
            merged.update(_port_layer(sub_policy, port))
    return merged


def hash_policy(policy: Mapping[str, Any]) -> list[HashPolicy]:
    """Route hash policy for a consistentHash load balancer (empty when not consistent hashing)."""
    lb = policy.get("loadBalancer")
    ch = lb.get("consistentHash") if isinstance(lb, Mapping) else None
    if not isinstance(ch, Mapping):
        return []
    if ch.get("httpHeaderName"):
        return [{"header": {"header_name": str(ch["httpHeaderName"]).lower()}}]
    cookie = ch.get("httpCookie")
    if isinstance(cookie, Mapping) and cookie.get("name"):
        c: dict[str, Any] = {"name": str(cookie["name"])}
        if cookie.get("ttl") is not None:
            c["ttl"] = parse_duration(cookie["ttl"])
        if cookie.get("path"):
            c["path"] = str(cookie["path"])
        return [{"cookie": c}]
    if ch.get("useSourceIp"):
        return [{"connection_properties": {"source_ip": True}}]
    if ch.get("httpQueryParameterName"):
        return [{"query_parameter": {"name": str(ch["httpQueryParameterName"])}}]
    return []


def apply_policy(cluster: Cluster, policy: Mapping[str, Any], default_connect_timeout: float) -> None:
    """Fill lb_policy, connect_timeout, circuit_breakers and outlier_detection of ``cluster``."""
    cluster["connect_timeout"] = default_connect_timeout
    lb = policy.get("loadBalancer")
    if isinstance(lb, Mapping):
        if isinstance(lb.get("consistentHash"), Mapping):
            cluster["lb_policy"] = "MAGLEV" if "maglev" in lb["consistentHash"] else "RING_HASH"
        elif lb.get("simple") == "PASSTHROUGH":
            cluster["type"] = "ORIGINAL_DST"
            cluster["lb_policy"] = "CLUSTER_PROVIDED"
        elif lb.get("simple"):
            cluster["lb_policy"] = _SIMPLE_LB.get(str(lb["simple"]), "LEAST_REQUEST")  # type: ignore[typeddict-item]
    pool = policy.get("connectionPool")
    if isinstance(pool, Mapping):
        breakers: CircuitBreakers = {}
        tcp = pool.get("tcp") if isinstance(pool.get("tcp"), Mapping) else {}
        http = pool.get("http") if isinstance(pool.get("http"), Mapping) else {}
        assert isinstance(tcp, Mapping) and isinstance(http, Mapping)
        if tcp.get("maxConnections") is not None:
            breakers["max_connections"] = int(tcp["maxConnections"])
        if tcp.get("connectTimeout"):
            cluster["connect_timeout"] = parse_duration(tcp["connectTimeout"])
        if http.get("http1MaxPendingRequests") is not None:
            breakers["max_pending_requests"] = int(http["http1MaxPendingRequests"])
        if http.get("http2MaxRequests") is not None:
            breakers["max_requests"] = int(http["http2MaxRequests"])
        if http.get("maxRetries") is not None:
            breakers["max_retries"] = int(http["maxRetries"])
        if http.get("maxRequestsPerConnection") is not None:
            breakers["max_requests_per_connection"] = int(http["maxRequestsPerConnection"])
        if http.get("idleTimeout"):
            cluster["idle_timeout"] = parse_duration(http["idleTimeout"])
        if breakers:
            cluster["circuit_breakers"] = breakers
    od = policy.get("outlierDetection")
    if isinstance(od, Mapping):
        # Istio's documented defaults for fields left out of an outlierDetection block.
        detection: OutlierDetection = {
            "consecutive_5xx": int(od.get("consecutive5xxErrors", od.get("consecutiveErrors", 5))),
            "interval": parse_duration(od.get("interval", "10s")),
            "base_ejection_time": parse_duration(od.get("baseEjectionTime", "30s")),
            "max_ejection_percent": int(od.get("maxEjectionPercent", 10)),
        }
        if od.get("consecutiveGatewayErrors") is not None:
            detection["consecutive_gateway_failure"] = int(od["consecutiveGatewayErrors"])
        cluster["outlier_detection"] = detection
