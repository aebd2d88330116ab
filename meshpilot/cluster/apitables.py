"""Server-side printing: ``meta.k8s.io/v1`` Tables for ``kubectl get``.

kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints whatever
columns the server returns; without Tables it can only show NAME and AGE. The columns and the
age format follow Kubernetes' own printers (and the Istio CRDs' additionalPrinterColumns), so
``kubectl get pods`` reads as it does on a real cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
Column = tuple[str, str, int]  # name, type, priority (1 = only with -o wide)
Cells = Callable[[Obj], list[Any]]


def human_duration(seconds: float) -> str:
    """Kubernetes' HumanDuration: ``45s``, ``3m20s``, ``47m``, ``5h3m``, ``30h``, ``3d4h``, ``200d``."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if years < 8:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"


def age(obj: Obj) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    try:
        created = datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - created).total_seconds())


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def _none(value: Any) -> str:
    return "<none>" if value in (None, "", []) else str(value)


def _pod_cells(pod: Obj) -> list[Any]:
    statuses = _status(pod).get("containerStatuses") or []
    containers = _spec(pod).get("containers") or []
    ready = sum(1 for cs in statuses if cs.get("ready"))
    restarts = sum(int(cs.get("restartCount") or 0) for cs in statuses)
    reason = _status(pod).get("reason") or _status(pod).get("phase") or "Pending"
    for cs in statuses:
        state = cs.get("state") or {}
        waiting = (state.get("waiting") or {}).get("reason")
        terminated = state.get("terminated") or {}
        if waiting:
            reason = waiting
        elif terminated.get("reason") and reason == "Running":
            reason = terminated["reason"]
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    node = _spec(pod).get("nodeName")
    return [
        f"{ready}/{len(containers)}",
        reason,
        restarts,
        age(pod),
        _none(_status(pod).get("podIP")),
        _none(node),
    ]


def _selector_text(selector: Obj | None) -> str:
    if not selector:
        return "<none>"
    labels = selector.get("matchLabels", selector if "matchExpressions" not in selector else {})
    parts = [f"{k}={v}" for k, v in sorted((labels or {}).items()) if isinstance(v, str)]
    for expr in selector.get("matchExpressions") or []:
        op = str(expr.get("operator", "")).lower()
        values = ",".join(expr.get("values") or [])
        parts.append(f"{expr.get('key')} {op} ({values})" if values else f"{expr.get('key')}")
    return ",".join(parts) or "<none>"


def _containers(obj: Obj) -> tuple[str, str]:
    template = (_spec(obj).get("template") or {}).get("spec") or {}
    containers = template.get("containers") or []
    return (
        ",".join(str(c.get("name")) for c in containers) or "<none>",
        ",".join(str(c.get("image")) for c in containers) or "<none>",
    )


def _deployment_cells(d: Obj) -> list[Any]:
    status = _status(d)
    names, images = _containers(d)
    return [
        f"{int(status.get('readyReplicas') or 0)}/{int(_spec(d).get('replicas', 1))}",
        int(status.get("updatedReplicas") or 0),
        int(status.get("availableReplicas") or 0),
        age(d),
        names,
        images,
        _selector_text(_spec(d).get("selector")),
    ]


def _replicaset_cells(rs: Obj) -> list[Any]:
    status = _status(rs)
    names, images = _containers(rs)
    return [
        int(_spec(rs).get("replicas", 1)),
        int(status.get("replicas") or 0),
        int(status.get("readyReplicas") or 0),
        age(rs),
        names,
        images,
        _selector_text(_spec(rs).get("selector")),
    ]


def _service_ports(svc: Obj) -> str:
    ports = []
    for p in _spec(svc).get("ports") or []:
        text = f"{p.get('port')}"
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        ports.append(f"{text}/{p.get('protocol', 'TCP')}")
    return ",".join(ports) or "<none>"


def _service_cells(svc: Obj) -> list[Any]:
    spec = _spec(svc)
    external = ",".join(spec.get("externalIPs") or []) or (
        spec.get("externalName") if spec.get("type") == "ExternalName" else None
    )
    return [
        spec.get("type", "ClusterIP"),
        _none(spec.get("clusterIP")),
        _none(external),
        _service_ports(svc),
        age(svc),
        _selector_text(spec.get("selector")),
    ]


def _endpoints_cells(ep: Obj) -> list[Any]:
    addresses = []
    for subset in ep.get("subsets") or []:
        for address in subset.get("addresses") or []:
            for port in subset.get("ports") or [{}]:
                addresses.append(
                    f"{address.get('ip')}:{port.get('port')}" if port else str(address.get("ip"))
                )
    text = ",".join(addresses[:3])
    if len(addresses) > 3:
        text += f" + {len(addresses) - 3} more..."
    return [_none(text), age(ep)]


def _pdb_cells(pdb: Obj) -> list[Any]:
    spec = _spec(pdb)
    return [
        "N/A" if spec.get("minAvailable") is None else spec["minAvailable"],
        "N/A" if spec.get("maxUnavailable") is None else spec["maxUnavailable"],
        int(_status(pdb).get("disruptionsAllowed") or 0),
        age(pdb),
    ]


