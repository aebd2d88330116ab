"""Endpoints from the pods that match each Service's selector (sans-IO).

Ready pods go to ``addresses``, pods that are not ready yet to ``notReadyAddresses``; a terminating
pod is left out at once (unless the Service publishes not-ready addresses), which is what lets a
pod leave the load balancers before it receives SIGTERM. Named targetPorts are resolved per pod,
so pods that name a port differently land in different subsets, as in Kubernetes.
"""

from __future__ import annotations

from typing import Any

from meshpilot.cluster.objects import (
    Obj,
    is_terminating,
    labels_of,
    matches_map,
    name_of,
    namespace_of,
    pod_is_ready,
)

MANAGED_BY = "meshpilot.io/managed-by"
CONTROLLER_NAME = "endpoints-controller"


def _resolve_target(port: Obj, pod: Obj) -> int | None:
    target: Any = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    text = str(target)
    if text.isdigit():
        return int(text)
    for container in pod.get("spec", {}).get("containers") or []:
        for cport in container.get("ports") or []:
            if cport.get("name") == text:
                return int(cport["containerPort"])
    return None


def desired_subsets(service: Obj, pods: list[Obj]) -> list[Obj]:
    spec = service.get("spec", {})
    selector = spec.get("selector")
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple[tuple[str, int, str], ...], dict[str, list[Obj]]] = {}
    for pod in pods:
        if namespace_of(pod) != namespace_of(service) or not matches_map(selector, labels_of(pod)):
            continue
        ip = pod.get("status", {}).get("podIP")
        if not ip or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        if is_terminating(pod) and not publish_not_ready:
            continue
        ports: list[tuple[str, int, str]] = []
        for port in spec.get("ports") or []:
            number = _resolve_target(port, pod)
            if number is not None:
                ports.append((str(port.get("name") or ""), number, str(port.get("protocol") or "TCP")))
        key = tuple(ports)
        group = groups.setdefault(key, {"addresses": [], "notReadyAddresses": []})
        address = {
            "ip": ip,
            "nodeName": "meshpilot",
            "targetRef": {
                "kind": "Pod",
                "namespace": namespace_of(pod),
                "name": name_of(pod),
                "uid": pod.get("metadata", {}).get("uid", ""),
            },
        }
        ready = pod_is_ready(pod) or publish_not_ready
        group["addresses" if ready else "notReadyAddresses"].append(address)
    subsets: list[Obj] = []
    for ports_key, group in sorted(groups.items()):
        subset: Obj = {}
        for kind in ("addresses", "notReadyAddresses"):
            if group[kind]:
                subset[kind] = sorted(group[kind], key=lambda a: tuple(int(x) for x in a["ip"].split(".")))
        ports_out = []
        for pname, number, proto in ports_key:
            entry: Obj = {"port": number, "protocol": proto}
            if pname:
                entry["name"] = pname
            ports_out.append(entry)
        if ports_out:
            subset["ports"] = ports_out
        subsets.append(subset)
    return subsets


def desired_endpoints(service: Obj, pods: list[Obj]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": name_of(service),
            "namespace": namespace_of(service),
            "labels": dict(labels_of(service)),
            "annotations": {MANAGED_BY: CONTROLLER_NAME},
        },
        "subsets": desired_subsets(service, pods),
    }


def serves(endpoints: list[Obj], ip: str) -> bool:
    """Whether any Endpoints still sends traffic to ``ip`` (a ready address)."""
    for ep in endpoints:
        for subset in ep.get("subsets") or []:
            for address in subset.get("addresses") or []:
                if address.get("ip") == ip:
                    return True
    return False
