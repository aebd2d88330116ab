"""The controllers' decisions without processes or sockets: surge/unavailable arithmetic, revisions,
undo, history limits, Recreate, ReplicaSet scale-down ranking, Endpoints and PodDisruptionBudgets."""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from typing import Any

import pytest

from meshpilot.cluster.controllers import deployment as d
from meshpilot.cluster.controllers import disruption
from meshpilot.cluster.controllers import endpoints as ep
from meshpilot.cluster.controllers import replicaset as rs_logic

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def make_deployment(
    replicas: int = 4, surge: Any = "25%", unavailable: Any = "25%", image: str = "v1", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "dep-uid",
            "generation": 1,
            "annotations": {},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            **spec,
        },
    }


def materialize(
    rs: dict[str, Any], available: int | None = None, created: str = "2026-01-01T00:00:00Z"
) -> dict[str, Any]:
    """A ReplicaSet as the store would hold it, with status as if its pods were all available."""
    out = copy.deepcopy(rs)
    out["metadata"]["uid"] = str(uuid.uuid4())
    out["metadata"]["creationTimestamp"] = created
    replicas = out["spec"]["replicas"]
    got = replicas if available is None else available
    out["status"] = {"replicas": replicas, "readyReplicas": got, "availableReplicas": got}
    return out


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        (4, "25%", "25%", (1, 1)),
        (10, "25%", "25%", (3, 2)),  # surge rounds up, unavailable rounds down
        (3, 0, "0%", (0, 1)),  # both zero is impossible: unavailable becomes 1
        (5, "100%", 0, (5, 0)),
        (2, 1, 1, (1, 1)),
    ],
)
def test_surge_and_unavailable_rounding(
    replicas: int, surge: Any, unavailable: Any, expected: tuple[int, int]
) -> None:
    assert d.surge_and_unavailable(make_deployment(replicas, surge, unavailable)) == expected


def test_first_plan_creates_revision_one_with_all_replicas() -> None:
    dep = make_deployment(replicas=3)
    plan = d.plan(dep, [], [], T0)
    assert len(plan.create) == 1
    rs = plan.create[0]
    hash_ = rs["metadata"]["labels"][d.HASH_LABEL]
    assert rs["metadata"]["name"] == f"web-{hash_}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", d.HASH_LABEL: hash_}
    assert rs["spec"]["template"]["metadata"]["labels"][d.HASH_LABEL] == hash_
    assert rs["metadata"]["annotations"][d.REVISION] == "1"
    assert rs["metadata"]["ownerReferences"][0]["uid"] == "dep-uid"
    assert rs["spec"]["replicas"] == 3  # nothing old: surge allows all of them
    assert plan.deployment_annotations == {d.REVISION: "1"}


def test_template_hash_is_stable_and_ignores_its_own_label() -> None:
    dep = make_deployment()
    template = dep["spec"]["template"]
    labelled = copy.deepcopy(template)
    labelled["metadata"]["labels"][d.HASH_LABEL] = "abc"
    assert d.template_hash(template) == d.template_hash(labelled)
    assert d.template_hash(template) != d.template_hash(make_deployment(image="v2")["spec"]["template"])
    assert d.template_hash(template, 1) != d.template_hash(template, 0)


def rolling_step(dep: dict[str, Any], rses: list[dict[str, Any]]) -> d.Plan:
    return d.plan(dep, rses, [], T0)


