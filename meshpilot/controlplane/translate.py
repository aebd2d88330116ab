"""Per-proxy configuration from the registry and Istio config: the heart of the control plane.

``generate(registry, proxy)`` is a pure function. It returns the proxy's clusters, endpoints,
listeners and route tables (``meshpilot.xds.types``) plus the set of objects the result depended
on, so the push server can tell which proxies a change affects without regenerating everyone.

What a proxy sees is scoped the way Istio scopes it: ``exportTo`` on Services, VirtualServices,
DestinationRules and ServiceEntries, then the egress hosts of the Sidecar resource that applies
to the workload (workload selector in its namespace, else the namespace default, else the root
namespace default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from meshpilot.controlplane._util import (
    BAD_CONFIG,
    as_list,
    creation_order,
    key_of,
    labels_match,
    name_of,
    namespace_of,
    spec_of,
)
from meshpilot.controlplane.mesh import OutboundMode
from meshpilot.controlplane.policy import (
    BoundRule,
    RuleIndex,
    apply_policy,
    effective_policy,
    hash_policy,
    select_rule,
)
from meshpilot.controlplane.registry import (
    MeshService,
    ProxyIdentity,
    Registry,
    expand_host,
    exported_to,
    host_matches,
    parse_export_to,
)
from meshpilot.controlplane.routes import default_route, translate_http_routes
from meshpilot.xds.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    AccessLog,
    Cluster,
    ClusterLoadAssignment,
    HashPolicy,
    LbEndpoint,
    Listener,
    RouteConfiguration,
    VirtualHost,
)

PASSTHROUGH = "PassthroughCluster"
BLACKHOLE = "BlackHoleCluster"
INBOUND_PASSTHROUGH = "InboundPassthroughClusterIpv4"
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
MESH_CONFIG_KEY = "ConfigMap/istio-system/istio"


def outbound_cluster_name(port: int, subset: str, host: str) -> str:
    return f"outbound|{port}|{subset}|{host}"


def inbound_cluster_name(port: int) -> str:
    return f"inbound|{port}||"


@dataclass
class ProxyConfig:
    """The four resource sets of one proxy, sorted by name so equal configs compare equal."""

    clusters: list[Cluster] = field(default_factory=list)
    endpoints: list[ClusterLoadAssignment] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    routes: list[RouteConfiguration] = field(default_factory=list)
    dependencies: frozenset[str] = frozenset()
    warnings: list[str] = field(default_factory=list)

    def by_type(self) -> dict[str, list[Any]]:
        return {
            CLUSTER_TYPE: list(self.clusters),
            ENDPOINT_TYPE: list(self.endpoints),
            LISTENER_TYPE: list(self.listeners),
            ROUTE_TYPE: list(self.routes),
        }


@dataclass(frozen=True)
class EgressHost:
    namespace: str  # "*", "." (resolved to the Sidecar's namespace), "~" or a namespace
    host: str
    port: int | None = None  # the egress listener's port: the host is visible on that port only


@dataclass(frozen=True)
class ParsedVirtualService:
    """A VirtualService with its hosts expanded and scope fields read, once per registry."""

    obj: Mapping[str, Any]
    namespace: str
    hosts: tuple[str, ...]
    export_to: frozenset[str] | None
    mesh_bound: bool  # applies to sidecars: no ``gateways``, or ``mesh`` among them


@dataclass
class ConfigIndex:
    """Indexes over Istio config shared by every proxy's translation of one registry."""

    virtual_services: list[ParsedVirtualService]
    rules: RuleIndex


