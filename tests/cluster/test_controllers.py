"""Controllers on real processes: scaling, garbage collection, service accounts, graceful
termination order, PodDisruptionBudget evictions, Recreate and undo."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from _localcluster import (
    DEPLOYMENTS,
    ENDPOINTS,
    PDBS,
    REPLICASETS,
    alive,
    app_container,
    deployment_manifest,
    local_cluster,
    pids_of,
    pod_manifest,
    service_manifest,
    wait_for,
)

from meshpilot.cluster import runtime
from meshpilot.cluster.controllers import deployment as d
from meshpilot.cluster.eviction import EvictionRefused, evict
from meshpilot.store import NotFound


@pytest.fixture(autouse=True)
def small_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.BACKOFF_ENV, "0.3")


def deployment_status(c, name: str) -> dict:  # type: ignore[no-untyped-def]
    return c.store.get(DEPLOYMENTS, "default", name).get("status") or {}


async def test_scale_two_four_one_and_garbage_collection(tmp_path: Path) -> None:
    async with local_cluster(tmp_path) as c:
        c.apply(deployment_manifest("web", 2))

        def settled(n: int) -> bool:
            status = deployment_status(c, "web")
            pods = [p for p in c.pods(selector="app=web") if not p["metadata"].get("deletionTimestamp")]
            return status.get("availableReplicas") == n and status.get("replicas") == n and len(pods) == n

        await wait_for(lambda: settled(2), what="2 replicas")
        c.store.patch(DEPLOYMENTS, "default", "web", {"spec": {"replicas": 4}})
        await wait_for(lambda: settled(4), what="4 replicas")
        rses, _ = c.store.list(REPLICASETS, namespace="default")
        assert len(rses) == 1 and rses[0]["spec"]["replicas"] == 4
        four = {p["metadata"]["name"] for p in c.pods(selector="app=web")}
        ips = {p["status"]["podIP"] for p in c.pods(selector="app=web")}
        assert len(ips) == 4, "every pod has its own address"
        c.store.patch(DEPLOYMENTS, "default", "web", {"spec": {"replicas": 1}})
        await wait_for(
            lambda: settled(1) and len(c.pods(selector="app=web")) == 1, what="1 replica, others gone"
        )
        assert {p["metadata"]["name"] for p in c.pods(selector="app=web")} <= four
        assert c.store.get(DEPLOYMENTS, "default", "web")["metadata"]["annotations"][d.REVISION] == "1"
        # deleting the Deployment collects its ReplicaSet and then its pods (and their processes)
        pids = [pid for p in c.pods(selector="app=web") for pid in pids_of(p)]
        c.store.delete(DEPLOYMENTS, "default", "web")
        await wait_for(
            lambda: not c.store.list(REPLICASETS)[0] and not c.pods(selector="app=web"), what="collected"
        )
        for pid in pids:
            await wait_for(lambda pid=pid: not alive(pid), what=f"pid {pid} gone")


async def test_every_namespace_gets_a_default_service_account(tmp_path: Path) -> None:
    async with local_cluster(tmp_path) as c:
        c.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        await wait_for(lambda: c.exists(("", "serviceaccounts"), "default", "shop"), what="shop/default SA")
        await wait_for(
            lambda: c.exists(("", "serviceaccounts"), "default", "default"), what="default/default SA"
        )


async def test_graceful_termination_leaves_endpoints_then_prestop_then_sigterm(tmp_path: Path) -> None:
    marker = tmp_path / "prestop"
    async with local_cluster(tmp_path) as c:
        hook = {
            "exec": {
                "command": [
                    "python",
                    "-c",
                    f"import time; open({str(marker)!r}, 'w').write(repr(time.time()))",
                ]
            }
        }
        container = app_container(
            args=["--term-delay", "0.2"],
            readinessProbe={"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
            lifecycle={"preStop": hook},
        )
        c.apply(
            pod_manifest("graceful", [container], labels={"app": "graceful"}, terminationGracePeriodSeconds=5)
        )
        c.apply(service_manifest("graceful", {"app": "graceful"}))
        pod = await wait_for(
            lambda: (
                any(
                    s.get("addresses")
                    for s in c.store.get(ENDPOINTS, "default", "graceful").get("subsets") or []
                )
                and c.pod("graceful")
            ),
            what="pod in Endpoints",
        )
        ip = pod["status"]["podIP"]
        pid = pids_of(pod)[0]
        left_endpoints_at: list[float] = []
        seen_not_ready = []

        def check() -> bool:
            ep = c.store.get(ENDPOINTS, "default", "graceful")
            in_ep = any(a["ip"] == ip for s in ep.get("subsets") or [] for a in s.get("addresses") or [])
            if not in_ep and not left_endpoints_at:
                left_endpoints_at.append(time.time())
            try:
                current = c.pod("graceful")
            except NotFound:
                return True
            ready = next(x for x in current["status"]["conditions"] if x["type"] == "Ready")["status"]
            if current["metadata"].get("deletionTimestamp") and ready == "False":
                seen_not_ready.append(True)
            return False

        c.store.delete(("", "pods"), "default", "graceful")
        await wait_for(check, timeout=15, what="pod finally deleted")
        assert not alive(pid)
        log = (tmp_path / "state").rglob("graceful/app.log")
        assert not list(log), "the pod's directory is removed with the pod"
        assert left_endpoints_at and seen_not_ready
        prestop_at = float(marker.read_text())
        # the app printed when it got SIGTERM; its log went with the pod, so compare through the marker
        assert left_endpoints_at[0] <= prestop_at + 0.05, (left_endpoints_at, prestop_at)


async def test_sigterm_comes_after_prestop_and_sigkill_after_grace(tmp_path: Path) -> None:
    marker = tmp_path / "order"
    async with local_cluster(tmp_path) as c:
        script = (
            "import signal, time, sys\n"
            f"path = {str(marker)!r}\n"
            "def term(*a):\n"
            "    open(path, 'a').write('TERM %f\\n' % time.time())\n"
            "signal.signal(signal.SIGTERM, term)\n"
            "while True: time.sleep(0.05)\n"
        )
        hook = {
            "exec": {
                "command": [
                    "python",
                    "-c",
                    f"import time; open({str(marker)!r}, 'a').write('PRESTOP %f\\n' % time.time())",
                ]
            }
        }
        container = {
            "name": "stubborn",
            "image": "x",
            "command": ["python", "-c", script],
            "lifecycle": {"preStop": hook},
        }
        c.apply(pod_manifest("stubborn", [container], terminationGracePeriodSeconds=1))
        pod = await wait_for(lambda: pids_of(c.pod("stubborn")) and c.pod("stubborn"), what="started")
        pid = pids_of(pod)[0]
        started = time.time()
        c.store.delete(("", "pods"), "default", "stubborn")
        await wait_for(lambda: not c.exists(("", "pods"), "stubborn"), timeout=15, what="deleted")
        assert not alive(pid)
        lines = marker.read_text().split()
        assert lines[0] == "PRESTOP" and lines[2] == "TERM", lines
        # it ignored SIGTERM: SIGKILL came at the end of the 1 s grace period, not before
        assert time.time() - started >= 1.0


async def test_pdb_refuses_then_allows_evictions(tmp_path: Path) -> None:
    async with local_cluster(tmp_path) as c:
        c.apply(deployment_manifest("guarded", 3))
        c.apply(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "guarded", "namespace": "default"},
                "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "guarded"}}},
            }
        )
        await wait_for(
            lambda: deployment_status(c, "guarded").get("availableReplicas") == 3, what="3 available"
        )
        await wait_for(
            lambda: (
                (c.store.get(PDBS, "default", "guarded").get("status") or {}).get("disruptionsAllowed") == 1
            ),
            what="PDB status",
        )
        status = c.store.get(PDBS, "default", "guarded")["status"]
        assert status["currentHealthy"] == 3 and status["desiredHealthy"] == 2 and status["expectedPods"] == 3
        names = sorted(p["metadata"]["name"] for p in c.pods(selector="app=guarded"))
        evict(c.store, c.info, "default", names[0])  # 3 healthy, 2 needed: allowed
        assert c.pod(names[0])["metadata"].get("deletionTimestamp")
        with pytest.raises(EvictionRefused, match=re.escape("needs 2 healthy pods and has 2 currently")):
            evict(c.store, c.info, "default", names[1])
        assert not c.pod(names[1])["metadata"].get("deletionTimestamp")
        # the replacement becomes ready: one more disruption is allowed again
        from meshpilot.cluster.objects import pod_is_ready

        await wait_for(
            lambda: sum(1 for p in c.pods(selector="app=guarded") if pod_is_ready(p)) == 3,
            timeout=20,
            what="replacement ready",
        )
        evict(c.store, c.info, "default", names[1])
        with pytest.raises(NotFound):
            evict(c.store, c.info, "default", "no-such-pod")


async def test_recreate_and_undo_on_real_pods(tmp_path: Path) -> None:
    async with local_cluster(tmp_path) as c:
        manifest = deployment_manifest("rec", 2, strategy={"type": "Recreate"})
        c.apply(manifest)
        await wait_for(lambda: deployment_status(c, "rec").get("availableReplicas") == 2, what="v1 available")
        v1_pods = {p["metadata"]["name"] for p in c.pods(selector="app=rec")}
        env = [{"name": "VERSION", "value": "v2"}]
        template = c.store.get(DEPLOYMENTS, "default", "rec")["spec"]["template"]
        template["spec"]["containers"][0]["env"] = env
        c.store.patch(DEPLOYMENTS, "default", "rec", {"spec": {"template": template}})
        overlap = []

        def v2_ready() -> bool:
            pods = c.pods(selector="app=rec")
            names = {p["metadata"]["name"] for p in pods}
            if names & v1_pods and names - v1_pods:
                overlap.append(names)
            status = deployment_status(c, "rec")
            return (
                status.get("updatedReplicas") == 2
                and status.get("availableReplicas") == 2
                and not (names & v1_pods)
            )

        await wait_for(v2_ready, timeout=20, what="v2 rolled out")
        assert not overlap, "Recreate never runs old and new pods together"
        assert c.store.get(DEPLOYMENTS, "default", "rec")["metadata"]["annotations"][d.REVISION] == "2"
        # undo: the CLI copies revision 1's template back; the old ReplicaSet becomes revision 3
        rses, _ = c.store.list(REPLICASETS, namespace="default")
        deployment = c.store.get(DEPLOYMENTS, "default", "rec")
        previous = d.rollback_template(deployment, rses)
        c.store.patch(DEPLOYMENTS, "default", "rec", {"spec": {"template": previous}})
        await wait_for(
            lambda: (
                c.store.get(DEPLOYMENTS, "default", "rec")["metadata"]["annotations"].get(d.REVISION) == "3"
            ),
            what="revision 3",
        )
        rses, _ = c.store.list(REPLICASETS, namespace="default")
        assert len(rses) == 2
        by_revision = {r["metadata"]["annotations"][d.REVISION]: r for r in rses}
        assert set(by_revision) == {"2", "3"}
        assert "env" not in by_revision["3"]["spec"]["template"]["spec"]["containers"][0]
        await wait_for(
            lambda: d.rollout_complete(c.store.get(DEPLOYMENTS, "default", "rec"))[0],
            timeout=20,
            what="undo done",
        )


async def test_replicaset_reports_pods_it_cannot_create(tmp_path: Path) -> None:
    async with local_cluster(tmp_path) as c:
        # written straight to the store (as a buggy client could): the template lacks the image
        c.store.create(
            REPLICASETS,
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {"name": "broken", "namespace": "default"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "broken"}},
                    "template": {
                        "metadata": {"labels": {"app": "broken"}},
                        "spec": {"containers": [{"name": "x"}]},
                    },
                },
            },
        )

        def failure() -> dict | None:
            conditions = (c.store.get(REPLICASETS, "default", "broken").get("status") or {}).get(
                "conditions"
            ) or []
            return next((x for x in conditions if x["type"] == "ReplicaFailure"), None)

        condition = await wait_for(failure, what="ReplicaFailure condition")
        assert condition["reason"] == "FailedCreate" and "image" in condition["message"]
        assert c.pods(selector="app=broken") == []


async def test_one_broken_deployment_does_not_stall_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_plan = d.plan

    def plan(deployment, *args, **kwargs):  # type: ignore[no-untyped-def]
        if deployment["metadata"]["name"] == "broken":
            raise RuntimeError("a bug that only this object triggers")
        return real_plan(deployment, *args, **kwargs)

    monkeypatch.setattr(d, "plan", plan)
    async with local_cluster(tmp_path) as c:
        c.apply(deployment_manifest("broken", 1))  # listed first: it used to end every pass
        c.apply(deployment_manifest("web", 1))
        await wait_for(
            lambda: deployment_status(c, "web").get("availableReplicas") == 1, what="web to come up"
        )
        assert not c.store.list(REPLICASETS, namespace="default", label_selector="app=broken")[0]
