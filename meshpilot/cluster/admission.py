"""Admission: what happens to an object between the API request and the store.

The API server calls ``admit`` for every create and update after schema validation; the
controllers call it for the pods they create, so controller-made pods get sidecars too.

- Services: a ClusterIP from ``info.service_network`` on create (kept on update: the field is
  immutable, as in Kubernetes), ``None`` for headless, port defaults (protocol, targetPort).
- Pods: Kubernetes' defaults (restartPolicy, serviceAccountName, terminationGracePeriodSeconds)
  and sidecar injection (``meshpilot.cluster.injection``).
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any, Literal

from meshpilot.cluster import injection, ipam
from meshpilot.cluster.events import NODE_NAME
from meshpilot.cluster.objects import DEPLOYMENTS, NAMESPACES, PODS, SERVICES, Obj, labels_of, namespace_of
from meshpilot.cluster.state import ClusterInfo
from meshpilot.store import NotFound, ResourceKey, Store

# ClusterIPs handed out but maybe not stored yet (an ``apply`` admits every item before it writes
# any), per cluster name: ip -> monotonic time of the grant
_RECENT_IPS: dict[str, dict[str, float]] = {}
_RECENT_TTL = 60.0
_IP_LOCK = threading.Lock()


class AdmissionError(Exception):
    """Refused by admission; the API server answers 422 (or 403) with this message."""

    def __init__(self, message: str, *, code: int = 422) -> None:
        super().__init__(message)
        self.code = code


def admit(
    store: Store,
    info: ClusterInfo,
    key: ResourceKey,
    obj: dict[str, Any],
    operation: Literal["CREATE", "UPDATE"],
    old: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the object to store (possibly mutated) or raise ``AdmissionError``."""
    if key == SERVICES:
        return _admit_service(store, info, obj, operation, old)
    if key == NAMESPACES:
        return _admit_namespace(obj)
    if key == PODS and operation == "CREATE":
        return _admit_pod(store, info, obj)
    return obj


# ---------------------------------------------------------------- Namespaces

NAME_LABEL = "kubernetes.io/metadata.name"


def _admit_namespace(obj: Obj) -> Obj:
    """Every namespace carries ``kubernetes.io/metadata.name=<name>`` (the API server has set it on
    create and update since Kubernetes 1.21), so selectors such as a namespaceSelector or
    ``get ns -l kubernetes.io/metadata.name=production`` can pick a namespace by name."""
    name = (obj.get("metadata") or {}).get("name")
    if not name or labels_of(obj).get(NAME_LABEL) == name:
        return obj
    out = copy.deepcopy(obj)
    out["metadata"].setdefault("labels", {})[NAME_LABEL] = name
    return out


# ---------------------------------------------------------------- Services


def _admit_service(store: Store, info: ClusterInfo, obj: Obj, operation: str, old: Obj | None) -> Obj:
    out = copy.deepcopy(obj)
    spec: Obj = out.setdefault("spec", {})
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    ports = spec.get("ports") or []
    if len(ports) > 1:
        for i, port in enumerate(ports):
            if not port.get("name"):
                raise AdmissionError(
                    f"spec.ports[{i}].name: Required value: must be specified when there is more than one port"
                )
    if spec.get("type") == "ExternalName":
        spec.pop("clusterIP", None)
        return out
    old_ip = ((old or {}).get("spec") or {}).get("clusterIP") if operation == "UPDATE" else None
    wanted = spec.get("clusterIP")
    if old_ip:
        if wanted and wanted != old_ip:
            raise AdmissionError(f"spec.clusterIP: Invalid value: {wanted!r}: field is immutable")
        spec["clusterIP"] = old_ip
    elif wanted == "None":
        pass
    else:
        spec["clusterIP"] = _allocate_cluster_ip(store, info, wanted)
    spec["clusterIPs"] = [spec["clusterIP"]]
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("type", "ClusterIP")
    return out


def _allocate_cluster_ip(store: Store, info: ClusterInfo, wanted: str | None) -> str:
    services, _ = store.list(SERVICES)
    used = {str(s.get("spec", {}).get("clusterIP")) for s in services if s.get("spec", {}).get("clusterIP")}
    pool = ipam.service_range(info.index)
    with _IP_LOCK:
        recent = _RECENT_IPS.setdefault(info.name, {})
        moment = time.monotonic()
        for ip, granted in list(recent.items()):
            if moment - granted > _RECENT_TTL:
                del recent[ip]
        if wanted:
            if not pool.contains(wanted):
                raise AdmissionError(
                    f"spec.clusterIP: Invalid value: {wanted!r}: provided IP is not in the valid range "
                    f"(127.{info.index}.128.1-127.{info.index}.255.254)"
                )
            if wanted in used or wanted in recent:
                raise AdmissionError(
                    f"spec.clusterIP: Invalid value: {wanted!r}: provided IP is already allocated"
                )
            recent[wanted] = moment
            return wanted
        pool.sync(used | set(recent))
        try:
            ip = pool.allocate()
        except ipam.RangeExhausted as exc:
            raise AdmissionError(f"spec.clusterIP: {exc}", code=500) from None
        recent[ip] = moment
        return ip


# ---------------------------------------------------------------- Pods


def running_revisions(store: Store) -> set[str]:
    """Control plane revisions with a Deployment in istio-system (app=istiod) that wants replicas."""
    deployments, _ = store.list(DEPLOYMENTS, namespace="istio-system")
    out: set[str] = set()
    for deployment in deployments:
        labels = labels_of(deployment)
        if labels.get("app") != "istiod":
            continue
        if int(deployment.get("spec", {}).get("replicas", 1) or 0) <= 0:
            continue
        out.add(labels.get("istio.io/rev", "default"))
    return out


def _admit_pod(store: Store, info: ClusterInfo, obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    spec: Obj = out.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    # the cluster has one node, so binding happens here: `get pods -o wide` shows NODE and
    # `--field-selector spec.nodeName=meshpilot` selects, as after kube-scheduler's binding
    spec.setdefault("nodeName", NODE_NAME)
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")
    namespace_name = namespace_of(out) or "default"
    try:
        namespace = store.get(NAMESPACES, None, namespace_name)
    except NotFound:
        namespace = None
    revision = injection.revision_wanted(namespace, out, running_revisions(store))
    if revision is None:
        return out
    return injection.inject(
        out,
        revision=revision,
        cluster_id=info.name,
        api_host=info.api_host,
        namespace=namespace_name,
        discovery=_discovery_ip(store, revision),
    )


def _discovery_ip(store: Store, revision: str) -> str | None:
    """``clusterIP:15010`` of the revision's istiod Service: sidecars have no DNS to resolve
    ``istiod.istio-system.svc`` with; None (keep the name) when the Service does not exist yet."""
    name = "istiod" if revision in ("", "default") else f"istiod-{revision}"
    try:
        svc = store.get(SERVICES, "istio-system", name)
    except NotFound:
        return None
    ip = svc.get("spec", {}).get("clusterIP")
    return f"{ip}:15010" if ip and ip != "None" else None