def config_index(registry: Registry) -> ConfigIndex:
    cached = getattr(registry, "_config_index", None)
    if isinstance(cached, ConfigIndex):
        return cached
    known = frozenset(registry.by_host)
    vss = []
    for vs in sorted(registry.snapshot.virtual_services, key=creation_order):
        try:
            spec = spec_of(vs)
            ns = namespace_of(vs)
            gateways = as_list(spec.get("gateways"))
            vss.append(
                ParsedVirtualService(
                    obj=vs,
                    namespace=ns,
                    hosts=tuple(expand_host(str(h), ns, known) for h in as_list(spec.get("hosts"))),
                    export_to=parse_export_to(spec.get("exportTo")),
                    mesh_bound=not gateways or "mesh" in gateways,
                )
            )
        except BAD_CONFIG as exc:
            registry.warnings.append(f"VirtualService {ns}/{name_of(vs)} ignored: {exc!r}")
    index = ConfigIndex(virtual_services=vss, rules=RuleIndex(registry.snapshot.destination_rules, known))
    registry._config_index = index  # type: ignore[attr-defined]
    return index


@dataclass
class Scope:
    """What one proxy may see: services, virtual services, rules, and its outbound policy."""

    services: list[MeshService]
    virtual_services: list[ParsedVirtualService]
    outbound_mode: OutboundMode
    sidecar: Mapping[str, Any] | None


def select_sidecar(
    sidecars: Sequence[Mapping[str, Any]], proxy: ProxyIdentity, root_namespace: str
) -> Mapping[str, Any] | None:
    """The Sidecar resource applying to the proxy, in Istio's order of precedence."""
    local = sorted((s for s in sidecars if namespace_of(s) == proxy.namespace), key=creation_order)
    for s in local:
        sel = spec_of(s).get("workloadSelector")
        if isinstance(sel, Mapping) and sel.get("labels") and labels_match(sel["labels"], proxy.labels):
            return s
    for s in local:
        if not spec_of(s).get("workloadSelector"):
            return s
    for s in sorted((s for s in sidecars if namespace_of(s) == root_namespace), key=creation_order):
        if not spec_of(s).get("workloadSelector"):
            return s
    return None


def _egress_hosts(sidecar: Mapping[str, Any] | None, proxy: ProxyIdentity) -> list[EgressHost] | None:
    if sidecar is None:
        return None
    egress = as_list(spec_of(sidecar).get("egress"))
    if not egress:
        return None
    out: list[EgressHost] = []
    for listener in egress:
        if not isinstance(listener, Mapping):
            continue
        port_spec = listener.get("port")
        number = port_spec.get("number") if isinstance(port_spec, Mapping) else None
        for item in as_list(listener.get("hosts")):
            ns, sep, host = str(item).partition("/")
            if not sep:
                continue  # not namespace/dnsName: the API refuses it; never reached from a real cluster
            # "." is the namespace of the proxy (a root-namespace Sidecar applies to every namespace)
            out.append(
                EgressHost(
                    namespace=proxy.namespace if ns == "." else ns,
                    host=host,
                    port=int(number) if isinstance(number, int) else None,
                )
            )
    return out


def _egress_ports(egress: list[EgressHost] | None, owner_ns: str, hostname: str) -> frozenset[int] | None:
    """The ports on which the egress config shows ``hostname``: None = all, empty = hidden."""
    if egress is None:
        return None
    ports: set[int] = set()
    for e in egress:
        if e.namespace == "~" or e.namespace not in ("*", owner_ns) or not host_matches(e.host, hostname):
            continue
        if e.port is None:
            return None
        ports.add(e.port)
    return frozenset(ports)


def _egress_allows(egress: list[EgressHost] | None, owner_ns: str, hostname: str) -> bool:
    allowed = _egress_ports(egress, owner_ns, hostname)
    return allowed is None or bool(allowed)


def build_scope(registry: Registry, proxy: ProxyIdentity) -> Scope:
    snap = registry.snapshot
    root = registry.mesh.root_namespace
    sidecar = select_sidecar(snap.sidecars, proxy, root)
    egress = _egress_hosts(sidecar, proxy)
    services: list[MeshService] = []
    for svc in registry.visible_services(proxy.namespace):
        allowed = _egress_ports(egress, svc.namespace, svc.hostname)
        if allowed is None:
            services.append(svc)
        elif any(p.port in allowed for p in svc.ports):
            services.append(replace(svc, ports=tuple(p for p in svc.ports if p.port in allowed)))
    vss = [
        vs
        for vs in config_index(registry).virtual_services
        if vs.mesh_bound
        and exported_to(vs.export_to, vs.namespace, proxy.namespace)
        and any(_egress_allows(egress, vs.namespace, h) for h in vs.hosts)
    ]
    mode: OutboundMode = registry.mesh.outbound_mode
    if sidecar is not None:
        otp = spec_of(sidecar).get("outboundTrafficPolicy")
        if isinstance(otp, Mapping) and otp.get("mode") in ("ALLOW_ANY", "REGISTRY_ONLY"):
            mode = "REGISTRY_ONLY" if otp["mode"] == "REGISTRY_ONLY" else "ALLOW_ANY"
    return Scope(
        services=services,
        virtual_services=vss,
        outbound_mode=mode,
        sidecar=sidecar,
    )


