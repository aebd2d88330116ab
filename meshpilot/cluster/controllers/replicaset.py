"""ReplicaSet -> Pods: keep exactly ``replicas`` active pods (sans-IO decisions).

Which pods go first on a scale-down follows Kubernetes' ranking: pods not yet running or not
ready before ready ones, then the ones that restarted more, then the youngest, so a scale-down
never takes out a healthy old pod while a broken new one survives.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field

from meshpilot.cluster.objects import (
    Obj,
    controller_ref,
    is_terminating,
    labels_of,
    matches_label_selector,
    name_of,
    namespace_of,
    now,
    owner_reference,
    pod_is_active,
    pod_is_available,
    pod_is_ready,
    uid_of,
)

BURST = 100  # most pods created in one reconcile step


@dataclass
class ReplicaSetPlan:
    create: list[Obj] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    status: Obj = field(default_factory=dict)


def owned_pods(rs: Obj, pods: list[Obj]) -> list[Obj]:
    uid = uid_of(rs)
    return [p for p in pods if (controller_ref(p) or {}).get("uid") == uid]


def pod_from_template(rs: Obj) -> Obj:
    template = copy.deepcopy(rs.get("spec", {}).get("template", {}))
    meta = template.get("metadata", {})
    pod_meta: Obj = {
        "generateName": f"{name_of(rs)}-",
        "namespace": namespace_of(rs),
        "labels": dict(meta.get("labels") or {}),
        "ownerReferences": [owner_reference(rs)],
    }
    if meta.get("annotations"):
        pod_meta["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": template.get("spec", {})}


def _deletion_rank(pod: Obj) -> tuple[int, int, int, int, str]:
    """Sort key, first to delete first: no address, not running, not ready, most restarts, youngest."""
    status = pod.get("status", {})
    has_ip = 1 if status.get("podIP") else 0
    running = 1 if status.get("phase") == "Running" else 0
    ready = 1 if pod_is_ready(pod) else 0
    restarts = sum(int(c.get("restartCount", 0)) for c in status.get("containerStatuses") or [])
    created = str(pod.get("metadata", {}).get("creationTimestamp", ""))
    return (ready, running, has_ip, -restarts, _invert(created))


def _invert(text: str) -> str:
    return "".join(chr(0x10FFFF - ord(c)) for c in text)


def plan(rs: Obj, pods: list[Obj], moment: dt.datetime | None = None) -> ReplicaSetPlan:
    moment = moment or now()
    spec = rs.get("spec", {})
    replicas = int(spec.get("replicas", 1) or 0)
    min_ready = int(spec.get("minReadySeconds", 0) or 0)
    mine = owned_pods(rs, pods)
    active = [p for p in mine if pod_is_active(p)]
    result = ReplicaSetPlan()
    if not is_terminating(rs):
        diff = len(active) - replicas
        if diff < 0:
            result.create = [pod_from_template(rs) for _ in range(min(-diff, BURST))]
        elif diff > 0:
            ranked = sorted(active, key=_deletion_rank)
            result.delete = [name_of(p) for p in ranked[:diff]]
    template_labels = spec.get("template", {}).get("metadata", {}).get("labels") or {}
    status: Obj = {
        "replicas": len(active),
        "fullyLabeledReplicas": sum(
            1 for p in active if all(labels_of(p).get(k) == v for k, v in template_labels.items())
        ),
        "readyReplicas": sum(1 for p in active if pod_is_ready(p)),
        "availableReplicas": sum(1 for p in active if pod_is_available(p, min_ready, moment)),
        "observedGeneration": int(rs.get("metadata", {}).get("generation", 1)),
    }
    result.status = status
    return result


def orphans_to_adopt(rs: Obj, pods: list[Obj]) -> list[Obj]:
    """Pods without a controller whose labels match the selector: Kubernetes' controllers adopt them."""
    selector = rs.get("spec", {}).get("selector")
    return [
        p
        for p in pods
        if controller_ref(p) is None
        and pod_is_active(p)
        and namespace_of(p) == namespace_of(rs)
        and matches_label_selector(selector, labels_of(p))
    ]
