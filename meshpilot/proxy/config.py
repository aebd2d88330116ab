"""Validation and compilation of pushed xDS resources into one immutable ``Snapshot``.

A push is applied by compiling a whole new snapshot from the last accepted resources of every
type plus the new ones; any ``ConfigError`` rejects the push (NACK) and leaves the running
snapshot untouched. Requests read ``proxy.snapshot`` once, so a request never sees half a push.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Final, cast

from meshpilot.proxy import lb
from meshpilot.proxy.accesslog import AccessLogger
from meshpilot.proxy.router import ConfigError, RouteTable, compile_route_config
from meshpilot.xds.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    Cluster,
    ClusterLoadAssignment,
    Listener,
)

PASSTHROUGH: Final = "PassthroughCluster"
BLACKHOLE: Final = "BlackHoleCluster"
INBOUND_PASSTHROUGH: Final = "InboundPassthroughClusterIpv4"

_TYPES: Final = ("EDS", "STATIC", "STRICT_DNS", "ORIGINAL_DST")


class ClusterStats:
    """Envoy's per-cluster counters; owned by the proxy so they survive config pushes."""

    __slots__ = ("flags", "upstream_cx_connect_fail", "upstream_cx_total", "upstream_rq_total")

    def __init__(self) -> None:
        self.upstream_rq_total = 0
        self.upstream_cx_total = 0
        self.upstream_cx_connect_fail = 0
        self.flags: dict[str, int] = {}

    def items(self) -> list[tuple[str, int]]:
        out = [
            ("upstream_rq_total", self.upstream_rq_total),
            ("upstream_cx_total", self.upstream_cx_total),
            ("upstream_cx_connect_fail", self.upstream_cx_connect_fail),
        ]
        out += [(f"upstream_rq_{flag}", n) for flag, n in sorted(self.flags.items())]
        return out


@dataclass(slots=True)
class ClusterState:
    name: str
    type: str
    lb_policy: str
    connect_timeout: float
    hosts: list[lb.Host]
    balancer: lb.LoadBalancer
    service_host: str = ""
    service_name: str = ""
    service_namespace: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    stats: ClusterStats = field(default_factory=lambda: ClusterStats())

    @property
    def original_dst(self) -> bool:
        return self.type == "ORIGINAL_DST"

    def set_hosts(self, hosts: list[lb.Host]) -> None:
        self.hosts = hosts
        self.balancer = lb.build(self.lb_policy, hosts)


@dataclass(slots=True)
class ListenerConfig:
    name: str
    address: str
    port: int
    direction: str
    route_config_name: str | None
    cluster: str | None
    loggers: tuple[AccessLogger, ...]
    raw: dict[str, Any]

    @property
    def bind_key(self) -> tuple[str, int]:
        return (self.address, self.port)


def _num(v: Any, where: str, lo: float = 0) -> float:
    if not isinstance(v, int | float) or isinstance(v, bool) or v < lo:
        raise ConfigError(f"{where}: expected a number >= {lo}")
    return float(v)


def _port(v: Any, where: str, allow_zero: bool = False) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not (0 if allow_zero else 1) <= v <= 65535:
        raise ConfigError(f"{where}: expected a port number, got {v!r}")
    return v


def compile_hosts(cla: ClusterLoadAssignment, where: str, dns: bool = False) -> list[lb.Host]:
    if not isinstance(cla, dict) or not isinstance(cla.get("endpoints", []), list):
        raise ConfigError(f"{where}: expected a ClusterLoadAssignment")
    hosts: list[lb.Host] = []
    for i, loc in enumerate(cla.get("endpoints", [])):
        lw = f"{where}.endpoints[{i}]"
        if not isinstance(loc, dict) or not isinstance(loc.get("lb_endpoints"), list):
            raise ConfigError(f"{lw}.lb_endpoints: expected a list")
        prio = loc.get("priority", 0)
        if not isinstance(prio, int) or prio < 0:
            raise ConfigError(f"{lw}.priority: expected an integer >= 0")
        for j, ep in enumerate(loc["lb_endpoints"]):
            ew = f"{lw}.lb_endpoints[{j}]"
            if not isinstance(ep, dict) or not isinstance(ep.get("address"), str) or not ep["address"]:
                raise ConfigError(f"{ew}.address: required")
            if not dns:
                try:
                    ipaddress.ip_address(ep["address"])
                except ValueError:
                    raise ConfigError(f"{ew}.address: {ep['address']!r} is not an IP address") from None
            port = _port(ep.get("port"), f"{ew}.port")
            weight = ep.get("load_balancing_weight", 1)
            if not isinstance(weight, int) or weight < 1:
                raise ConfigError(f"{ew}.load_balancing_weight: expected an integer >= 1")
            status = ep.get("health_status", "HEALTHY")
            if status not in ("HEALTHY", "UNHEALTHY", "DRAINING"):
                raise ConfigError(f"{ew}.health_status: unknown {status!r}")
            meta = ep.get("metadata", {})
            if not isinstance(meta, dict):
                raise ConfigError(f"{ew}.metadata: expected an object")
            if status == "HEALTHY":
                hosts.append(lb.Host(ep["address"], port, weight, meta, prio))
    return hosts


