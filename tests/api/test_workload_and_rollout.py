"""The pure facts shared by the local cluster, the control plane and the CLI: workload identity
(Istio's rules) and a Deployment's rollout (kubectl's rules)."""

from __future__ import annotations

from typing import Any

import pytest

from meshpilot.api import rollout, workload


def _pod(owner: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"labels": {}, **meta}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata}


def test_workload_name_follows_the_controller() -> None:
    rs = {"kind": "ReplicaSet", "name": "web-7d9f8", "controller": True}
    assert (
        workload.workload_name(_pod(rs, name="web-7d9f8-x2z", labels={"pod-template-hash": "7d9f8"})) == "web"
    )
    assert workload.workload_name(_pod(rs, name="web-7d9f8-x2z")) == "web-7d9f8"  # no hash label: as named
    job = {"kind": "Job", "name": "nightly", "controller": True}
    assert workload.workload_name(_pod(job, name="nightly-abc")) == "nightly"
    assert workload.workload_name(_pod({**rs, "controller": False}, name="solo")) == "solo"
    assert workload.workload_name(_pod(generateName="batch-")) == "batch"  # at admission


def test_canonical_labels_in_istio_order() -> None:
    labels = {"app": "a", "app.kubernetes.io/name": "k", "version": "v1", "app.kubernetes.io/version": "2"}
    assert workload.canonical_service(labels, "w") == "k"
    assert workload.canonical_service({**labels, workload.CANONICAL_NAME: "c"}, "w") == "c"
    assert workload.canonical_service({"app": "a"}, "w") == "a"
    assert workload.canonical_service({}, "w") == "w"
    assert workload.canonical_revision(labels) == "2"
    assert workload.canonical_revision({"version": "v1"}) == "v1"
    assert workload.canonical_revision({}) == "latest"


DEP = {"metadata": {"name": "web", "uid": "d1", "generation": 3}, "spec": {"replicas": 2, "template": {}}}


def _rs(revision: int, image: str, *, controller: bool = True, uid: str = "d1") -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"web-{revision}",
            "annotations": {rollout.REVISION: str(revision)},
            "ownerReferences": [{"uid": uid, "controller": controller}],
        },
        "spec": {"template": {"metadata": {"labels": {rollout.HASH_LABEL: f"h{revision}"}}, "image": image}},
    }


def test_history_and_undo_consider_only_the_deployments_own_replicasets() -> None:
    mine = [_rs(3, "c"), _rs(1, "a"), _rs(2, "b")]
    others = [_rs(5, "x", uid="other"), _rs(4, "y", controller=False)]
    assert [rollout.revision_of(rs) for rs in rollout.history(DEP, mine + others)] == [1, 2, 3]
    revision, template = rollout.rollback_revision(DEP, mine + others)
    assert revision == 2 and template == {"metadata": {"labels": {}}, "image": "b"}
    assert rollout.rollback_revision(DEP, mine, to_revision=1)[0] == 1
    with pytest.raises(LookupError, match="unable to find specified revision 4 in history"):
        rollout.rollback_revision(DEP, mine + others, to_revision=4)
    with pytest.raises(LookupError, match='no rollout history found for deployment "web"'):
        rollout.rollback_revision(DEP, [_rs(1, "a")])


def test_rollout_status_wording_and_failure() -> None:
    def observe(**status: Any) -> rollout.RolloutStatus:
        return rollout.rollout_status({**DEP, "status": {"observedGeneration": 3, **status}})

    assert rollout.rollout_status({**DEP, "status": {"observedGeneration": 2}}).message == (
        "Waiting for deployment spec update to be observed..."
    )
    assert observe(updatedReplicas=1, replicas=2).message.endswith(
        "1 out of 2 new replicas have been updated..."
    )
    assert observe(updatedReplicas=2, replicas=3).message.endswith(
        "1 old replicas are pending termination..."
    )
    assert observe(updatedReplicas=2, replicas=2, availableReplicas=1).message.endswith(
        "1 of 2 updated replicas are available..."
    )
    done = observe(updatedReplicas=2, replicas=2, availableReplicas=2)
    assert (done.done, done.failed, done.message) == (True, False, 'deployment "web" successfully rolled out')
    stuck = observe(conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}])
    assert (stuck.done, stuck.failed) == (False, True)
    assert rollout.rollout_complete({**DEP, "status": {}}) == (
        False,
        "Waiting for deployment spec update to be observed...",
    )


def test_restart_patch_only_touches_the_annotation() -> None:
    patch = rollout.restart_patch()
    stamp = patch["spec"]["template"]["metadata"]["annotations"][rollout.RESTARTED_AT]
    assert stamp.endswith("Z") and len(stamp) == len("2026-01-02T03:04:05Z")
    template = {"metadata": {"labels": {"app": "web"}}}
    restarted = rollout.restart_template(template)
    assert (
        restarted["metadata"]["labels"] == {"app": "web"}
        and rollout.RESTARTED_AT in restarted["metadata"]["annotations"]
    )
    assert template == {"metadata": {"labels": {"app": "web"}}}
