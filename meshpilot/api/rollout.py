"""How a Deployment's rollout reads from its objects: revisions, history, undo, restart, status.

These facts interpret Deployment and ReplicaSet dicts the same way whoever holds them: the local
cluster's deployment controller, ``meshpilot rollout ...`` against the local cluster, and the same
commands against a real Kubernetes API server. So they live here, below both, as pure functions.

Facts kept from Kubernetes and kubectl: ``deployment.kubernetes.io/revision`` on each ReplicaSet
numbers the templates; a ReplicaSet belongs to the Deployment its controller ownerReference names;
``rollout undo`` picks the highest revision below the latest (or ``--to-revision``) and writes
that template back without its ``pod-template-hash`` label; ``rollout restart`` stamps
``kubectl.kubernetes.io/restartedAt`` into the template; ``rollout status`` waits for the spec to be
observed, then for updated, then for old replicas to go, then for availability.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
HASH_LABEL = "pod-template-hash"


def _metadata(obj: Obj) -> Obj:
    meta: Obj = obj.get("metadata") or {}
    return meta


def revision_of(obj: Obj) -> int:
    """The revision annotation of a ReplicaSet (or Deployment); 0 when absent or not a number."""
    try:
        return int((_metadata(obj).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def template_without_hash(template: Obj) -> Obj:
    """A copy of a pod template without the ``pod-template-hash`` label the controller added."""
    clone = copy.deepcopy(template)
    labels = (clone.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return clone


def same_template(a: Obj, b: Obj) -> bool:
    """Whether two pod templates are the same apart from ``pod-template-hash``."""
    return template_without_hash(a) == template_without_hash(b)


def owned_replica_sets(deployment: Obj, replica_sets: list[Obj]) -> list[Obj]:
    """The ReplicaSets whose controller ownerReference is this Deployment and that are not being
    deleted, in the order given."""
    uid = _metadata(deployment).get("uid")

    def controlled(rs: Obj) -> bool:
        refs = _metadata(rs).get("ownerReferences") or []
        return any(ref.get("controller") and ref.get("uid") == uid for ref in refs)

    return [rs for rs in replica_sets if controlled(rs) and not _metadata(rs).get("deletionTimestamp")]


def history(deployment: Obj, replica_sets: list[Obj]) -> list[Obj]:
    """``rollout history``: the Deployment's ReplicaSets that carry a revision, oldest first."""
    return sorted(
        (rs for rs in owned_replica_sets(deployment, replica_sets) if revision_of(rs) > 0), key=revision_of
    )


def rollback_revision(deployment: Obj, replica_sets: list[Obj], to_revision: int = 0) -> tuple[int, Obj]:
    """``rollout undo``: (revision, its template without the hash label) for ``to_revision``, or for
    the highest revision below the latest when ``to_revision`` is 0.

    Raises ``LookupError`` with kubectl's wording when there is no such revision.
    """
    by_revision = {revision_of(rs): rs for rs in history(deployment, replica_sets)}
    if to_revision:
        if to_revision not in by_revision:
            raise LookupError(f"unable to find specified revision {to_revision} in history")
    else:
        older = sorted(by_revision)[:-1]
        if not older:
            raise LookupError(
                f'no rollout history found for deployment "{_metadata(deployment).get("name", "")}"'
            )
        to_revision = older[-1]
    return to_revision, template_without_hash(by_revision[to_revision].get("spec", {}).get("template", {}))


def rollback_template(deployment: Obj, replica_sets: list[Obj], to_revision: int = 0) -> Obj:
    """The template ``rollout undo`` writes back (see ``rollback_revision``)."""
    return rollback_revision(deployment, replica_sets, to_revision)[1]


def restarted_at(moment: dt.datetime | None = None) -> str:
    """The ``restartedAt`` stamp for ``moment`` (now by default), RFC 3339 in UTC as kubectl writes it."""
    return (moment or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def restart_patch(moment: dt.datetime | None = None) -> Obj:
    """``rollout restart`` as a merge patch: only the annotation changes, so a concurrent edit of
    the rest of the template is not overwritten."""
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: restarted_at(moment)}}}}}


def restart_template(template: Obj, moment: dt.datetime | None = None) -> Obj:
    """``rollout restart`` applied to a template: a copy with a fresh restartedAt annotation."""
    clone = copy.deepcopy(template)
    clone.setdefault("metadata", {}).setdefault("annotations", {})[RESTARTED_AT] = restarted_at(moment)
    return clone


@dataclass(frozen=True)
class RolloutStatus:
    """One observation of ``rollout status``: the line kubectl prints, whether the rollout is done,
    and whether it failed (progress deadline exceeded: waiting longer will not help)."""

    done: bool
    message: str
    failed: bool = False


def _count(status: Obj, key: str) -> int:
    return int(status.get(key, 0) or 0)


def rollout_status(deployment: Obj) -> RolloutStatus:
    """``kubectl rollout status`` for one Deployment observation, with kubectl's wording."""
    meta = _metadata(deployment)
    name = meta.get("name", "")
    status = deployment.get("status") or {}
    if _count(status, "observedGeneration") < int(meta.get("generation", 0) or 0):
        return RolloutStatus(False, "Waiting for deployment spec update to be observed...")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return RolloutStatus(False, f'deployment "{name}" exceeded its progress deadline', failed=True)
    replicas = int(deployment.get("spec", {}).get("replicas", 1))
    updated = _count(status, "updatedReplicas")
    total = _count(status, "replicas")
    available = _count(status, "availableReplicas")
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if updated < replicas:
        return RolloutStatus(False, f"{waiting}{updated} out of {replicas} new replicas have been updated...")
    if total > updated:
        return RolloutStatus(False, f"{waiting}{total - updated} old replicas are pending termination...")
    if available < updated:
        return RolloutStatus(False, f"{waiting}{available} of {updated} updated replicas are available...")
    return RolloutStatus(True, f'deployment "{name}" successfully rolled out')


def rollout_complete(deployment: Obj) -> tuple[bool, str]:
    """``rollout_status`` as (done, message)."""
    observed = rollout_status(deployment)
    return observed.done, observed.message