class _Builder:
    """State of one proxy's translation (dependencies, rule cache)."""

    def __init__(self, registry: Registry, proxy: ProxyIdentity) -> None:
        self.registry = registry
        self.proxy = proxy
        self.index = config_index(registry)
        self.scope = build_scope(registry, proxy)
        self.deps: set[str] = {proxy.key, MESH_CONFIG_KEY}
        self.warnings: list[str] = []
        self.known = frozenset(registry.by_host)
        self._rules: dict[str, BoundRule | None] = {}
        self._vs_exact: dict[str, tuple[Mapping[str, Any], str]] | None = None
        self._vs_wild: list[tuple[Mapping[str, Any], str]] = []
        self.by_host: dict[str, list[MeshService]] = {}
        for s in self.scope.services:
            self.by_host.setdefault(s.hostname, []).append(s)
        if self.scope.sidecar is not None:
            self.deps.add(key_of("Sidecar", self.scope.sidecar))

    def rule(self, service: MeshService) -> BoundRule | None:
        if service.hostname not in self._rules:
            bound = select_rule(
                self.index.rules,
                service.hostname,
                proxy_namespace=self.proxy.namespace,
                proxy_labels=self.proxy.labels,
                service_namespace=service.namespace,
                root_namespace=self.registry.mesh.root_namespace,
            )
            self._rules[service.hostname] = bound
            if bound is not None:
                for obj in (bound.obj, *bound.merged_from):
                    self.deps.add(key_of("DestinationRule", obj))
        return self._rules[service.hostname]

    def policy(self, rule: BoundRule | None, port: int, subset: str) -> Mapping[str, Any]:
        """The traffic policy for a port/subset; a malformed rule counts as no policy (with a warning)."""
        try:
            return effective_policy(rule, port, subset)
        except BAD_CONFIG as exc:
            self.warnings.append(f"{rule.config_path if rule else '?'}: trafficPolicy: {exc!r}")
            return {}

    def hashes(self, service: MeshService, port: int, subset: str) -> list[HashPolicy]:
        try:
            return hash_policy(self.policy(self.rule(service), port, subset))
        except BAD_CONFIG as exc:
            self.warnings.append(f"{service.hostname}: consistentHash: {exc!r}")
            return []

    def service_for(self, host: str) -> MeshService | None:
        candidates = self.by_host.get(host)
        if candidates:
            # Kubernetes services first, then the oldest ServiceEntry (registry order is stable)
            return candidates[0]
        for s in self.scope.services:
            if s.hostname.startswith("*") and host_matches(s.hostname, host):
                return s
        return None

    # --- clusters and endpoints -------------------------------------------------------------

    def _endpoints(
        self, service: MeshService, port: int, subset_labels: Mapping[str, str] | None
    ) -> list[LbEndpoint]:
        out: list[LbEndpoint] = []
        for inst in self.registry.instances(service, port):
            if subset_labels and not labels_match(subset_labels, inst.labels):
                continue
            if inst.source:
                self.deps.add(inst.source)
            ep: LbEndpoint = {"address": inst.address, "port": inst.port, "health_status": "HEALTHY"}
            if inst.weight:
                ep["load_balancing_weight"] = inst.weight
            if inst.metadata:
                ep["metadata"] = dict(inst.metadata)
            out.append(ep)
        return out

    def outbound_clusters(self) -> tuple[list[Cluster], list[ClusterLoadAssignment]]:
        clusters: list[Cluster] = []
        loads: list[ClusterLoadAssignment] = []
        seen: set[str] = set()
        for service in self.scope.services:
            self.deps.add(service.source)
            if service.is_kubernetes:
                self.deps.add(f"Endpoints/{service.namespace}/{service.name}")
            if service.hostname.startswith("*") and service.resolution != "NONE":
                continue  # a wildcard host can only be passed through
            rule = self.rule(service)
            subsets: list[tuple[str, Mapping[str, str] | None]] = [("", None)]
            if rule is not None:
                for s in rule.subsets():
                    labels = s.get("labels")
                    subsets.append((str(s["name"]), labels if isinstance(labels, Mapping) else {}))
            for sp in service.ports:
                for subset, labels in subsets:
                    name = outbound_cluster_name(sp.port, subset, service.hostname)
                    if name in seen:
                        continue
                    seen.add(name)
                    cluster = self._cluster(service, sp.port, subset, rule)
                    clusters.append(cluster)
                    if cluster["type"] == "ORIGINAL_DST":
                        continue
                    load: ClusterLoadAssignment = {
                        "cluster_name": name,
                        "endpoints": [{"lb_endpoints": self._endpoints(service, sp.port, labels)}],
                    }
                    if cluster["type"] != "EDS":
                        # inline only, as Istio does: EDS carries IP endpoints, and a proxy (Envoy's
                        # or ours) rejects a DNS name there, NACKing every endpoint of the mesh
                        cluster["load_assignment"] = load
                        continue
                    loads.append(load)
        return clusters, loads

    def _cluster(self, service: MeshService, port: int, subset: str, rule: BoundRule | None) -> Cluster:
        ctype: Any = {"EDS": "EDS", "STATIC": "EDS", "DNS": "STRICT_DNS", "NONE": "ORIGINAL_DST"}[
            service.resolution
        ]
        cluster: Cluster = {
            "name": outbound_cluster_name(port, subset, service.hostname),
            "type": ctype,
            "lb_policy": "CLUSTER_PROVIDED" if ctype == "ORIGINAL_DST" else "LEAST_REQUEST",
        }
        policy = self.policy(rule, port, subset)
        try:
            apply_policy(cluster, policy, self.registry.mesh.connect_timeout)
        except BAD_CONFIG as exc:
            self.warnings.append(f"{rule.config_path if rule else service.source}: {exc}")
            cluster["connect_timeout"] = self.registry.mesh.connect_timeout
        istio: dict[str, Any] = {
            "services": [{"host": service.hostname, "name": service.name, "namespace": service.namespace}],
            "default_original_port": port,
        }
        if subset:
            istio["subset"] = subset
        if rule is not None:
            istio["config"] = rule.config_path
        cluster["metadata"] = {"istio": istio}
        return cluster

    def inbound(self) -> tuple[list[Cluster], list[ClusterLoadAssignment], list[Listener]]:
        clusters: list[Cluster] = []
        loads: list[ClusterLoadAssignment] = []
        listeners: list[Listener] = []
        selecting = self.registry.services_selecting(self.proxy)
        address = self.proxy.ip or "0.0.0.0"
        for port, internal, _name in self.proxy.inbound_ports:
            name = inbound_cluster_name(port)
            load: ClusterLoadAssignment = {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [{"address": address, "port": internal}]}],
            }
            services = [
                {"host": ms.hostname, "name": ms.name, "namespace": ms.namespace}
                for ms, _sp, target in selecting
                if target == port
            ]
            cluster: Cluster = {
                "name": name,
                "type": "STATIC",
                "lb_policy": "CLUSTER_PROVIDED",
                "connect_timeout": self.registry.mesh.connect_timeout,
                "load_assignment": load,
                "metadata": {"istio": {"services": services}},
            }
            clusters.append(cluster)
            loads.append(load)
            listener: Listener = {
                "name": f"{address}_{port}",
                "address": address,
                "port": port,
                "traffic_direction": "INBOUND",
                "cluster": name,
            }
            listeners.append(listener)
        for ms, _sp, _target in selecting:
            self.deps.add(ms.source)
            self.deps.add(f"Endpoints/{ms.namespace}/{ms.name}")
        return clusters, loads, listeners

    # --- routes -----------------------------------------------------------------------------

    def _resolver(self, vs_namespace: str, route_port: int) -> Any:
        def resolve(host: str, port: int | None, subset: str) -> tuple[str, list[HashPolicy]]:
            hostname = expand_host(host, vs_namespace, self.known)
            service = self.service_for(hostname)
            if port is None:
                if service is not None and len(service.ports) == 1:
                    port = service.ports[0].port
                else:
                    port = route_port
            hashes: list[HashPolicy] = []
            if service is not None:
                hashes = self.hashes(service, port, subset)
            return outbound_cluster_name(port, subset, hostname), hashes

        return resolve

    def domains(self, service: MeshService, port: int) -> list[str]:
        names: list[str] = []
        if service.is_kubernetes:
            if service.namespace == self.proxy.namespace:
                names.append(service.name)
            names += [
                f"{service.name}.{service.namespace}",
                f"{service.name}.{service.namespace}.svc",
                service.hostname,
            ]
        else:
            names.append(service.hostname)
        names += list(service.addresses)
        out: list[str] = []
        for n in names:
            out += [n, f"{n}:{port}"]
        return out

    def _virtual_service_for(self, hostname: str) -> tuple[Mapping[str, Any], str] | None:
        """The oldest visible VirtualService claiming ``hostname`` (exact before wildcard)."""
        if self._vs_exact is None:
            self._vs_exact, self._vs_wild = {}, []
            for vs in self.scope.virtual_services:  # oldest first
                for h in vs.hosts:
                    if "*" in h:
                        self._vs_wild.append((vs.obj, h))
                    else:
                        self._vs_exact.setdefault(h, (vs.obj, h))
        found = self._vs_exact.get(hostname)
        if found is not None:
            return found
        for obj, h in self._vs_wild:
            if host_matches(h, hostname):
                return obj, h
        return None

    def route_tables(self) -> list[RouteConfiguration]:
        ports: dict[int, list[MeshService]] = {}
        for s in self.scope.services:
            for sp in s.ports:
                ports.setdefault(sp.port, []).append(s)
        # VirtualService hosts that name no service still get virtual hosts (port 80 and matched ports)
        extra: dict[int, list[tuple[str, Mapping[str, Any]]]] = {}
        for parsed in self.scope.virtual_services:
            spec = spec_of(parsed.obj)
            vs_ports = {
                int(m["port"])
                for http in as_list(spec.get("http"))
                if isinstance(http, Mapping)
                for m in as_list(http.get("match"))
                if isinstance(m, Mapping) and m.get("port") is not None
            } or {80}
            for expanded in parsed.hosts:
                if self.service_for(expanded) is None and not any(
                    host_matches(expanded, s.hostname) for s in self.scope.services
                ):
                    for p in vs_ports:
                        extra.setdefault(p, []).append((expanded, parsed.obj))
                        ports.setdefault(p, [])
        tables: list[RouteConfiguration] = []
        for port in sorted(ports):
            vhosts: list[VirtualHost] = []
            used: set[str] = set()
            for service in ports[port]:
                domains = [d for d in self.domains(service, port) if d not in used]
                if not domains:
                    continue
                routes = self._routes_for(service.hostname, port, service)
                if routes is None:
                    continue
                used.update(domains)
                vhosts.append({"name": f"{service.hostname}:{port}", "domains": domains, "routes": routes})
            for host, _vs in extra.get(port, []):
                domains = [d for d in (host, f"{host}:{port}") if d not in used]
                routes = self._routes_for(host, port, None)
                if not domains or routes is None:
                    continue
                used.update(domains)
                vhosts.append({"name": f"{host}:{port}", "domains": domains, "routes": routes})
            if self.scope.outbound_mode == "ALLOW_ANY":
                vhosts.append(
                    {
                        "name": "allow_any",
                        "domains": ["*"],
                        "routes": [
                            {
                                "name": "allow_any",
                                "match": {"prefix": "/"},
                                "route": {"cluster": PASSTHROUGH, "timeout": 0.0},
                            }
                        ],
                    }
                )
            tables.append({"name": str(port), "virtual_hosts": vhosts})
        return tables

    def _routes_for(self, hostname: str, port: int, service: MeshService | None) -> list[Any] | None:
        found = self._virtual_service_for(hostname)
        if found is not None:
            vs, _ = found
            self.deps.add(key_of("VirtualService", vs))
            try:
                return translate_http_routes(vs, self.proxy, port, self._resolver(namespace_of(vs), port))
            except BAD_CONFIG as exc:
                self.warnings.append(f"VirtualService {namespace_of(vs)}/{name_of(vs)}: {exc}")
                # a broken VirtualService falls back to the default route rather than none
        if service is None:
            return None
        cluster = outbound_cluster_name(port, "", service.hostname)
        hashes = self.hashes(service, port, "")
        return [default_route(cluster, hashes)]

    # --- listeners ----------------------------------------------------------------------------

    def access_log(self) -> list[AccessLog]:
        mesh = self.registry.mesh
        if not mesh.access_log_file:
            return []
        entry: AccessLog = {"path": mesh.access_log_file, "encoding": mesh.access_log_encoding}
        if mesh.access_log_format:
            entry["format"] = mesh.access_log_format
        return [entry]


