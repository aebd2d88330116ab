"""Small facts about Kubernetes objects that the runtime, the controllers and admission share.

Resource keys, RFC 3339 timestamps, label selectors (both Service-style maps and
``metav1.LabelSelector`` with matchExpressions), owner references and pod readiness. Everything
here is pure: no store, no sockets.
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
from typing import Any

from meshpilot.store import ResourceKey

PODS: ResourceKey = ("", "pods")
SERVICES: ResourceKey = ("", "services")
ENDPOINTS: ResourceKey = ("", "endpoints")
NAMESPACES: ResourceKey = ("", "namespaces")
SERVICEACCOUNTS: ResourceKey = ("", "serviceaccounts")
CONFIGMAPS: ResourceKey = ("", "configmaps")
SECRETS: ResourceKey = ("", "secrets")
DEPLOYMENTS: ResourceKey = ("apps", "deployments")
REPLICASETS: ResourceKey = ("apps", "replicasets")
PDBS: ResourceKey = ("policy", "poddisruptionbudgets")

Obj = dict[str, Any]

# kind -> resource key, for ownerReferences (the kinds the local cluster serves that own things)
OWNER_KINDS: dict[str, ResourceKey] = {
    "Deployment": DEPLOYMENTS,
    "ReplicaSet": REPLICASETS,
    "Pod": PODS,
    "Service": SERVICES,
    "Namespace": NAMESPACES,
    "ConfigMap": CONFIGMAPS,
    "Secret": SECRETS,
    "ServiceAccount": SERVICEACCOUNTS,
}

# what Kubernetes' name generator uses: no vowels, so generated names never spell words
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(moment: dt.datetime | None = None) -> str:
    return (moment or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def generate_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(length))


def meta(obj: Obj) -> Obj:
    m: Obj = obj.setdefault("metadata", {})
    return m


def name_of(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def namespace_of(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("namespace", "") or "")


def uid_of(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("uid", ""))


def labels_of(obj: Obj) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def annotations_of(obj: Obj) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("annotations") or {})


def is_terminating(obj: Obj) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


def matches_map(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    """A Service-style selector: every key must equal. An empty selector matches nothing here,
    because a Service or ReplicaSet without a selector must not grab every pod."""
    if not selector:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def matches_label_selector(selector: Obj | None, labels: dict[str, str]) -> bool:
    """``metav1.LabelSelector``: matchLabels AND every matchExpression. Empty matches everything
    (as for a PodDisruptionBudget with ``selector: {}``); None matches nothing."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def controller_ref(obj: Obj) -> Obj | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owner_reference(owner: Obj) -> Obj:
    """An ownerReference with controller=true, as a controller puts on what it creates."""
    return {
        "apiVersion": owner.get("apiVersion", ""),
        "kind": owner.get("kind", ""),
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def condition(obj: Obj, ctype: str) -> Obj | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def set_condition(
    conditions: list[Obj], ctype: str, status: str, reason: str = "", message: str = ""
) -> None:
    """Set a condition in place; lastTransitionTime moves only when the status changes."""
    stamp = rfc3339()
    for cond in conditions:
        if cond.get("type") == ctype:
            if cond.get("status") != status:
                cond["lastTransitionTime"] = stamp
            cond["status"] = status
            cond["lastUpdateTime"] = cond.get("lastUpdateTime", stamp)
            if reason:
                cond["reason"] = reason
            if message:
                cond["message"] = message
            return
    new: Obj = {"type": ctype, "status": status, "lastTransitionTime": stamp}
    if reason:
        new["reason"] = reason
    if message:
        new["message"] = message
    conditions.append(new)


def pod_is_ready(pod: Obj) -> bool:
    cond = condition(pod, "Ready")
    return bool(cond and cond.get("status") == "True") and not is_terminating(pod)


def pod_is_active(pod: Obj) -> bool:
    """Counts towards a ReplicaSet's replicas: not terminating and not finished."""
    phase = pod.get("status", {}).get("phase")
    return not is_terminating(pod) and phase not in ("Succeeded", "Failed")


def pod_is_available(pod: Obj, min_ready_seconds: int, moment: dt.datetime | None = None) -> bool:
    """Ready for at least ``min_ready_seconds`` (Kubernetes' definition of an available pod)."""
    if not pod_is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    cond = condition(pod, "Ready") or {}
    since = parse_time(cond.get("lastTransitionTime"))
    if since is None:
        return False
    return (moment or now()) - since >= dt.timedelta(seconds=min_ready_seconds)


def env_name(service_name: str) -> str:
    """``product-catalog`` -> ``PRODUCT_CATALOG`` (Kubernetes' service environment variable prefix)."""
    return service_name.upper().replace("-", "_").replace(".", "_")


def dns_label_ok(name: str) -> bool:
    allowed = set(string.ascii_lowercase + string.digits + "-")
    return 0 < len(name) <= 63 and set(name) <= allowed and name[0] != "-" and name[-1] != "-"