def test_rolling_update_respects_surge_then_unavailable() -> None:
    old_dep = make_deployment(replicas=4, surge=1, unavailable=1)
    old = materialize(d.plan(old_dep, [], [], T0).create[0])
    new_dep = make_deployment(replicas=4, surge=1, unavailable=1, image="v2")
    plan = rolling_step(new_dep, [old])
    new = plan.create[0]
    assert new["metadata"]["annotations"][d.REVISION] == "2"
    assert new["spec"]["replicas"] == 1  # 4 old + 1 new = replicas + maxSurge
    new = materialize(new, available=0)
    # the new pod is not available: old may lose only maxUnavailable (1) of its available pods
    plan = rolling_step(new_dep, [old, new])
    assert plan.scale == {old["metadata"]["name"]: 3}
    old["spec"]["replicas"] = 3
    old["status"] = {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3}
    # total is 4 = replicas, surge allows one more new
    plan = rolling_step(new_dep, [old, new])
    assert plan.scale == {new["metadata"]["name"]: 2}
    new["spec"]["replicas"] = 2
    # new pods still unavailable: 3 available = minAvailable, nothing more may go
    plan = rolling_step(new_dep, [old, new])
    assert plan.scale == {}
    # both new pods become available: 5 available, 3 needed, so old drops by 2
    new["status"] = {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}
    plan = rolling_step(new_dep, [old, new])
    assert plan.scale == {old["metadata"]["name"]: 1}


def test_rolling_update_never_breaks_the_bounds_until_done() -> None:
    """A whole rollout, step by step: new pods become available one step after they are created."""
    for surge, unavailable in ((1, 0), (0, 1), ("25%", "25%"), (2, 2), ("50%", 0)):
        replicas = 4
        dep1 = make_deployment(replicas, surge, unavailable)
        old = materialize(d.plan(dep1, [], [], T0).create[0])
        dep2 = make_deployment(replicas, surge, unavailable, image="v2")
        max_surge, max_unavailable = d.surge_and_unavailable(dep2)
        rses = [old]
        for _ in range(50):
            plan = d.plan(dep2, rses, [], T0)
            rses += [materialize(created, available=0) for created in plan.create]
            for rs in rses:
                wanted = plan.scale.get(rs["metadata"]["name"], rs["spec"]["replicas"])
                rs["spec"]["replicas"] = wanted
                available = min(rs["status"]["availableReplicas"], wanted)
                rs["status"] = {
                    "replicas": wanted,
                    "readyReplicas": available,
                    "availableReplicas": available,
                }
            assert sum(rs["spec"]["replicas"] for rs in rses) <= replicas + max_surge, (surge, unavailable)
            available = sum(rs["status"]["availableReplicas"] for rs in rses)
            assert available >= replicas - max_unavailable, (surge, unavailable, available)
            for rs in rses:  # time passes: every pod becomes available
                n = rs["spec"]["replicas"]
                rs["status"] = {"replicas": n, "readyReplicas": n, "availableReplicas": n}
            new = [rs for rs in rses if rs is not old]
            if new and new[0]["spec"]["replicas"] == replicas and old["spec"]["replicas"] == 0:
                break
        else:
            raise AssertionError(f"rollout with surge={surge} unavailable={unavailable} did not finish")
        final = d.plan(dep2, rses, [], T0)
        assert d.rollout_complete({**dep2, "status": final.status})[0]


def test_undo_moves_the_old_replicaset_to_the_next_revision() -> None:
    dep1 = make_deployment(replicas=2)
    rs1 = materialize(d.plan(dep1, [], [], T0).create[0])
    rs1["spec"]["replicas"] = 0
    rs1["status"] = {"replicas": 0}
    dep2 = make_deployment(replicas=2, image="v2")
    rs2 = materialize(d.plan(dep2, [rs1], [], T0).create[0])
    rs2["spec"]["replicas"] = 2
    assert rs2["metadata"]["annotations"][d.REVISION] == "2"
    template = d.rollback_template(dep2, [rs1, rs2])
    assert d.HASH_LABEL not in template["metadata"]["labels"]
    assert template == dep1["spec"]["template"]
    dep3 = copy.deepcopy(dep2)
    dep3["spec"]["template"] = template
    plan = d.plan(dep3, [rs1, rs2], [], T0)
    assert not plan.create, "the old ReplicaSet is reused"
    assert plan.annotate[rs1["metadata"]["name"]][d.REVISION] == "3"
    assert plan.deployment_annotations[d.REVISION] == "3"
    with pytest.raises(LookupError, match="unable to find specified revision 7"):
        d.rollback_template(dep2, [rs1, rs2], to_revision=7)


