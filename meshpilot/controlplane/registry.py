"""The service registry: Kubernetes Services/Endpoints/Pods and ServiceEntries/WorkloadEntries
folded into one model of hosts, ports and endpoint instances.

The translator never reads raw Kubernetes objects for routing decisions; it asks this index
"which services exist, on which ports, and which instances back them", the same question istiod's
aggregate registry answers. ``Snapshot`` is plain data (dicts as the API serves them) so that
tests build one from literals and the watcher builds one from list+watch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from meshpilot.api.workload import canonical_revision, canonical_service, workload_name
from meshpilot.controlplane._util import (
    BAD_CONFIG,
    annotations_of,
    as_list,
    key_of,
    labels_match,
    labels_of,
    meta,
    name_of,
    namespace_of,
    spec_of,
)
from meshpilot.controlplane.mesh import MeshConfig

DOMAIN_SUFFIX = "svc.cluster.local"
DEFAULT_CLUSTER_ID = "Kubernetes"
APP_PORTS_ANNOTATION = "meshpilot.io/app-ports"
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"
PROXY_CONTAINER = "istio-proxy"

Resolution = Literal["EDS", "STATIC", "DNS", "NONE"]


@dataclass(frozen=True)
class Snapshot:
    """Everything the translator reads, as the API serves it."""

    services: Sequence[Mapping[str, Any]] = ()
    endpoints: Sequence[Mapping[str, Any]] = ()
    pods: Sequence[Mapping[str, Any]] = ()
    namespaces: Sequence[Mapping[str, Any]] = ()
    service_entries: Sequence[Mapping[str, Any]] = ()
    workload_entries: Sequence[Mapping[str, Any]] = ()
    virtual_services: Sequence[Mapping[str, Any]] = ()
    destination_rules: Sequence[Mapping[str, Any]] = ()
    sidecars: Sequence[Mapping[str, Any]] = ()
    mesh: MeshConfig = field(default_factory=MeshConfig)
    cluster_id: str = DEFAULT_CLUSTER_ID


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    protocol: str
    target_port: int | str | None = None


@dataclass(frozen=True)
class MeshService:
    """One host of the registry: a Kubernetes Service or one host of a ServiceEntry."""

    hostname: str
    name: str
    namespace: str
    ports: tuple[ServicePort, ...]
    addresses: tuple[str, ...]
    source: str  # "Service/ns/name" or "ServiceEntry/ns/name"
    resolution: Resolution
    location: Literal["MESH_INTERNAL", "MESH_EXTERNAL"] = "MESH_INTERNAL"
    export_to: frozenset[str] | None = None  # None: every namespace
    is_kubernetes: bool = True

    def port(self, number: int) -> ServicePort | None:
        for p in self.ports:
            if p.port == number:
                return p
        return None


@dataclass(frozen=True)
class Instance:
    """One endpoint of a service port, with the workload metadata telemetry needs."""

    address: str
    port: int
    labels: Mapping[str, str]
    metadata: Mapping[str, Any]
    source: str = ""  # "Pod/ns/name" when backed by a pod
    weight: int = 0


@dataclass(frozen=True)
class ProxyIdentity:
    """Who is asking for configuration: a pod with a sidecar."""

    id: str
    pod: str
    namespace: str
    ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    # (containerPort the sidecar owns, internal port the app listens on, port name)
    inbound_ports: tuple[tuple[int, int, str], ...] = ()
    cluster_id: str = DEFAULT_CLUSTER_ID

    @property
    def key(self) -> str:
        return f"Pod/{self.namespace}/{self.pod}"


def node_id(ip: str, pod: str, namespace: str) -> str:
    """Istio's sidecar node id: ``sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local``."""
    return f"sidecar~{ip}~{pod}.{namespace}~{namespace}.{DOMAIN_SUFFIX}"