def validate_cluster(c: Cluster) -> Cluster:
    if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"]:
        raise ConfigError("Cluster: a name is required")
    w = f"cluster {c['name']!r}"
    if c.get("type") not in _TYPES:
        raise ConfigError(f"{w}.type: expected one of {', '.join(_TYPES)}, got {c.get('type')!r}")
    if c.get("lb_policy", "ROUND_ROBIN") not in lb.POLICIES:
        raise ConfigError(f"{w}.lb_policy: unknown {c.get('lb_policy')!r}")
    if "connect_timeout" in c:
        _num(c["connect_timeout"], f"{w}.connect_timeout", 0.001)
    if "load_assignment" in c:
        compile_hosts(c["load_assignment"], f"{w}.load_assignment", dns=c["type"] == "STRICT_DNS")
    elif c["type"] in ("STATIC", "STRICT_DNS"):
        raise ConfigError(f"{w}: a {c['type']} cluster needs load_assignment")
    meta = c.get("metadata", {})
    if not isinstance(meta, dict):
        raise ConfigError(f"{w}.metadata: expected an object")
    return c


def validate_listener(li: Listener) -> ListenerConfig:
    if not isinstance(li, dict) or not isinstance(li.get("name"), str) or not li["name"]:
        raise ConfigError("Listener: a name is required")
    w = f"listener {li['name']!r}"
    try:
        # a string only: ip_address(5) would accept an integer, which then cannot be bound
        ipaddress.ip_address(li["address"] if isinstance(li.get("address"), str) else "")
    except ValueError:
        raise ConfigError(f"{w}.address: {li.get('address')!r} is not an IP address") from None
    port = _port(li.get("port"), f"{w}.port", allow_zero=True)
    direction = li.get("traffic_direction")
    if direction not in ("OUTBOUND", "INBOUND", "GATEWAY"):
        raise ConfigError(f"{w}.traffic_direction: expected OUTBOUND, INBOUND or GATEWAY")
    if direction == "INBOUND" and not li.get("cluster") and not li.get("route_config_name"):
        raise ConfigError(f"{w}: an INBOUND listener needs cluster or route_config_name")
    loggers = []
    for i, al in enumerate(li.get("access_log", [])):
        aw = f"{w}.access_log[{i}]"
        if not isinstance(al, dict) or not isinstance(al.get("path"), str):
            raise ConfigError(f"{aw}.path: required")
        loggers.append(AccessLogger(al["path"], al.get("encoding", "TEXT"), al.get("format"), aw))
    return ListenerConfig(
        li["name"],
        li["address"],
        port,
        direction,
        li.get("route_config_name"),
        li.get("cluster"),
        tuple(loggers),
        dict(li),
    )


def _special(name: str) -> ClusterState:
    kind = "ORIGINAL_DST" if name != BLACKHOLE else "STATIC"
    return ClusterState(name, kind, "CLUSTER_PROVIDED", 10.0, [], lb.build("ROUND_ROBIN", []))


def _host_signature(hosts: list[lb.Host]) -> list[tuple[Any, ...]]:
    """What a balancer is built from: every field of a host that comes from configuration."""
    return [(h.address, h.port, h.weight, h.priority, h.metadata) for h in hosts]


def build_cluster(
    c: Cluster, assignments: dict[str, ClusterLoadAssignment], previous: ClusterState | None = None
) -> ClusterState:
    """Compile one cluster; reuse ``previous``'s hosts and balancer when a rebuild would be identical.

    Every push carries every resource type's last accepted config, so without reuse an unrelated
    route push would rebuild each cluster's balancer: 65537 table slots in Python for a MAGLEV
    cluster, a 1024-point ring for RING_HASH. Reuse needs the same type, policy and host list (by
    value, in order); the balancer then maps every hash key exactly as a rebuild would, and keeps
    its in-flight counts and round-robin position besides.
    """
    hosts: list[lb.Host]
    if "load_assignment" in c:
        hosts = compile_hosts(c["load_assignment"], f"cluster {c['name']!r}", dns=c["type"] == "STRICT_DNS")
    elif c["name"] in assignments:
        hosts = compile_hosts(assignments[c["name"]], f"endpoints {c['name']!r}")
    else:
        hosts = []
    policy = c.get("lb_policy", "ROUND_ROBIN")
    services = (c.get("metadata", {}).get("istio") or {}).get("services") or [{}]
    svc = services[0]
    same_lb = previous is not None and previous.type == c["type"] and previous.lb_policy == policy
    balancer: lb.LoadBalancer | None = None
    if c["type"] == "STRICT_DNS":
        # The resolved addresses live in the previous state, not in the config: with the same names
        # keep serving them (no gap until the next lookup); the resolver fills a new cluster.
        hosts = []
        if (
            previous is not None
            and previous.type == "STRICT_DNS"
            and previous.raw.get("load_assignment") == c.get("load_assignment")
        ):
            hosts = previous.hosts
            if same_lb:
                balancer = previous.balancer
    elif same_lb and previous is not None and _host_signature(previous.hosts) == _host_signature(hosts):
        hosts, balancer = previous.hosts, previous.balancer
    return ClusterState(
        c["name"],
        c["type"],
        policy,
        float(c.get("connect_timeout", 10.0)),
        hosts,
        balancer if balancer is not None else lb.build(policy, hosts),
        svc.get("host", ""),
        svc.get("name", ""),
        svc.get("namespace", ""),
        dict(c),
    )