def test_restart_annotation_makes_a_new_template() -> None:
    dep = make_deployment()
    restarted = d.restart_template(dep["spec"]["template"], T0)
    assert restarted["metadata"]["annotations"][d.RESTARTED_AT] == "2026-01-01T00:00:00Z"
    assert not d.same_template(restarted, dep["spec"]["template"])


def test_revision_history_limit_deletes_the_oldest_empty_replicasets() -> None:
    rses = []
    for i in range(5):
        dep = make_deployment(replicas=1, image=f"v{i}")
        created = d.plan(dep, rses, [], T0).create[0]
        rs = materialize(created)
        rses.append(rs)
    for rs in rses[:-1]:
        rs["spec"]["replicas"] = 0
        rs["status"] = {"replicas": 0}
    current = make_deployment(replicas=1, image="v4", revisionHistoryLimit=2)
    plan = d.plan(current, rses, [], T0)
    assert plan.delete == [rses[0]["metadata"]["name"], rses[1]["metadata"]["name"]]


def test_recreate_waits_for_old_pods_to_be_gone() -> None:
    dep1 = make_deployment(replicas=2)
    dep1["spec"]["strategy"] = {"type": "Recreate"}
    old = materialize(d.plan(dep1, [], [], T0).create[0])
    dep2 = copy.deepcopy(dep1)
    dep2["spec"]["template"]["spec"]["containers"][0]["image"] = "v2"
    old_pod = {
        "metadata": {"name": "p", "ownerReferences": [{"uid": old["metadata"]["uid"], "controller": True}]}
    }
    plan = d.plan(dep2, [old], [old_pod], T0)
    assert plan.create[0]["spec"]["replicas"] == 0
    new = materialize(plan.create[0])
    plan = d.plan(dep2, [old, new], [old_pod], T0)
    assert plan.scale == {old["metadata"]["name"]: 0}
    old["spec"]["replicas"] = 0
    plan = d.plan(dep2, [old, new], [old_pod], T0)
    assert plan.scale == {}, "an old pod still exists (terminating)"
    plan = d.plan(dep2, [old, new], [], T0)
    assert plan.scale == {new["metadata"]["name"]: 2}


def test_deployment_status_and_rollout_complete() -> None:
    dep = make_deployment(replicas=2)
    rs = materialize(d.plan(dep, [], [], T0).create[0])
    plan = d.plan(dep, [rs], [], T0)
    status = plan.status
    assert status["replicas"] == 2 and status["availableReplicas"] == 2 and status["updatedReplicas"] == 2
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Available"]["status"] == "True"
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert d.rollout_complete({**dep, "status": status}) == (True, 'deployment "web" successfully rolled out')


def test_progress_deadline_exceeded() -> None:
    dep = make_deployment(replicas=2, progressDeadlineSeconds=30)
    rs = materialize(d.plan(dep, [], [], T0).create[0], available=0)
    plan = d.plan(dep, [rs], [], T0)
    dep["status"] = plan.status
    later = T0 + dt.timedelta(seconds=31)
    plan = d.plan(dep, [rs], [], later)
    progressing = {c["type"]: c for c in plan.status["conditions"]}["Progressing"]
    assert progressing["status"] == "False" and progressing["reason"] == "ProgressDeadlineExceeded"
    done, message = d.rollout_complete({**dep, "status": plan.status})
    assert not done and "exceeded its progress deadline" in message


# ----------------------------------------------------------------- ReplicaSets


def pod(
    name: str,
    owner: str,
    *,
    ready: bool,
    phase: str = "Running",
    created: str = "2026-01-01T00:00:00Z",
    restarts: int = 0,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": name + "-uid",
            "labels": {"app": "web"},
            "creationTimestamp": created,
            "ownerReferences": [{"uid": owner, "controller": True, "kind": "ReplicaSet", "name": "rs"}],
        },
        "spec": {"containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {
            "phase": phase,
            "podIP": "127.9.1." + str(abs(hash(name)) % 200 + 1),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
            "containerStatuses": [{"name": "app", "restartCount": restarts}],
        },
    }


