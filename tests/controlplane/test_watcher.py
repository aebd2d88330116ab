"""The registry watcher: cache bookkeeping without I/O, then list+watch against the real cluster."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from cp_helpers import istio, pod, service

from meshpilot.controlplane.registry import Snapshot
from meshpilot.controlplane.server import ControlPlane
from meshpilot.controlplane.watcher import KINDS, RegistryWatcher


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Snapshot, set[str] | None]] = []

    def __call__(self, build: Callable[[], Snapshot], changed: set[str] | None) -> None:
        self.calls.append((build(), changed))  # what the cache held at this report


def kind(name: str) -> Any:
    return next(k for k in KINDS if k.kind == name)


def with_rv(obj: dict[str, Any], rv: str) -> dict[str, Any]:
    obj["metadata"]["resourceVersion"] = rv
    return obj


def test_nothing_is_reported_until_every_kind_is_listed_then_a_full_snapshot() -> None:
    rec = Recorder()
    w = RegistryWatcher(None, rec)  # type: ignore[arg-type]
    for k in KINDS[:-1]:
        w.apply_list(k, [])
    w.apply_event(
        kind("Service"), "ADDED", with_rv(service("a", "ns", [("http", 80, 80)], "127.1.128.1"), "5")
    )
    assert rec.calls == []
    w.apply_list(KINDS[-1], [])
    ((snap, changed),) = rec.calls
    assert changed is None and [s["metadata"]["name"] for s in snap.services] == ["a"]


def test_events_and_relists_report_the_keys_that_changed() -> None:
    rec = Recorder()
    w = RegistryWatcher(None, rec)  # type: ignore[arg-type]
    for k in KINDS:
        w.apply_list(k, [])
    rec.calls.clear()
    vs = with_rv(istio("VirtualService", "r", "prod", {"hosts": ["r"]}), "7")
    w.apply_event(kind("VirtualService"), "ADDED", vs)
    assert rec.calls[-1][1] == {"VirtualService/prod/r"}
    w.apply_event(kind("VirtualService"), "DELETED", vs)
    assert rec.calls[-1][1] == {"VirtualService/prod/r"} and rec.calls[-1][0].virtual_services == []
    # a relist after a broken watch reports additions, changes and deletions alike
    p1, p2 = (
        with_rv(pod("p1", "prod", "127.1.1.1", {}), "1"),
        with_rv(pod("p2", "prod", "127.1.1.2", {}), "2"),
    )
    w.apply_list(kind("Pod"), [p1, p2])
    assert rec.calls[-1][1] == {"Pod/prod/p1", "Pod/prod/p2"}
    p2b = with_rv(pod("p2", "prod", "127.1.1.2", {"x": "y"}), "3")
    w.apply_list(kind("Pod"), [p2b])
    assert rec.calls[-1][1] == {"Pod/prod/p1", "Pod/prod/p2"}
    n = len(rec.calls)
    w.apply_list(kind("Pod"), [p2b])
    assert len(rec.calls) == n  # nothing changed: no report


async def test_a_burst_of_events_builds_one_snapshot_when_the_push_reads_it() -> None:
    plane = ControlPlane(istiod_id="istiod-test")
    w = RegistryWatcher(None, plane.update)  # type: ignore[arg-type]
    built = 0
    build = w.snapshot

    def counting() -> Snapshot:
        nonlocal built
        built += 1
        return build()

    w.snapshot = counting  # type: ignore[method-assign]
    for k in KINDS:
        w.apply_list(k, [])
    for i in range(200):
        w.apply_event(kind("Pod"), "ADDED", with_rv(pod(f"p{i}", "prod", f"127.1.2.{i % 250}", {}), str(i)))
    assert built == 0  # 201 reports, not one copy of the cache yet
    snap = plane.snapshot
    assert built == 1 and snap is not None and len(snap.pods) == 200  # every event is in it
    assert plane.snapshot is snap and built == 1  # read again without a change: the same one
    w.apply_event(kind("Pod"), "DELETED", with_rv(pod("p0", "prod", "127.1.2.0", {}), "300"))
    assert plane.snapshot is not snap and built == 2 and len(plane.snapshot.pods) == 199
    plane.update(Snapshot())  # a ready-made snapshot still works as before
    assert plane.snapshot == Snapshot() and built == 2


def test_mesh_config_comes_from_the_revisions_configmap_and_bad_yaml_keeps_the_last() -> None:
    rec = Recorder()
    w = RegistryWatcher(None, rec, revision="canary")  # type: ignore[arg-type]
    for k in KINDS:
        w.apply_list(k, [])

    def cm(name: str, mesh: str, rv: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "istio-system", "resourceVersion": rv},
            "data": {"mesh": mesh},
        }

    w.apply_event(kind("ConfigMap"), "ADDED", cm("istio", "accessLogFile: /dev/stdout", "1"))
    assert rec.calls[-1][1] is None and rec.calls[-1][0].mesh.access_log_file == "/dev/stdout"  # fallback
    w.apply_event(
        kind("ConfigMap"), "ADDED", cm("istio-canary", "outboundTrafficPolicy: {mode: REGISTRY_ONLY}", "2")
    )
    assert rec.calls[-1][0].mesh.outbound_mode == "REGISTRY_ONLY"
    w.apply_event(kind("ConfigMap"), "MODIFIED", cm("istio-canary", "accessLogEncoding: [", "3"))
    assert rec.calls[-1][0].mesh.outbound_mode == "REGISTRY_ONLY"  # the previous, good config stays


# --- against the real local cluster -------------------------------------------------------------------


@pytest.fixture
def namespace(cluster: Any) -> Any:
    name = "cp-watch-test"
    client = cluster.client
    with contextlib.suppress(Exception):
        client.delete(("", "namespaces"), name)
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    with contextlib.suppress(Exception):
        client.delete(("", "namespaces"), name)


async def test_watcher_follows_the_cluster(cluster: Any, namespace: str) -> None:
    from meshpilot.client import AsyncClient

    rec = Recorder()
    async with AsyncClient(cluster.info.server, cluster.info.token) as client:
        w = RegistryWatcher(client, rec)
        w.start()
        try:
            await asyncio.wait_for(w.synced.wait(), 20)
            assert rec.calls[0][1] is None
            svc = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {
                    "selector": {"app": "web"},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                },
            }
            await asyncio.to_thread(cluster.client.create, svc)
            vs = istio(
                "VirtualService",
                "web",
                namespace,
                {"hosts": ["web"], "http": [{"route": [{"destination": {"host": "web"}}]}]},
            )
            await asyncio.to_thread(cluster.client.create, vs)

            async def seen(key: str) -> Snapshot:
                deadline = asyncio.get_running_loop().time() + 20
                while True:
                    for snap, changed in reversed(rec.calls):
                        if changed and key in changed:
                            return snap
                    assert asyncio.get_running_loop().time() < deadline, f"{key} never reported"
                    await asyncio.sleep(0.05)

            snap = await seen(f"Service/{namespace}/web")
            assert any(s["metadata"]["name"] == "web" for s in snap.services)
            snap = await seen(f"VirtualService/{namespace}/web")
            assert any(v["metadata"]["name"] == "web" for v in snap.virtual_services)
            assert w.errors == 0
        finally:
            await w.stop()


class FlakyClient:
    """Lists from a scripted sequence; each watch yields its scripted events, then fails (or waits)."""

    def __init__(self, lists: list[list[dict[str, Any]]], failures: list[Exception]) -> None:
        from meshpilot.client import ObjectList

        self.lists = [ObjectList(items) for items in lists]
        for i, lst in enumerate(self.lists):
            lst.resource_version = str(i + 1)
        self.failures = failures
        self.list_calls = 0
        self.stop = asyncio.Event()

    async def list(self, resource: Any, namespace: Any = None) -> Any:
        if resource != ("", "services"):
            from meshpilot.client import ObjectList

            return ObjectList()
        self.list_calls += 1
        return self.lists[min(self.list_calls, len(self.lists)) - 1]

    async def watch(self, resource: Any, namespace: Any = None, *, resource_version: Any = None) -> Any:
        if resource == ("", "services") and self.failures:
            raise self.failures.pop(0)
        await self.stop.wait()
        return
        yield  # an async generator that yields nothing


async def test_a_failed_watch_lists_again_and_reports_the_difference() -> None:
    from meshpilot.client import ApiError

    a = with_rv(service("a", "ns", [("http", 80, 80)], "127.1.128.1"), "1")
    b = with_rv(service("b", "ns", [("http", 80, 80)], "127.1.128.2"), "2")
    client = FlakyClient([[a], [a, b], [b]], [ApiError(410, "Gone", "too old"), ConnectionError("reset")])
    rec = Recorder()
    w = RegistryWatcher(client, rec, backoff=(0.01, 0.05))  # type: ignore[arg-type]
    w.start()
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while client.list_calls < 3 or not rec.calls or rec.calls[-1][1] != {"Service/ns/a"}:
            assert asyncio.get_running_loop().time() < deadline, (
                client.list_calls,
                [c[1] for c in rec.calls],
            )
            await asyncio.sleep(0.01)
        changes = [c[1] for c in rec.calls]
        assert changes[0] is None  # the first full snapshot
        # b, found by the relist after 410 Gone, was reported (in the first snapshot or as a change)
        assert any("b" in {s["metadata"]["name"] for s in snap.services} for snap, _ in rec.calls)
        # a's deletion, seen only by the relist after the connection reset, is reported as a change
        assert [s["metadata"]["name"] for s in rec.calls[-1][0].services] == ["b"]
        assert w.errors == 2
    finally:
        client.stop.set()
        await w.stop()