@dataclass(slots=True)
class Snapshot:
    """Everything the data plane reads, compiled; plus the raw resources and versions for config_dump."""

    clusters: dict[str, ClusterState] = field(default_factory=dict)
    routes: dict[str, RouteTable] = field(default_factory=dict)
    listeners: dict[str, ListenerConfig] = field(default_factory=dict)
    resources: dict[str, list[Any]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls, resources: dict[str, list[Any]], versions: dict[str, str], previous: Snapshot | None = None
    ) -> Snapshot:
        """Validate and compile every resource type; raise ``ConfigError`` on the first problem.

        ``previous`` (the running snapshot) lends its unchanged clusters' balancers (see
        ``build_cluster``); it is only read, so a rejected push leaves it as it was.

        The validators check the fields they know to be wrong; a field of an unexpected JSON type
        that slips past them (an object where a list belongs, a string for an object) would raise a
        TypeError or AttributeError from deep in the compiler. Pushed config is untrusted input, so
        that too is a ``ConfigError``: the xDS client NACKs it instead of its stream task dying.
        """
        try:
            return cls._build(resources, versions, previous)
        except ConfigError:
            raise
        except (TypeError, AttributeError, KeyError, ValueError) as e:
            raise ConfigError(f"malformed resource: {type(e).__name__}: {e}") from None

    @classmethod
    def _build(
        cls, resources: dict[str, list[Any]], versions: dict[str, str], previous: Snapshot | None
    ) -> Snapshot:
        snap = cls(resources=resources, versions=versions)
        raw_clusters = resources.get(CLUSTER_TYPE, [])
        assignments: dict[str, ClusterLoadAssignment] = {}
        for raw in resources.get(ENDPOINT_TYPE, []):
            cla = cast(ClusterLoadAssignment, raw)
            if not isinstance(cla, dict) or not isinstance(cla.get("cluster_name"), str):
                raise ConfigError("ClusterLoadAssignment: cluster_name is required")
            compile_hosts(cla, f"endpoints {cla['cluster_name']!r}")
            if cla["cluster_name"] in assignments:
                raise ConfigError(f"endpoints {cla['cluster_name']!r}: pushed twice")
            assignments[cla["cluster_name"]] = cla
        for name in (PASSTHROUGH, BLACKHOLE, INBOUND_PASSTHROUGH):
            snap.clusters[name] = _special(name)
        for c in raw_clusters:
            validate_cluster(c)
            if c["name"] in snap.clusters and c["name"] not in (PASSTHROUGH, BLACKHOLE, INBOUND_PASSTHROUGH):
                raise ConfigError(f"cluster {c['name']!r}: pushed twice")
            prev = previous.clusters.get(c["name"]) if previous is not None else None
            snap.clusters[c["name"]] = build_cluster(c, assignments, prev)
        for rc in resources.get(ROUTE_TYPE, []):
            table = compile_route_config(rc)
            if table.name in snap.routes:
                raise ConfigError(f"route {table.name!r}: pushed twice")
            snap.routes[table.name] = table
        binds: dict[tuple[str, int], str] = {}
        for li in resources.get(LISTENER_TYPE, []):
            lc = validate_listener(li)
            if lc.name in snap.listeners:
                raise ConfigError(f"listener {lc.name!r}: pushed twice")
            if lc.port and lc.bind_key in binds:
                raise ConfigError(
                    f"listener {lc.name!r}: {lc.address}:{lc.port} is taken by {binds[lc.bind_key]!r}"
                )
            binds[lc.bind_key] = lc.name
            snap.listeners[lc.name] = lc
        return snap

    def close(self) -> None:
        for li in self.listeners.values():
            for lg in li.loggers:
                lg.close()


def static_resources(bootstrap: dict[str, Any]) -> dict[str, list[Any]]:
    """The ``static_resources`` of a bootstrap file, keyed by type URL."""
    sr = bootstrap.get("static_resources", {})
    if not isinstance(sr, dict):
        raise ConfigError("static_resources: expected an object")
    out: dict[str, list[Any]] = {}
    for key, type_url in (
        ("clusters", CLUSTER_TYPE),
        ("endpoints", ENDPOINT_TYPE),
        ("listeners", LISTENER_TYPE),
        ("routes", ROUTE_TYPE),
    ):
        v = sr.get(key, [])
        if not isinstance(v, list):
            raise ConfigError(f"static_resources.{key}: expected a list")
        out[type_url] = v
    return out