def test_replicaset_creates_missing_and_deletes_unready_youngest_first() -> None:
    rs = {
        "metadata": {"name": "rs", "namespace": "default", "uid": "rs-uid", "generation": 1},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}},
        },
    }
    plan = rs_logic.plan(rs, [pod("a", "rs-uid", ready=True)], T0)
    assert len(plan.create) == 2
    assert plan.create[0]["metadata"]["generateName"] == "rs-"
    assert plan.create[0]["metadata"]["ownerReferences"][0]["uid"] == "rs-uid"
    pods = [
        pod("old-ready", "rs-uid", ready=True, created="2026-01-01T00:00:00Z"),
        pod("young-ready", "rs-uid", ready=True, created="2026-01-01T00:05:00Z"),
        pod("unready", "rs-uid", ready=False),
        pod("crashy", "rs-uid", ready=True, restarts=9),
        pod("other", "someone-else", ready=True),
    ]
    rs["spec"]["replicas"] = 1
    plan = rs_logic.plan(rs, pods, T0)
    assert plan.delete == ["unready", "crashy", "young-ready"]
    assert plan.status["replicas"] == 4 and plan.status["readyReplicas"] == 3


def test_available_needs_min_ready_seconds() -> None:
    rs = {
        "metadata": {"name": "rs", "uid": "rs-uid"},
        "spec": {"replicas": 1, "minReadySeconds": 10, "template": {}},
    }
    pods = [pod("a", "rs-uid", ready=True)]
    assert rs_logic.plan(rs, pods, T0 + dt.timedelta(seconds=5)).status["availableReplicas"] == 0
    assert rs_logic.plan(rs, pods, T0 + dt.timedelta(seconds=10)).status["availableReplicas"] == 1


# ----------------------------------------------------------------- Endpoints


def test_endpoints_split_ready_and_not_ready_and_drop_terminating() -> None:
    svc = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    ready = pod("r", "x", ready=True)
    unready = pod("u", "x", ready=False)
    leaving = pod("t", "x", ready=True)
    leaving["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:30Z"
    renamed = pod("n", "x", ready=True)
    renamed["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 9090}]
    subsets = ep.desired_subsets(svc, [ready, unready, leaving, renamed])
    by_port = {s["ports"][0]["port"]: s for s in subsets}
    assert [a["ip"] for a in by_port[8080]["addresses"]] == [ready["status"]["podIP"]]
    assert [a["ip"] for a in by_port[8080]["notReadyAddresses"]] == [unready["status"]["podIP"]]
    assert [a["ip"] for a in by_port[9090]["addresses"]] == [renamed["status"]["podIP"]]
    assert by_port[8080]["ports"] == [{"port": 8080, "protocol": "TCP", "name": "http"}]
    assert by_port[8080]["addresses"][0]["targetRef"]["name"] == "r"
    assert not ep.serves([{"subsets": subsets}], leaving["status"]["podIP"])


# ----------------------------------------------------------------- PodDisruptionBudgets


@pytest.mark.parametrize(
    ("spec", "healthy", "desired", "allowed"),
    [
        ({"minAvailable": 2}, 3, 2, 1),
        ({"minAvailable": "50%"}, 3, 2, 1),  # 50% of 4 expected, rounded up
        ({"maxUnavailable": 1}, 3, 3, 0),  # expected 4 - 1
        ({"maxUnavailable": "25%"}, 3, 3, 0),
        ({"minAvailable": "100%"}, 3, 4, 0),
    ],
)
def test_pdb_status(spec: dict[str, Any], healthy: int, desired: int, allowed: int) -> None:
    pdb = {
        "metadata": {"name": "b", "namespace": "default", "generation": 1},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
    }
    pods = [pod(f"p{i}", "rs-uid", ready=i < 3) for i in range(4)]
    status = disruption.budget_status(pdb, pods, {"rs-uid": ("dep-uid", 4)})
    assert (status["currentHealthy"], status["desiredHealthy"], status["disruptionsAllowed"]) == (
        healthy,
        desired,
        allowed,
    )
