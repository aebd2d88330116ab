"""Deployment -> ReplicaSets, as Kubernetes' deployment controller does it.

The decisions are pure functions of (Deployment, its ReplicaSets, their pods, now): ``plan``
returns what to create, scale, annotate and delete and the status to write; the manager executes
it. So the surge/unavailable arithmetic, revisions and undo are unit-tested without sockets.

Facts kept from Kubernetes: each template gets a ReplicaSet named ``<deployment>-<pod-template-hash>``;
``deployment.kubernetes.io/revision`` counts templates (an older template that comes back, as on
``rollout undo``, gets the next revision number); a rolling update never exceeds
``replicas + maxSurge`` pods and never drops below ``replicas - maxUnavailable`` *available*
pods (Ready for ``minReadySeconds``); Recreate scales the old ReplicaSets to zero and waits for
their pods to be gone before starting the new one; ``revisionHistoryLimit`` old, empty
ReplicaSets are kept for undo.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

from meshpilot.api.rollout import HASH_LABEL as HASH_LABEL
from meshpilot.api.rollout import RESTARTED_AT as RESTARTED_AT
from meshpilot.api.rollout import REVISION as REVISION
from meshpilot.api.rollout import owned_replica_sets as owned_replica_sets
from meshpilot.api.rollout import restart_template as restart_template
from meshpilot.api.rollout import revision_of as revision_of
from meshpilot.api.rollout import rollback_template as rollback_template
from meshpilot.api.rollout import rollout_complete as rollout_complete
from meshpilot.api.rollout import same_template as same_template
from meshpilot.api.rollout import template_without_hash
from meshpilot.cluster.objects import (
    Obj,
    annotations_of,
    controller_ref,
    name_of,
    namespace_of,
    now,
    owner_reference,
    parse_time,
    rfc3339,
    uid_of,
)

DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
# annotations of the Deployment that are not copied to its ReplicaSets
_NOT_COPIED = {REVISION, DESIRED_REPLICAS, MAX_REPLICAS, "kubectl.kubernetes.io/last-applied-configuration"}

_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: Obj, collision_count: int = 0) -> str:
    """A stable, short, DNS-safe hash of a pod template (FNV-1a over its canonical JSON)."""
    data = json.dumps(template_without_hash(template), sort_keys=True, separators=(",", ":")).encode()
    value = 0x811C9DC5
    for byte in data + str(collision_count).encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    out = ""
    while value:
        value, digit = divmod(value, len(_HASH_ALPHABET))
        out += _HASH_ALPHABET[digit]
    return (out or "b")[:10]


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """An IntOrString such as ``1`` or ``"25%"`` against ``total`` (Kubernetes' rounding rules)."""
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        share = float(text[:-1]) * total / 100.0
        return math.ceil(share) if round_up else math.floor(share)
    return int(text)


def surge_and_unavailable(deployment: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as pod counts; surge rounds up, unavailable down, never both 0."""
    spec = deployment.get("spec", {})
    replicas = int(spec.get("replicas", 1))
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0, replicas
    rolling = strategy.get("rollingUpdate") or {}
    surge = scaled_value(rolling.get("maxSurge", "25%"), replicas, True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, min(unavailable, replicas)


def new_replicas_for_rolling(deployment: Obj, all_rs: list[Obj], new_rs: Obj | None) -> int:
    """How many replicas the new ReplicaSet may have now without exceeding replicas + maxSurge."""
    replicas = int(deployment.get("spec", {}).get("replicas", 1))
    current_new = _spec_replicas(new_rs) if new_rs is not None else 0
    if current_new >= replicas:
        return replicas
    surge, _ = surge_and_unavailable(deployment)
    current_total = sum(_spec_replicas(rs) for rs in all_rs)
    max_total = replicas + surge
    if current_total >= max_total:
        return current_new
    return current_new + min(max_total - current_total, replicas - current_new)


def old_scale_down_for_rolling(deployment: Obj, new_rs: Obj, old_rs: list[Obj]) -> dict[str, int]:
    """New replica counts of old ReplicaSets: unhealthy replicas first, then oldest first, while at
    least ``replicas - maxUnavailable`` pods stay available."""
    replicas = int(deployment.get("spec", {}).get("replicas", 1))
    _, max_unavailable = surge_and_unavailable(deployment)
    old_count = sum(_spec_replicas(rs) for rs in old_rs)
    if old_count == 0:
        return {}
    all_rs = [new_rs, *old_rs]
    all_count = sum(_spec_replicas(rs) for rs in all_rs)
    min_available = replicas - max_unavailable
    new_unavailable = _spec_replicas(new_rs) - _available(new_rs)
    max_scaled_down = all_count - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}
    result: dict[str, int] = {}
    ordered = sorted(
        old_rs, key=lambda rs: (revision_of(rs), rs.get("metadata", {}).get("creationTimestamp", ""))
    )
    # 1. replicas that are not available anyway can go without reducing availability
    cleaned = 0
    for rs in ordered:
        if cleaned >= max_scaled_down:
            break
        current = _spec_replicas(rs)
        unhealthy = current - _available(rs)
        if current == 0 or unhealthy <= 0:
            continue
        cut = min(unhealthy, max_scaled_down - cleaned)
        result[name_of(rs)] = current - cut
        cleaned += cut
    # 2. then available ones, while the whole stays above minAvailable
    available = sum(_available(rs) for rs in all_rs)
    total_down = min(available - min_available, max_scaled_down - cleaned)
    if total_down <= 0:
        return result
    for rs in ordered:
        if total_down <= 0:
            break
        current = result.get(name_of(rs), _spec_replicas(rs))
        if current == 0:
            continue
        cut = min(current, total_down)
        result[name_of(rs)] = current - cut
        total_down -= cut
    return result


def _spec_replicas(rs: Obj | None) -> int:
    return int((rs or {}).get("spec", {}).get("replicas", 0) or 0)


def _available(rs: Obj | None) -> int:
    return int((rs or {}).get("status", {}).get("availableReplicas", 0) or 0)


@dataclass
class Plan:
    """What the deployment controller wants done; executed in this order by the manager."""

    create: list[Obj] = field(default_factory=list)
    scale: dict[str, int] = field(default_factory=dict)
    annotate: dict[str, dict[str, str]] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    deployment_annotations: dict[str, str] = field(default_factory=dict)
    status: Obj = field(default_factory=dict)


def new_replica_set(deployment: Obj, revision: int, replicas: int) -> Obj:
    template = copy.deepcopy(deployment["spec"]["template"])
    hash_ = template_hash(template, int(deployment.get("status", {}).get("collisionCount") or 0))
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = hash_
    selector = copy.deepcopy(deployment["spec"].get("selector") or {})
    selector.setdefault("matchLabels", {})[HASH_LABEL] = hash_
    annotations = {k: v for k, v in annotations_of(deployment).items() if k not in _NOT_COPIED}
    annotations[REVISION] = str(revision)
    annotations.update(_replica_annotations(deployment))
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name_of(deployment)}-{hash_}",
            "namespace": namespace_of(deployment),
            "labels": dict(template["metadata"]["labels"]),
            "annotations": annotations,
            "ownerReferences": [owner_reference(deployment)],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": int(deployment["spec"].get("minReadySeconds", 0)),
            "selector": selector,
            "template": template,
        },
    }


def _replica_annotations(deployment: Obj) -> dict[str, str]:
    replicas = int(deployment.get("spec", {}).get("replicas", 1))
    surge, _ = surge_and_unavailable(deployment)
    return {DESIRED_REPLICAS: str(replicas), MAX_REPLICAS: str(replicas + surge)}


def plan(
    deployment: Obj, replica_sets: list[Obj], pods: list[Obj], moment: dt.datetime | None = None
) -> Plan:
    """Decide one reconcile step for one Deployment (sans-IO).

    ``replica_sets`` are the Deployment's own (controller reference); ``pods`` are the pods of those
    ReplicaSets (used by Recreate to wait until the old pods are gone).
    """
    moment = moment or now()
    spec = deployment.get("spec", {})
    replicas = int(spec.get("replicas", 1))
    result = Plan()
    rses = owned_replica_sets(deployment, replica_sets)
    template = spec.get("template", {})
    matching = sorted(
        (rs for rs in rses if same_template(rs.get("spec", {}).get("template", {}), template)),
        key=lambda rs: rs.get("metadata", {}).get("creationTimestamp", ""),
    )
    new_rs = matching[0] if matching else None
    old_rs = [rs for rs in rses if rs is not new_rs]
    max_old_revision = max((revision_of(rs) for rs in old_rs), default=0)
    paused = bool(spec.get("paused"))
    strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")

    # the ReplicaSet of the current template, and its revision
    if new_rs is None and not paused:
        if strategy == "Recreate":
            initial = 0 if any(_spec_replicas(rs) or _pods_of(rs, pods) for rs in old_rs) else replicas
        else:
            initial = new_replicas_for_rolling(deployment, old_rs, None)
        created = new_replica_set(deployment, max_old_revision + 1, initial)
        result.create.append(created)
        new_rs = created
    elif new_rs is not None:
        wanted = dict(_replica_annotations(deployment))
        for key, value in annotations_of(deployment).items():
            if key not in _NOT_COPIED:
                wanted[key] = value
        if revision_of(new_rs) <= max_old_revision:
            wanted[REVISION] = str(max_old_revision + 1)  # an old template is current again (undo)
        current = annotations_of(new_rs)
        changes = {k: v for k, v in wanted.items() if current.get(k) != v}
        if changes:
            result.annotate[name_of(new_rs)] = changes
    if new_rs is not None:
        revision = result.annotate.get(name_of(new_rs), {}).get(REVISION) or str(revision_of(new_rs))
        if annotations_of(deployment).get(REVISION) != revision:
            result.deployment_annotations[REVISION] = revision

    if not paused and new_rs is not None and not result.create:
        if strategy == "Recreate":
            _plan_recreate(deployment, new_rs, old_rs, pods, result)
        else:
            target = new_replicas_for_rolling(deployment, [new_rs, *old_rs], new_rs)
            if target != _spec_replicas(new_rs):
                result.scale[name_of(new_rs)] = target
            else:
                result.scale.update(old_scale_down_for_rolling(deployment, new_rs, old_rs))
    elif paused and new_rs is not None and not old_rs and _spec_replicas(new_rs) != replicas:
        result.scale[name_of(new_rs)] = replicas  # scaling still works on a paused Deployment

    # revision history: keep revisionHistoryLimit old ReplicaSets that are empty
    limit = int(spec.get("revisionHistoryLimit", 10))
    empty = [
        rs
        for rs in old_rs
        if result.scale.get(name_of(rs), _spec_replicas(rs)) == 0
        and int(rs.get("status", {}).get("replicas", 0) or 0) == 0
        and not _pods_of(rs, pods)
    ]
    empty.sort(key=revision_of)
    if len(empty) > limit:
        result.delete = [name_of(rs) for rs in empty[: len(empty) - limit]]

    result.status = deployment_status(deployment, new_rs, old_rs, result, moment)
    return result


def _pods_of(rs: Obj, pods: list[Obj]) -> list[Obj]:
    uid = uid_of(rs)
    return [p for p in pods if (controller_ref(p) or {}).get("uid") == uid]


def _plan_recreate(deployment: Obj, new_rs: Obj, old_rs: list[Obj], pods: list[Obj], result: Plan) -> None:
    replicas = int(deployment.get("spec", {}).get("replicas", 1))
    scaling_down = False
    for rs in old_rs:
        if _spec_replicas(rs) > 0:
            result.scale[name_of(rs)] = 0
            scaling_down = True
    if scaling_down or any(_pods_of(rs, pods) for rs in old_rs):
        return  # Recreate: no new pod while an old one still exists
    if _spec_replicas(new_rs) != replicas:
        result.scale[name_of(new_rs)] = replicas


def deployment_status(
    deployment: Obj, new_rs: Obj | None, old_rs: list[Obj], plan_: Plan, moment: dt.datetime
) -> Obj:
    spec = deployment.get("spec", {})
    old_status = deployment.get("status", {}) or {}
    replicas = int(spec.get("replicas", 1))
    all_rs = ([new_rs] if new_rs is not None else []) + old_rs

    def count(rs: Obj, field_name: str) -> int:
        return int(rs.get("status", {}).get(field_name, 0) or 0)

    total = sum(count(rs, "replicas") for rs in all_rs)
    updated = count(new_rs, "replicas") if new_rs is not None else 0
    ready = sum(count(rs, "readyReplicas") for rs in all_rs)
    available = sum(count(rs, "availableReplicas") for rs in all_rs)
    _, max_unavailable = surge_and_unavailable(deployment)
    status: Obj = {
        "observedGeneration": int(deployment.get("metadata", {}).get("generation", 1)),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": max(replicas - available, 0),
    }
    if old_status.get("collisionCount"):
        status["collisionCount"] = old_status["collisionCount"]
    stamp = rfc3339(moment)
    conditions = {c.get("type"): dict(c) for c in old_status.get("conditions") or []}

    def put(ctype: str, value: str, reason: str, message: str, touch: bool) -> None:
        cond = conditions.get(ctype)
        if cond is None or cond.get("status") != value:
            conditions[ctype] = {
                "type": ctype,
                "status": value,
                "lastUpdateTime": stamp,
                "lastTransitionTime": stamp,
                "reason": reason,
                "message": message,
            }
            return
        if touch or cond.get("reason") != reason or cond.get("message") != message:
            cond.update(lastUpdateTime=stamp, reason=reason, message=message)

    if available >= replicas - max_unavailable:
        put("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", False)
    else:
        put(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            False,
        )

    rs_name = name_of(new_rs) if new_rs is not None else ""
    complete = (
        new_rs is not None
        and updated == replicas
        and total == replicas
        and available == replicas
        and _spec_replicas(new_rs) == replicas
        and not any(_spec_replicas(rs) for rs in old_rs)
    )
    old_counts = tuple(
        old_status.get(k) for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    )
    new_counts = (total, updated, ready, available)
    progressed = bool(plan_.create or plan_.scale) or old_counts != new_counts
    if spec.get("paused"):
        put("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", False)
    elif complete:
        put(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            f'ReplicaSet "{rs_name}" has successfully progressed.',
            False,
        )
    elif plan_.create:
        put("Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{rs_name}"', True)
    else:
        cond = conditions.get("Progressing") or {}
        last = parse_time(cond.get("lastUpdateTime")) or moment
        deadline = int(spec.get("progressDeadlineSeconds", 600))
        if progressed:
            put("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', True)
        elif cond.get("reason") == "ProgressDeadlineExceeded" or (moment - last).total_seconds() > deadline:
            put(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
                False,
            )
        else:
            put("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', False)
    status["conditions"] = [conditions[t] for t in ("Available", "Progressing") if t in conditions] + [
        c for t, c in conditions.items() if t not in ("Available", "Progressing")
    ]
    return status
