"""Events: the recorder's aggregation, throttling and TTL (fake clock), then the events the
controllers and the runtime emit for real processes: a crash loop's growing BackOff count,
probe failures, scaling, and expiry after a short TTL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _localcluster import (
    DEPLOYMENTS,
    app_container,
    deployment_manifest,
    local_cluster,
    pod_manifest,
    wait_for,
)

from meshpilot.cluster import events as ev
from meshpilot.cluster import runtime
from meshpilot.store import Store

EVENTS = ("", "events")
NAMESPACES = ("", "namespaces")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _pod(name: str = "web-1", namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
    }


@pytest.fixture
def store() -> Any:
    s = Store(None)
    s.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    yield s
    s.close()


def test_repeats_aggregate_into_one_event_with_a_growing_count(store: Store) -> None:
    clock = Clock()
    rec = ev.EventRecorder(store, ttl=3600, clock=clock)
    first = rec.event(_pod(), "Warning", "BackOff", "Back-off restarting failed container app", ev.KUBELET)
    assert first is not None
    assert first["count"] == 1 and first["firstTimestamp"] == first["lastTimestamp"]
    assert first["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "web-1",
        "uid": "uid-web-1",
        "namespace": "default",
    }
    assert first["source"] == {"component": "kubelet", "host": ev.NODE_NAME}
    assert first["type"] == "Warning" and first["metadata"]["name"].startswith("web-1.")
    clock.now += 75
    again = rec.event(_pod(), "Warning", "BackOff", "Back-off restarting failed container app", ev.KUBELET)
    assert again is not None and again["metadata"]["name"] == first["metadata"]["name"]
    assert again["count"] == 2
    assert again["firstTimestamp"] == first["firstTimestamp"] != again["lastTimestamp"]
    # another message (or reason, or container) is another event
    other = rec.event(_pod(), "Normal", "Started", "Started container app", ev.KUBELET, field_path="x")
    assert other is not None and other["metadata"]["name"] != first["metadata"]["name"]
    items, _ = store.list(EVENTS, "default")
    assert len(items) == 2


def test_many_different_messages_for_one_reason_are_combined(store: Store) -> None:
    clock = Clock()
    rec = ev.EventRecorder(store, ttl=3600, clock=clock)
    for i in range(ev.SIMILAR_MAX + 5):
        clock.now += 1
        rec.event(_pod(), "Warning", "Unhealthy", f"Readiness probe failed: attempt {i}", ev.KUBELET)
    items, _ = store.list(EVENTS, "default")
    single = [e for e in items if not e["message"].startswith(ev.COMBINED)]
    combined = [e for e in items if e["message"].startswith(ev.COMBINED)]
    assert len(single) == ev.SIMILAR_MAX - 1 and all(e["count"] == 1 for e in single)
    assert len(combined) == 1 and combined[0]["count"] == 6
    assert combined[0]["message"] == f"{ev.COMBINED}Readiness probe failed: attempt {ev.SIMILAR_MAX + 4}"
    # after a quiet spell the object starts afresh
    clock.now += ev.SIMILAR_WINDOW + 1
    fresh = rec.event(_pod(), "Warning", "Unhealthy", "Readiness probe failed: again", ev.KUBELET)
    assert fresh is not None and fresh["message"] == "Readiness probe failed: again"


def test_events_are_refused_in_a_missing_or_terminating_namespace(store: Store) -> None:
    rec = ev.EventRecorder(store, ttl=3600)
    assert rec.event(_pod(namespace="nowhere"), "Normal", "Started", "x", ev.KUBELET) is None
    store.create(
        NAMESPACES,
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "going"},
            "spec": {"finalizers": ["kubernetes"]},
        },
    )
    store.delete(NAMESPACES, None, "going")
    assert store.get(NAMESPACES, None, "going")["status"]["phase"] == "Terminating"
    assert rec.event(_pod(namespace="going"), "Normal", "Started", "x", ev.KUBELET) is None
    assert rec.dropped == 2 and not store.list(EVENTS)[0]


def test_a_flood_about_one_object_is_throttled(store: Store) -> None:
    clock = Clock()
    rec = ev.EventRecorder(store, ttl=3600, clock=clock)
    kept = [rec.event(_pod(), "Normal", "Pulled", f"message {i}", ev.KUBELET) for i in range(40)]
    assert sum(1 for k in kept if k is not None) == ev.SPAM_BURST
    # another object is not affected, and the bucket refills with time
    assert rec.event(_pod("web-2"), "Normal", "Pulled", "message", ev.KUBELET) is not None
    clock.now += ev.SPAM_REFILL_SECONDS
    assert rec.event(_pod(), "Normal", "Pulled", "late", ev.KUBELET) is not None


def test_events_expire_after_the_ttl(store: Store) -> None:
    clock = Clock()
    rec = ev.EventRecorder(store, ttl=60, clock=clock)
    rec.event(_pod("old"), "Normal", "Started", "Started container app", ev.KUBELET)
    clock.now += 45
    rec.event(_pod("new"), "Normal", "Started", "Started container app", ev.KUBELET)
    assert rec.expire(force=True) == 0
    clock.now += 20  # "old" was last seen 65 s ago, "new" 20 s ago
    assert rec.expire(force=True) == 1
    assert [e["involvedObject"]["name"] for e in store.list(EVENTS)[0]] == ["new"]
    # seen again, an event lives on: the TTL counts from lastTimestamp
    clock.now += 30
    rec.event(_pod("new"), "Normal", "Started", "Started container app", ev.KUBELET)
    clock.now += 40
    assert rec.expire(force=True) == 0
    assert rec.expire() == 0  # swept a moment ago: the next sweep waits a quarter TTL


def test_a_broken_store_never_breaks_the_caller() -> None:
    s = Store(None)
    rec = ev.EventRecorder(s, ttl=60)
    s.close()
    assert rec.event(_pod(), "Normal", "Started", "x", ev.KUBELET) is None
    assert rec.dropped == 1


# --- real processes ------------------------------------------------------------------------------


@pytest.fixture
def small_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.BACKOFF_ENV, "0.2")


def events_about(c: Any, name: str, namespace: str = "default") -> list[dict[str, Any]]:
    items, _ = c.store.list(EVENTS, namespace, field_selector=f"involvedObject.name={name}")
    return sorted(items, key=lambda e: e["metadata"]["name"])


def by_reason(items: list[dict[str, Any]], reason: str) -> list[dict[str, Any]]:
    return [e for e in items if e["reason"] == reason]


async def test_a_crash_loop_yields_backoff_warnings_with_a_growing_count(
    tmp_path: Path, small_backoff: None
) -> None:
    async with local_cluster(tmp_path) as c:
        crash = app_container(args=["--exit-after", "0.1", "--exit-code", "3"])
        c.apply(pod_manifest("crasher", [crash]))

        def backoff_count() -> int:
            found = by_reason(events_about(c, "crasher"), "BackOff")
            return int(found[0]["count"]) if len(found) == 1 else 0

        await wait_for(lambda: backoff_count() >= 3, timeout=30, what="BackOff count >= 3")
        items = events_about(c, "crasher")
        backoff = by_reason(items, "BackOff")[0]
        uid = c.pod("crasher")["metadata"]["uid"]
        assert backoff["type"] == "Warning"
        assert backoff["message"] == f"Back-off restarting failed container app in pod crasher_default({uid})"
        assert backoff["involvedObject"]["fieldPath"] == "spec.containers{app}"
        assert backoff["source"]["component"] == "kubelet"
        started = by_reason(items, "Started")
        assert len(started) == 1 and started[0]["count"] >= 3  # one Event, counted per start
        assert started[0]["message"] == "Started container app"
        scheduled = by_reason(items, "Scheduled")
        assert [e["message"] for e in scheduled] == [
            f"Successfully assigned default/crasher to {ev.NODE_NAME}"
        ]
        assert scheduled[0]["source"]["component"] == "default-scheduler" and scheduled[0]["count"] == 1


async def test_probe_failures_are_unhealthy_and_a_failed_liveness_probe_kills(
    tmp_path: Path, small_backoff: None
) -> None:
    async with local_cluster(tmp_path) as c:
        flag = tmp_path / "sick"
        flag.write_text("1")
        probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1, "failureThreshold": 2}
        sick = app_container(args=["--unhealthy-file", str(flag)], livenessProbe=probe)
        c.apply(pod_manifest("sick", [sick], terminationGracePeriodSeconds=2))

        def killed() -> list[dict[str, Any]]:
            return by_reason(events_about(c, "sick"), "Killing")

        await wait_for(killed, timeout=20, what="Killing event")
        assert killed()[0]["message"] == "Container app failed liveness probe, will be restarted"
        unhealthy = by_reason(events_about(c, "sick"), "Unhealthy")
        assert unhealthy and all(e["type"] == "Warning" for e in unhealthy)
        messages = {e["message"] for e in unhealthy}
        assert "Liveness probe failed: HTTP probe failed with statuscode: 500" in messages


async def test_scaling_and_pod_creation_are_reported(tmp_path: Path) -> None:
    async with local_cluster(tmp_path) as c:
        c.apply(deployment_manifest("web", 1))

        def rs_name() -> str:
            items = by_reason(events_about(c, "web"), "ScalingReplicaSet")
            return str(items[0]["message"].split()[4]) if items else ""

        await wait_for(rs_name, what="ScalingReplicaSet")
        name = rs_name()
        first = by_reason(events_about(c, "web"), "ScalingReplicaSet")[0]
        assert first["message"] == f"Scaled up replica set {name} to 1"
        assert first["source"]["component"] == "deployment-controller"
        assert first["involvedObject"]["kind"] == "Deployment"
        c.store.patch(DEPLOYMENTS, "default", "web", {"spec": {"replicas": 3}})
        await wait_for(
            lambda: any(
                e["message"] == f"Scaled up replica set {name} to 3 from 1"
                for e in by_reason(events_about(c, "web"), "ScalingReplicaSet")
            ),
            what="scaled up to 3",
        )
        await wait_for(
            lambda: len(by_reason(events_about(c, name), "SuccessfulCreate")) == 3, what="3 SuccessfulCreate"
        )
        created = by_reason(events_about(c, name), "SuccessfulCreate")
        pods = {p["metadata"]["name"] for p in c.pods(selector="app=web")}
        assert {e["message"].removeprefix("Created pod: ") for e in created} == pods
        c.store.patch(DEPLOYMENTS, "default", "web", {"spec": {"replicas": 1}})
        await wait_for(
            lambda: len(by_reason(events_about(c, name), "SuccessfulDelete")) == 2, what="2 SuccessfulDelete"
        )
        assert any(
            e["message"] == f"Scaled down replica set {name} to 1 from 3"
            for e in by_reason(events_about(c, "web"), "ScalingReplicaSet")
        )


async def test_events_expire_after_a_short_ttl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ev.TTL_ENV, "2")
    async with local_cluster(tmp_path) as c:
        c.apply(pod_manifest("brief", [app_container()]))
        await wait_for(lambda: by_reason(events_about(c, "brief"), "Started"), what="Started event")
        # a steady pod reports nothing new, so its events go once the TTL has passed
        await wait_for(lambda: not events_about(c, "brief"), timeout=10, what="events expired")
        assert c.pod("brief")["status"]["phase"] == "Running"


async def test_a_budget_without_pods_says_so(tmp_path: Path) -> None:
    async with local_cluster(tmp_path) as c:
        c.apply(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "lonely", "namespace": "default"},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "nobody"}}},
            }
        )
        found = await wait_for(lambda: by_reason(events_about(c, "lonely"), "NoPods"), what="NoPods event")
        assert found[0]["message"] == "No matching pods found" and found[0]["type"] == "Normal"
        assert found[0]["involvedObject"]["kind"] == "PodDisruptionBudget"
