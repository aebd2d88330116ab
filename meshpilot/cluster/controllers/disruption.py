"""PodDisruptionBudget arithmetic (sans-IO): how many pods may be disrupted right now.

Kubernetes' rules: the budget covers the pods its selector matches in its namespace; a pod is
healthy when it is Ready and not terminating; percentages are taken of the expected pod count
(the scale of the pods' controllers) and rounded up; disruptionsAllowed = currentHealthy -
desiredHealthy, never below zero.
"""

from __future__ import annotations

from typing import Any

from meshpilot.cluster.controllers.deployment import scaled_value
from meshpilot.cluster.objects import (
    Obj,
    controller_ref,
    is_terminating,
    labels_of,
    matches_label_selector,
    namespace_of,
    pod_is_ready,
)


def matching_pods(pdb: Obj, pods: list[Obj]) -> list[Obj]:
    selector = pdb.get("spec", {}).get("selector")
    return [
        p
        for p in pods
        if namespace_of(p) == namespace_of(pdb)
        and matches_label_selector(selector, labels_of(p))
        and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
    ]


def expected_count(pods: list[Obj], scale_of: dict[str, tuple[str, int]]) -> int:
    """The number of pods the budget's pods' controllers want, each top controller counted once.

    ``scale_of`` maps a pod's controller uid (a ReplicaSet) to (uid of its top controller, that
    controller's replicas): every ReplicaSet of one Deployment maps to the Deployment, so a rollout
    in progress is not counted twice. Pods without a known controller count one each.
    """
    seen: set[str] = set()
    total = 0
    for pod in pods:
        uid = (controller_ref(pod) or {}).get("uid", "")
        if uid not in scale_of:
            if not is_terminating(pod):
                total += 1
            continue
        top, replicas = scale_of[uid]
        if top not in seen:
            seen.add(top)
            total += replicas
    return total


def budget_status(pdb: Obj, pods: list[Obj], scale_of: dict[str, tuple[str, int]]) -> Obj:
    spec = pdb.get("spec", {})
    mine = matching_pods(pdb, pods)
    healthy = sum(1 for p in mine if pod_is_ready(p))
    min_available: Any = spec.get("minAvailable")
    max_unavailable: Any = spec.get("maxUnavailable")
    if min_available is not None and isinstance(min_available, int):
        expected = len([p for p in mine if not is_terminating(p)])
        desired = min_available
    else:
        expected = expected_count(mine, scale_of)
        if min_available is not None:
            desired = scaled_value(min_available, expected, True)
        elif max_unavailable is not None:
            desired = max(expected - scaled_value(max_unavailable, expected, True), 0)
        else:
            desired = expected  # neither given: Kubernetes treats it as maxUnavailable 0
    allowed = max(healthy - desired, 0)
    return {
        "observedGeneration": int(pdb.get("metadata", {}).get("generation", 1)),
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "disruptionsAllowed": allowed,
        "conditions": [
            {
                "type": "DisruptionAllowed",
                "status": "True" if allowed > 0 else "False",
                "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
                "message": "",
            }
        ],
    }
