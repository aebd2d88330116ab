"""What the cluster stores but the local mesh does not act on yet, said out loud.

meshpilot accepts every Istio kind (so the same YAML works here and on a real cluster), but some
of them, and some fields of the ones it does implement, have no effect yet. Silently storing them
misleads: a default-deny AuthorizationPolicy that lets traffic through looks like a broken mesh.
The API server turns what this module finds into Kubernetes ``Warning`` response headers on every
create and update, which ``meshpilot apply`` and ``kubectl`` print on stderr.

This is the one list to shrink when a feature lands: drop the kind from ``NOT_ENFORCED_KINDS``, the
field from ``NOT_ENFORCED_FIELDS``, or add the mesh-config field to ``MESH_FIELDS_APPLIED``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import yaml

__all__ = [
    "MESH_FIELDS_APPLIED",
    "NOT_ENFORCED_FIELDS",
    "NOT_ENFORCED_KINDS",
    "not_enforced",
]

#: Istio kinds that are validated and stored but have no effect at all, with the reason.
NOT_ENFORCED_KINDS: Mapping[str, str] = {
    "AuthorizationPolicy": "meshpilot's sidecars do not implement authorization yet",
    "PeerAuthentication": "meshpilot's sidecars do not implement mutual TLS yet",
    "RequestAuthentication": "meshpilot's sidecars do not validate request JWTs yet",
    "EnvoyFilter": "meshpilot's sidecars do not apply EnvoyFilter patches",
    "Telemetry": (
        "meshpilot's sidecars do not implement the Telemetry API yet (metrics are always on; "
        "access logs follow the mesh config's accessLogFile)"
    ),
    "Gateway": "meshpilot runs no ingress or egress gateway yet",
    "WorkloadGroup": "meshpilot does not register workloads from a WorkloadGroup yet",
}

#: Fields of kinds that do work, which are ignored: kind -> (field path, reason). A path segment
#: ending in ``[]`` walks every item of a list; the field is reported where it is set.
NOT_ENFORCED_FIELDS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "Sidecar": (
        ("spec.ingress", "inbound listeners come from the pod's container ports"),
        ("spec.inboundConnectionPool", "inbound connection pools are not implemented yet"),
        ("spec.egress[].bind", "outbound listeners always bind the pod IP"),
        ("spec.egress[].captureMode", "the app reaches its sidecar through HTTP_PROXY, not traffic capture"),
        ("spec.egress[].port.protocol", "egress listeners treat every port as HTTP"),
        ("spec.outboundTrafficPolicy.egressProxy", "no egress proxy is supported yet"),
    ),
    "DestinationRule": (
        ("spec.trafficPolicy.tls", "meshpilot's sidecars do not originate TLS yet"),
        ("spec.trafficPolicy.portLevelSettings[].tls", "meshpilot's sidecars do not originate TLS yet"),
        ("spec.subsets[].trafficPolicy.tls", "meshpilot's sidecars do not originate TLS yet"),
        (
            "spec.subsets[].trafficPolicy.portLevelSettings[].tls",
            "meshpilot's sidecars do not originate TLS yet",
        ),
    ),
}

#: Mesh-config fields (the ``mesh`` key of ConfigMap ``istio``/``istio-<rev>`` in istio-system)
#: that istiod and the sidecars act on. Any other field set there draws a warning.
MESH_FIELDS_APPLIED: frozenset[str] = frozenset(
    {
        "accessLogFile",
        "accessLogFormat",
        "accessLogEncoding",
        "outboundTrafficPolicy",
        "connectTimeout",
        "rootNamespace",
        # the injector points every proxy at its revision's istiod Service, which is what this names
        "defaultConfig.discoveryAddress",
    }
)

#: Mesh-config fields that are only honest when they say what meshpilot does anyway.
_MESH_FIELDS_FIXED: Mapping[str, object] = {"trustDomain": "cluster.local"}

_MESH_REASON = "meshpilot's control plane and sidecars ignore it"
_MESH_REASONS: Mapping[str, str] = {
    "defaultConfig.proxyStatsMatcher": "meshpilot's sidecars export their fixed set of Istio metrics",
    "defaultConfig.proxyMetadata": "sidecars take their metadata from the injected environment",
    "trustDomain": "workload identities always use the trust domain cluster.local",
}


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if namespace else name


def _walk(value: Any, parts: list[str], prefix: str) -> Iterator[str]:
    """Concrete paths (``spec.egress[1].bind``) at which the pattern's field is set."""
    if not parts:
        if value is not None:
            yield prefix
        return
    head, rest = parts[0], parts[1:]
    many = head.endswith("[]")
    key = head[:-2] if many else head
    if not isinstance(value, Mapping) or value.get(key) is None:
        return
    child = value[key]
    path = f"{prefix}.{key}" if prefix else key
    if not many:
        yield from _walk(child, rest, path)
    elif isinstance(child, list):
        for index, item in enumerate(child):
            yield from _walk(item, rest, f"{path}[{index}]")


def _mesh_fields(doc: Mapping[str, Any]) -> Iterator[str]:
    """Every field set in a mesh config, ``defaultConfig`` one level down (each is its own feature)."""
    for key, value in doc.items():
        if value is None:
            continue
        if key == "defaultConfig" and isinstance(value, Mapping):
            for sub, sub_value in value.items():
                if sub_value is not None:
                    yield f"defaultConfig.{sub}"
        else:
            yield str(key)


def _mesh_warnings(obj: Mapping[str, Any]) -> list[str]:
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    if meta.get("namespace") != "istio-system" or not (name == "istio" or name.startswith("istio-")):
        return []
    text = (obj.get("data") or {}).get("mesh")
    if not isinstance(text, str):
        return []
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return []  # istiod reports a mesh config it cannot parse; nothing here is enforced or not
    if not isinstance(doc, Mapping):
        return []
    out: list[str] = []
    for field in _mesh_fields(doc):
        if field in MESH_FIELDS_APPLIED:
            continue
        top = field.split(".", 1)[0]
        if top in _MESH_FIELDS_FIXED and doc.get(top) == _MESH_FIELDS_FIXED[top]:
            continue
        reason = _MESH_REASONS.get(field, _MESH_REASON)
        out.append(f"ConfigMap {_name(obj)}: mesh field {field} is stored but not enforced: {reason}")
    return out


def not_enforced(obj: Mapping[str, Any]) -> list[str]:
    """One warning per kind or field of ``obj`` that the local mesh stores but does not act on."""
    kind = str(obj.get("kind", ""))
    if kind in NOT_ENFORCED_KINDS:
        return [f"{kind} {_name(obj)} is stored but not enforced: {NOT_ENFORCED_KINDS[kind]}"]
    if kind == "ConfigMap":
        return _mesh_warnings(obj)
    out: list[str] = []
    for pattern, reason in NOT_ENFORCED_FIELDS.get(kind, ()):
        for path in _walk(obj, pattern.split("."), ""):
            out.append(f"{kind} {_name(obj)}: {path} is stored but not enforced: {reason}")
    return out