def _special_clusters(connect_timeout: float) -> list[Cluster]:
    return [
        {
            "name": BLACKHOLE,
            "type": "STATIC",
            "lb_policy": "ROUND_ROBIN",
            "connect_timeout": connect_timeout,
            "load_assignment": {"cluster_name": BLACKHOLE, "endpoints": []},
        },
        {
            "name": INBOUND_PASSTHROUGH,
            "type": "ORIGINAL_DST",
            "lb_policy": "CLUSTER_PROVIDED",
            "connect_timeout": connect_timeout,
        },
        {
            "name": PASSTHROUGH,
            "type": "ORIGINAL_DST",
            "lb_policy": "CLUSTER_PROVIDED",
            "connect_timeout": connect_timeout,
        },
    ]


def generate(registry: Registry, proxy: ProxyIdentity) -> ProxyConfig:
    """Clusters, endpoints, listeners and route tables for one proxy, deterministic and sorted."""
    b = _Builder(registry, proxy)
    out_clusters, out_loads = b.outbound_clusters()
    in_clusters, in_loads, in_listeners = b.inbound()
    routes = b.route_tables()
    address = proxy.ip or "0.0.0.0"
    logs = b.access_log()
    outbound: Listener = {
        "name": "virtualOutbound",
        "address": address,
        "port": OUTBOUND_PORT,
        "traffic_direction": "OUTBOUND",
    }
    # The fallback for a port without a route table or a host without a virtual host: pass
    # through (ALLOW_ANY), or BlackHoleCluster (REGISTRY_ONLY: the proxy answers 502, as Istio's
    # sidecar does); a known host whose routes do not match stays 404 NR.
    outbound["cluster"] = PASSTHROUGH if b.scope.outbound_mode == "ALLOW_ANY" else BLACKHOLE
    listeners: list[Listener] = [
        outbound,
        {
            "name": "virtualInbound",
            "address": address,
            "port": INBOUND_PORT,
            "traffic_direction": "INBOUND",
            "cluster": INBOUND_PASSTHROUGH,
        },
        *in_listeners,
    ]
    if logs:
        for listener in listeners:
            listener["access_log"] = [dict(entry) for entry in logs]  # type: ignore[misc]
    clusters = sorted(
        [*out_clusters, *in_clusters, *_special_clusters(registry.mesh.connect_timeout)],
        key=lambda c: c["name"],
    )
    return ProxyConfig(
        clusters=clusters,
        endpoints=sorted([*out_loads, *in_loads], key=lambda c: c["cluster_name"]),
        listeners=sorted(listeners, key=lambda x: x["name"]),
        routes=routes,
        dependencies=frozenset(b.deps),
        warnings=b.warnings,
    )