def _since(stamp: Any) -> str:
    if not stamp:
        return "<unknown>"
    try:
        moment = datetime.strptime(str(stamp)[:19] + "Z", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - moment).total_seconds())


def _event_cells(event: Obj) -> list[Any]:
    """Kubernetes' Event columns; the name comes last (and only with -o wide)."""
    involved = event.get("involvedObject") or {}
    source = event.get("source") or {}
    last = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
    )
    first = event.get("firstTimestamp") or event.get("eventTime") or last
    return [
        _since(last),
        event.get("type", ""),
        event.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        involved.get("fieldPath", ""),
        ", ".join(v for v in (source.get("component"), source.get("host")) if v),
        event.get("message", ""),
        _since(first),
        int(event.get("count") or 1),
        (event.get("metadata") or {}).get("name", ""),
    ]


def _join(values: Any) -> str:
    if not values:
        return ""
    return "[" + ",".join(str(v) for v in values) + "]" if isinstance(values, list) else str(values)


NAME: Column = ("Name", "string", 0)
AGE: Column = ("Age", "string", 0)

TABLES: dict[tuple[str, str], tuple[list[Column], Cells]] = {
    ("", "pods"): (
        [
            NAME,
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "integer", 0),
            AGE,
            ("IP", "string", 1),
            ("Node", "string", 1),
        ],
        _pod_cells,
    ),
    ("apps", "deployments"): (
        [
            NAME,
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            AGE,
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        _deployment_cells,
    ),
    ("apps", "replicasets"): (
        [
            NAME,
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            AGE,
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        _replicaset_cells,
    ),
    ("", "services"): (
        [
            NAME,
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            AGE,
            ("Selector", "string", 1),
        ],
        _service_cells,
    ),
    ("", "endpoints"): ([NAME, ("Endpoints", "string", 0), AGE], _endpoints_cells),
    ("", "events"): (
        [
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Subobject", "string", 1),
            ("Source", "string", 1),
            ("Message", "string", 0),
            ("First Seen", "string", 1),
            ("Count", "integer", 1),
            ("Name", "string", 1),
        ],
        _event_cells,
    ),
    ("", "namespaces"): (
        [NAME, ("Status", "string", 0), AGE],
        lambda ns: [
            "Terminating" if (ns.get("metadata") or {}).get("deletionTimestamp") else "Active",
            age(ns),
        ],
    ),
    ("", "configmaps"): (
        [NAME, ("Data", "integer", 0), AGE],
        lambda cm: [len(cm.get("data") or {}) + len(cm.get("binaryData") or {}), age(cm)],
    ),
    ("", "secrets"): (
        [NAME, ("Type", "string", 0), ("Data", "integer", 0), AGE],
        lambda s: [
            s.get("type", "Opaque"),
            len(s.get("data") or {}) + len(s.get("stringData") or {}),
            age(s),
        ],
    ),
    ("policy", "poddisruptionbudgets"): (
        [
            NAME,
            ("Min Available", "string", 0),
            ("Max Unavailable", "string", 0),
            ("Allowed Disruptions", "integer", 0),
            AGE,
        ],
        _pdb_cells,
    ),
    # Istio's additionalPrinterColumns
    ("networking.istio.io", "virtualservices"): (
        [NAME, ("Gateways", "string", 0), ("Hosts", "string", 0), AGE],
        lambda vs: [_join(_spec(vs).get("gateways")), _join(_spec(vs).get("hosts")), age(vs)],
    ),
    ("networking.istio.io", "destinationrules"): (
        [NAME, ("Host", "string", 0), AGE],
        lambda dr: [str(_spec(dr).get("host", "")), age(dr)],
    ),
    ("networking.istio.io", "serviceentries"): (
        [NAME, ("Hosts", "string", 0), ("Location", "string", 0), ("Resolution", "string", 0), AGE],
        lambda se: [
            _join(_spec(se).get("hosts")),
            str(_spec(se).get("location", "")),
            str(_spec(se).get("resolution", "")),
            age(se),
        ],
    ),
}


def wants_table(accept: str) -> bool:
    """Does the Accept header ask for a meta.k8s.io Table (as kubectl get does)?"""
    for part in accept.split(","):
        params = {p.strip() for p in part.split(";")[1:]}
        if "as=Table" in params and "g=meta.k8s.io" in params:
            return True
    return False


def _partial(obj: Obj) -> Obj:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def table(
    key: tuple[str, str], items: list[Obj], resource_version: str, include_object: str | None = None
) -> Obj:
    """A ``meta.k8s.io/v1`` Table for ``items`` of resource ``key``."""
    columns, cells = TABLES.get(key, ([NAME, AGE], lambda obj: [age(obj)]))
    rows = []
    for obj in items:
        named = columns[0] == NAME  # Events lead with LAST SEEN; their cells carry the name
        row: Obj = {
            "cells": [(obj.get("metadata") or {}).get("name", ""), *cells(obj)] if named else cells(obj)
        }
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = _partial(obj)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {
                "name": name,
                "type": type_,
                "format": "name" if name == "Name" else "",
                "description": "",
                "priority": prio,
            }
            for name, type_, prio in columns
        ],
        "rows": rows,
    }