def parse_node_id(value: str) -> tuple[str, str, str]:
    """``(ip, pod, namespace)`` from a node id; ValueError when it is not Istio-shaped."""
    parts = value.split("~")
    if len(parts) != 4 or "." not in parts[2]:
        raise ValueError(f"node id {value!r} is not sidecar~<ip>~<pod>.<namespace>~<domain>")
    pod, _, namespace = parts[2].rpartition(".")
    return parts[1], pod, namespace


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_app_ports(value: Any) -> dict[int, int]:
    """``ISTIO_META_APP_PORTS`` (JSON list of ``{containerPort, internalPort, ...}``) as a map."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    out: dict[int, int] = {}
    if isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping):
                outer, inner = _int(item.get("containerPort")), _int(item.get("internalPort"))
                if outer is not None and inner is not None:
                    out[outer] = inner
    return out


def app_ports(pod: Mapping[str, Any]) -> tuple[tuple[int, int, str], ...]:
    """The ports the sidecar owns and where the app really listens.

    The injector records each containerPort's internal port in the sidecar's env
    ``ISTIO_META_APP_PORTS`` (JSON). An annotation ``meshpilot.io/app-ports: "8080=28080"`` is
    honoured too. Without either, the app container's ``PORT`` env moves its first containerPort;
    otherwise the app listens on the containerPort itself.
    """
    mapping: dict[int, int] = {}
    for container in as_list(spec_of(pod).get("containers")):
        if isinstance(container, Mapping) and container.get("name") == PROXY_CONTAINER:
            for e in as_list(container.get("env")):
                if isinstance(e, Mapping) and e.get("name") == "ISTIO_META_APP_PORTS":
                    mapping.update(parse_app_ports(e.get("value")))
    raw = annotations_of(pod).get(APP_PORTS_ANNOTATION, "")
    for item in re.split(r"[,\s]+", raw.strip()):
        if not item:
            continue
        outer, sep, inner = item.partition("=") if "=" in item else item.partition(":")
        o, i = _int(outer), _int(inner)
        if sep and o is not None and i is not None:
            mapping[o] = i
    result: list[tuple[int, int, str]] = []
    seen: set[int] = set()
    for container in as_list(spec_of(pod).get("containers")):
        if not isinstance(container, Mapping) or container.get("name") == PROXY_CONTAINER:
            continue
        env = {
            str(e.get("name")): e.get("value")
            for e in as_list(container.get("env"))
            if isinstance(e, Mapping) and "value" in e
        }
        for index, cp in enumerate(as_list(container.get("ports"))):
            if not isinstance(cp, Mapping) or str(cp.get("protocol") or "TCP").upper() != "TCP":
                continue
            port = _int(cp.get("containerPort"))
            if port is None or port in seen:
                continue
            seen.add(port)
            internal = mapping.get(port)
            if internal is None and index == 0 and not mapping:
                internal = _int(env.get("PORT"))
            result.append((port, internal or port, str(cp.get("name") or "")))
    return tuple(result)


def proxy_from_pod(pod: Mapping[str, Any], cluster_id: str = DEFAULT_CLUSTER_ID) -> ProxyIdentity:
    status = pod.get("status") if isinstance(pod.get("status"), Mapping) else {}
    assert isinstance(status, Mapping)
    ip = str(status.get("podIP") or "")
    ns = namespace_of(pod)
    spec = spec_of(pod)
    return ProxyIdentity(
        id=node_id(ip, name_of(pod), ns),
        pod=name_of(pod),
        namespace=ns,
        ip=ip,
        labels=labels_of(pod),
        service_account=str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"),
        inbound_ports=app_ports(pod),
        cluster_id=cluster_id,
    )


def workload_metadata(
    *,
    workload: str,
    namespace: str,
    labels: Mapping[str, str],
    service_account: str,
    cluster_id: str,
) -> dict[str, Any]:
    app = labels.get("app") or labels.get("app.kubernetes.io/name") or ""
    version = labels.get("version") or labels.get("app.kubernetes.io/version") or ""
    return {
        "workload": workload,
        "namespace": namespace,
        "app": app,
        "version": version,
        "service_account": service_account,
        "canonical_service": canonical_service(labels, workload),
        "canonical_revision": canonical_revision(labels),
        "cluster": cluster_id,
        "labels": dict(labels),
    }


def pod_metadata(pod: Mapping[str, Any], cluster_id: str) -> dict[str, Any]:
    spec = spec_of(pod)
    return workload_metadata(
        workload=workload_name(pod),
        namespace=namespace_of(pod),
        labels=labels_of(pod),
        service_account=str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"),
        cluster_id=cluster_id,
    )


def parse_export_to(values: Any) -> frozenset[str] | None:
    """``None`` means exported everywhere (absent or ``*``)."""
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    if not isinstance(values, list | tuple):
        return None  # absent (or not a list, which the API refuses): Istio's default, everywhere
    items = frozenset(str(v) for v in values)
    if not items or "*" in items:
        return None
    return items


def exported_to(export_to: frozenset[str] | None, owner_ns: str, proxy_ns: str) -> bool:
    if export_to is None:
        return True
    if "~" in export_to:
        return False
    if "." in export_to and owner_ns == proxy_ns:
        return True
    return proxy_ns in export_to


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status")
    if not isinstance(status, Mapping) or not status.get("podIP"):
        return False
    if meta(pod).get("deletionTimestamp"):
        return False
    for cond in as_list(status.get("conditions")):
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return str(status.get("phase")) == "Running"


class Registry:
    """An index over a ``Snapshot``, built once per push and shared by every proxy's translation."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.mesh = snapshot.mesh
        self.cluster_id = snapshot.cluster_id
        self.pods: dict[tuple[str, str], Mapping[str, Any]] = {
            (namespace_of(p), name_of(p)): p for p in snapshot.pods
        }
        self.namespaces: set[str] = {name_of(n) for n in snapshot.namespaces}
        self.namespaces.update(namespace_of(o) for o in snapshot.services)
        self.namespaces.update(ns for ns, _ in self.pods)
        self._endpoints: dict[tuple[str, str], Mapping[str, Any]] = {
            (namespace_of(e), name_of(e)): e for e in snapshot.endpoints
        }
        self.services: list[MeshService] = []
        self.warnings: list[str] = []
        self._instances: dict[tuple[str, str, int], list[Instance]] = {}
        for svc in sorted(snapshot.services, key=lambda s: (namespace_of(s), name_of(s))):
            try:
                self._add_kubernetes_service(svc)
            except BAD_CONFIG as exc:
                self.warnings.append(f"Service {namespace_of(svc)}/{name_of(svc)} ignored: {exc!r}")
        for se in sorted(snapshot.service_entries, key=lambda s: (namespace_of(s), name_of(s))):
            try:
                self._add_service_entry(se)
            except BAD_CONFIG as exc:
                self.warnings.append(f"ServiceEntry {namespace_of(se)}/{name_of(se)} ignored: {exc!r}")
        self.by_host: dict[str, list[MeshService]] = {}
        for ms in self.services:
            self.by_host.setdefault(ms.hostname, []).append(ms)

    # --- Kubernetes ---------------------------------------------------------------------------

    def _add_kubernetes_service(self, svc: Mapping[str, Any]) -> None:
        ns, name = namespace_of(svc), name_of(svc)
        spec = spec_of(svc)
        external = str(spec.get("externalName") or "") if spec.get("type") == "ExternalName" else ""
        if spec.get("type") == "ExternalName" and not external:
            return
        ports = tuple(
            ServicePort(
                name=str(p.get("name") or ""),
                port=int(p["port"]),
                protocol=str(p.get("protocol") or "TCP"),
                target_port=p.get("targetPort"),
            )
            for p in as_list(spec.get("ports"))
            if isinstance(p, Mapping) and _int(p.get("port")) is not None
        )
        cluster_ip = str(spec.get("clusterIP") or "")
        addresses = (cluster_ip,) if cluster_ip and cluster_ip != "None" else ()
        ms = MeshService(
            hostname=f"{name}.{ns}.{DOMAIN_SUFFIX}",
            name=name,
            namespace=ns,
            ports=ports,
            addresses=addresses,
            source=key_of("Service", svc),
            # an ExternalName Service is a DNS alias: Istio resolves it as a DNS cluster
            resolution="DNS" if external else "EDS",
            export_to=parse_export_to(annotations_of(svc).get(EXPORT_TO_ANNOTATION)),
        )
        self.services.append(ms)
        ep = self._endpoints.get((ns, name))
        for sp in ports:
            if external:
                target = sp.target_port if isinstance(sp.target_port, int) else sp.port
                instances = [
                    Instance(address=external, port=target, labels={}, metadata={"cluster": self.cluster_id})
                ]
            else:
                instances = self._kubernetes_instances(ep, sp, ports)
            self._instances[(ms.source, ms.hostname, sp.port)] = instances

    def _kubernetes_instances(
        self, ep: Mapping[str, Any] | None, sp: ServicePort, all_ports: Sequence[ServicePort]
    ) -> list[Instance]:
        if ep is None:
            return []
        out: list[Instance] = []
        for subset in as_list(ep.get("subsets")):
            if not isinstance(subset, Mapping):
                continue
            ports = [p for p in as_list(subset.get("ports")) if isinstance(p, Mapping)]
            target: int | None = None
            for p in ports:
                if str(p.get("name") or "") == sp.name:
                    target = _int(p.get("port"))
                    break
            if target is None and len(ports) == 1 and len(all_ports) == 1:
                target = _int(ports[0].get("port"))
            if target is None:
                continue
            for addr in as_list(subset.get("addresses")):
                if not isinstance(addr, Mapping) or not addr.get("ip"):
                    continue
                out.append(self._instance_for_address(addr, target))
        out.sort(key=lambda i: (i.address, i.port))
        return out

    def _instance_for_address(self, addr: Mapping[str, Any], port: int) -> Instance:
        ref = addr.get("targetRef")
        pod = None
        if isinstance(ref, Mapping) and ref.get("kind", "Pod") == "Pod":
            pod = self.pods.get((str(ref.get("namespace") or ""), str(ref.get("name") or "")))
        if pod is None:
            return Instance(
                address=str(addr["ip"]), port=port, labels={}, metadata={"cluster": self.cluster_id}
            )
        return Instance(
            address=str(addr["ip"]),
            port=port,
            labels=labels_of(pod),
            metadata=pod_metadata(pod, self.cluster_id),
            source=key_of("Pod", pod),
        )

    # --- ServiceEntry -------------------------------------------------------------------------

    def _add_service_entry(self, se: Mapping[str, Any]) -> None:
        ns = namespace_of(se)
        spec = spec_of(se)
        resolution_raw = str(spec.get("resolution") or "NONE").upper()
        resolution: Resolution = (
            "STATIC"
            if resolution_raw == "STATIC"
            else "DNS"
            if resolution_raw in ("DNS", "DNS_ROUND_ROBIN")
            else "NONE"
        )
        location: Literal["MESH_INTERNAL", "MESH_EXTERNAL"] = (
            "MESH_INTERNAL" if spec.get("location") == "MESH_INTERNAL" else "MESH_EXTERNAL"
        )
        ports = tuple(
            ServicePort(
                name=str(p.get("name") or ""),
                port=int(p["number"]),
                protocol=str(p.get("protocol") or "TCP"),
                target_port=_int(p.get("targetPort")),
            )
            for p in as_list(spec.get("ports"))
            if isinstance(p, Mapping) and _int(p.get("number")) is not None
        )
        addresses = tuple(str(a) for a in as_list(spec.get("addresses")))
        export_to = parse_export_to(spec.get("exportTo"))
        source = key_of("ServiceEntry", se)
        for host in as_list(spec.get("hosts")):
            host = str(host)
            ms = MeshService(
                hostname=host,
                name=host.split(".")[0] if not host.startswith("*") else host,
                namespace=ns,
                ports=ports,
                addresses=addresses,
                source=source,
                resolution=resolution,
                location=location,
                export_to=export_to,
                is_kubernetes=False,
            )
            self.services.append(ms)
            for sp in ports:
                self._instances[(source, host, sp.port)] = self._service_entry_instances(se, ms, sp)

    def _service_entry_instances(
        self, se: Mapping[str, Any], ms: MeshService, sp: ServicePort
    ) -> list[Instance]:
        spec = spec_of(se)
        ns = ms.namespace
        default_port = sp.target_port if isinstance(sp.target_port, int) else sp.port
        out: list[Instance] = []
        for ep in as_list(spec.get("endpoints")):
            if not isinstance(ep, Mapping) or not ep.get("address"):
                continue
            port_map = ep.get("ports") or {}
            port = _int(port_map.get(sp.name)) if isinstance(port_map, Mapping) else None
            labels = {str(k): str(v) for k, v in (ep.get("labels") or {}).items()}
            out.append(
                Instance(
                    address=str(ep["address"]),
                    port=port or default_port,
                    labels=labels,
                    # An inline endpoint names no workload (the host is not one): telemetry reports
                    # destination_workload "unknown", as Istio does, rather than a guess from the host.
                    metadata=workload_metadata(
                        workload="",
                        namespace=ns,
                        labels=labels,
                        service_account=str(ep.get("serviceAccount") or ""),
                        cluster_id=self.cluster_id,
                    ),
                    weight=_int(ep.get("weight")) or 0,
                )
            )
        selector = spec.get("workloadSelector")
        if isinstance(selector, Mapping) and isinstance(selector.get("labels"), Mapping):
            sel = {str(k): str(v) for k, v in selector["labels"].items()}
            for (pns, _), pod in sorted(self.pods.items()):
                if pns != ns or not labels_match(sel, labels_of(pod)) or not _pod_ready(pod):
                    continue
                status = pod.get("status")
                assert isinstance(status, Mapping)
                out.append(
                    Instance(
                        address=str(status["podIP"]),
                        port=default_port,
                        labels=labels_of(pod),
                        metadata=pod_metadata(pod, self.cluster_id),
                        source=key_of("Pod", pod),
                    )
                )
            for we in self.snapshot.workload_entries:
                wspec = spec_of(we)
                wlabels = {str(k): str(v) for k, v in (wspec.get("labels") or {}).items()}
                if namespace_of(we) != ns or not labels_match(sel, wlabels) or not wspec.get("address"):
                    continue
                wports = wspec.get("ports") or {}
                port = _int(wports.get(sp.name)) if isinstance(wports, Mapping) else None
                out.append(
                    Instance(
                        address=str(wspec["address"]),
                        port=port or default_port,
                        labels=wlabels,
                        metadata=workload_metadata(
                            workload=name_of(we),
                            namespace=ns,
                            labels=wlabels,
                            service_account=str(wspec.get("serviceAccount") or ""),
                            cluster_id=self.cluster_id,
                        ),
                        source=key_of("WorkloadEntry", we),
                        weight=_int(wspec.get("weight")) or 0,
                    )
                )
        if not out and ms.resolution == "DNS" and not ms.hostname.startswith("*"):
            out.append(
                Instance(
                    address=ms.hostname, port=default_port, labels={}, metadata={"cluster": self.cluster_id}
                )
            )
        return out

    # --- queries ------------------------------------------------------------------------------

    def instances(self, service: MeshService, port: int) -> list[Instance]:
        return self._instances.get((service.source, service.hostname, port), [])

    def visible_services(self, namespace: str) -> list[MeshService]:
        return [s for s in self.services if exported_to(s.export_to, s.namespace, namespace)]

    def services_selecting(self, proxy: ProxyIdentity) -> list[tuple[MeshService, ServicePort, int]]:
        """Kubernetes services whose endpoints include this proxy's pod, with the pod port."""
        out: list[tuple[MeshService, ServicePort, int]] = []
        for ms in self.services:
            if not ms.is_kubernetes or ms.namespace != proxy.namespace:
                continue
            for sp in ms.ports:
                for inst in self.instances(ms, sp.port):
                    if inst.source == proxy.key:
                        out.append((ms, sp, inst.port))
        return out

    def pod(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.pods.get((namespace, name))


def expand_host(host: str, namespace: str, known: Iterable[str] = ()) -> str:
    """Turn a config host (VirtualService/DestinationRule ``host``) into a registry hostname.

    Short names are qualified with the config's namespace as Istio does. ``name.ns`` and
    ``name.ns.svc`` are qualified too when that names a known service, as Kubernetes DNS would.
    """
    if "*" in host or host.endswith("." + DOMAIN_SUFFIX):
        return host
    if "." not in host:
        return f"{host}.{namespace}.{DOMAIN_SUFFIX}"
    known_set = known if isinstance(known, set | frozenset | dict) else set(known)
    if host.endswith(".svc"):
        candidate = f"{host}.cluster.local"
        if candidate in known_set:
            return candidate
    elif host.count(".") == 1:
        candidate = f"{host}.{DOMAIN_SUFFIX}"
        if candidate in known_set:
            return candidate
    return host


def host_matches(pattern: str, hostname: str) -> bool:
    """Istio's host matching: exact, or ``*.suffix`` / ``*`` wildcards on either side."""
    if pattern == hostname or pattern == "*":
        return True
    if pattern.startswith("*"):
        suffix = pattern[1:]
        if hostname.startswith("*"):
            return hostname[1:].endswith(suffix)
        return hostname.endswith(suffix)
    if hostname.startswith("*"):
        return pattern.endswith(hostname[1:])
    return False
