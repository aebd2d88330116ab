"""The store keeps Kubernetes' object semantics: versions, selectors, conflicts, patches, watch."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from meshpilot.store import AlreadyExists, Conflict, Gone, NotFound, Store, merge_patch

PODS = ("", "pods")
DEPLOYMENTS = ("apps", "deployments")
CM = ("", "configmaps")


def deployment(name: str = "web", replicas: int = 1, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {"app": name}},
        "spec": {"replicas": replicas},
    }


@pytest.fixture
def store() -> Any:
    s = Store(None)
    yield s
    s.close()


def test_create_sets_identity_and_versions(store: Store) -> None:
    a = store.create(DEPLOYMENTS, deployment("a"))
    b = store.create(DEPLOYMENTS, deployment("b"))
    assert a["metadata"]["generation"] == 1
    assert a["metadata"]["uid"] != b["metadata"]["uid"]
    assert int(b["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"])
    assert a["metadata"]["creationTimestamp"].endswith("Z")
    assert store.get(DEPLOYMENTS, "default", "a") == a
    with pytest.raises(AlreadyExists, match=r'deployments\.apps "a" already exists'):
        store.create(DEPLOYMENTS, deployment("a"))
    with pytest.raises(NotFound, match=r'deployments\.apps "zz" not found'):
        store.get(DEPLOYMENTS, "default", "zz")


def test_generate_name(store: Store) -> None:
    obj = store.create(PODS, {"metadata": {"generateName": "web-", "namespace": "default"}})
    assert obj["metadata"]["name"].startswith("web-") and len(obj["metadata"]["name"]) == 9


def test_update_generation_conflict_and_noop(store: Store) -> None:
    created = store.create(DEPLOYMENTS, deployment("a"))
    changed = dict(created, spec={"replicas": 3})
    updated = store.update(DEPLOYMENTS, changed)
    assert updated["metadata"]["generation"] == 2
    # a stale resourceVersion is a Conflict
    with pytest.raises(Conflict, match="the object has been modified"):
        store.update(DEPLOYMENTS, dict(created, spec={"replicas": 5}))
    # metadata-only change keeps generation; a no-op keeps the resourceVersion
    relabelled = store.patch(DEPLOYMENTS, "default", "a", {"metadata": {"labels": {"x": "y"}}})
    assert relabelled["metadata"]["generation"] == 2
    assert relabelled["metadata"]["labels"] == {"app": "a", "x": "y"}
    again = store.patch(DEPLOYMENTS, "default", "a", {"metadata": {"labels": {"x": "y"}}})
    assert again["metadata"]["resourceVersion"] == relabelled["metadata"]["resourceVersion"]


def test_status_subresource(store: Store) -> None:
    store.create(DEPLOYMENTS, deployment("a"))
    with_status = store.patch(DEPLOYMENTS, "default", "a", {"status": {"replicas": 1}}, subresource="status")
    assert with_status["status"] == {"replicas": 1}
    assert with_status["metadata"]["generation"] == 1
    # the main resource ignores status, the status subresource ignores spec
    main = store.patch(DEPLOYMENTS, "default", "a", {"spec": {"replicas": 2}, "status": {"replicas": 9}})
    assert main["status"] == {"replicas": 1} and main["spec"]["replicas"] == 2
    sub = store.patch(
        DEPLOYMENTS, "default", "a", {"spec": {"replicas": 7}, "status": {"ready": 1}}, "status"
    )
    assert sub["spec"]["replicas"] == 2 and sub["status"] == {"replicas": 1, "ready": 1}


def test_merge_patch_rfc7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    assert merge_patch(target, {"a": "z", "c": {"f": None}, "l": [3]}) == {
        "a": "z",
        "c": {"d": "e"},
        "l": [3],
    }
    assert target["c"] == {"d": "e", "f": "g"}


def test_list_with_selectors_and_namespaces(store: Store) -> None:
    store.create(DEPLOYMENTS, deployment("a", app="shop", tier="web"))
    store.create(DEPLOYMENTS, deployment("b", app="shop", tier="db"))
    other = deployment("c", app="shop")
    other["metadata"]["namespace"] = "prod"
    store.create(DEPLOYMENTS, other)
    items, rv = store.list(DEPLOYMENTS)
    assert [i["metadata"]["name"] for i in items] == ["a", "b", "c"]
    assert rv == str(store.revision)
    assert [i["metadata"]["name"] for i in store.list(DEPLOYMENTS, "default")[0]] == ["a", "b"]
    assert [i["metadata"]["name"] for i in store.list(DEPLOYMENTS, None, "tier in (db)")[0]] == ["b"]
    assert [i["metadata"]["name"] for i in store.list(DEPLOYMENTS, None, "!tier")[0]] == ["c"]
    got = store.list(DEPLOYMENTS, None, None, "metadata.namespace=prod")[0]
    assert [i["metadata"]["name"] for i in got] == ["c"]


def test_graceful_pod_deletion_and_finalizers(store: Store) -> None:
    store.create(
        PODS,
        {"metadata": {"name": "p", "namespace": "default"}, "spec": {"terminationGracePeriodSeconds": 5}},
    )
    marked = store.delete(PODS, "default", "p")
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 5
    assert store.get(PODS, "default", "p")["metadata"]["deletionTimestamp"]
    store.delete(PODS, "default", "p", grace_period_seconds=0)
    with pytest.raises(NotFound):
        store.get(PODS, "default", "p")

    store.create(CM, {"metadata": {"name": "c", "namespace": "default", "finalizers": ["x/y"]}})
    store.delete(CM, "default", "c")
    assert store.get(CM, "default", "c")["metadata"]["deletionTimestamp"]
    store.patch(CM, "default", "c", {"metadata": {"finalizers": None}})
    with pytest.raises(NotFound):
        store.get(CM, "default", "c")

    store.create(CM, {"metadata": {"name": "d", "namespace": "default", "ownerReferences": [{"uid": "u"}]}})
    store.delete(CM, "default", "d")
    with pytest.raises(NotFound):
        store.get(CM, "default", "d")


def test_transaction_rolls_back_everything(store: Store) -> None:
    store.create(CM, {"metadata": {"name": "keep", "namespace": "default"}})
    before = store.revision
    with pytest.raises(AlreadyExists), store.transaction():
        store.create(CM, {"metadata": {"name": "new", "namespace": "default"}})
        store.patch(CM, "default", "keep", {"data": {"k": "v"}})
        store.create(CM, {"metadata": {"name": "keep", "namespace": "default"}})
    assert store.revision == before
    assert [i["metadata"]["name"] for i in store.list(CM)[0]] == ["keep"]
    assert "data" not in store.get(CM, "default", "keep")


def test_persistence_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = Store(path)
    created = first.create(DEPLOYMENTS, deployment("a"))
    first.patch(DEPLOYMENTS, "default", "a", {"spec": {"replicas": 4}})
    rv = first.revision
    first.close()
    second = Store(path)
    try:
        got = second.get(DEPLOYMENTS, "default", "a")
        assert got["spec"]["replicas"] == 4 and got["metadata"]["uid"] == created["metadata"]["uid"]
        assert second.revision == rv
        assert (
            int(
                second.create(CM, {"metadata": {"name": "n", "namespace": "default"}})["metadata"][
                    "resourceVersion"
                ]
            )
            == rv + 1
        )
    finally:
        second.close()


async def collect(it: Any, n: int) -> list[tuple[str, Any]]:
    out = []
    async with asyncio.timeout(5):
        async for event in it:
            out.append(event)
            if len(out) == n:
                break
    return out


async def test_watch_replays_history_then_live(store: Store) -> None:
    store.create(CM, {"metadata": {"name": "a", "namespace": "default"}})
    start = store.revision
    store.patch(CM, "default", "a", {"data": {"k": "1"}})
    store.create(CM, {"metadata": {"name": "b", "namespace": "other"}})
    watch = store.watch(CM, resource_version=str(start))
    first = await collect(watch, 2)
    assert [(t, o["metadata"]["name"]) for t, o in first] == [("MODIFIED", "a"), ("ADDED", "b")]
    store.delete(CM, "default", "a")
    live = await collect(watch, 1)
    assert live[0][0] == "DELETED" and live[0][1]["metadata"]["name"] == "a"
    await watch.aclose()


async def test_watch_without_version_lists_first_and_filters(store: Store) -> None:
    store.create(CM, {"metadata": {"name": "a", "namespace": "default", "labels": {"app": "x"}}})
    watch = store.watch(CM, namespace="default", label_selector="app=x")
    assert [(t, o["metadata"]["name"]) for t, o in await collect(watch, 1)] == [("ADDED", "a")]
    store.create(CM, {"metadata": {"name": "z", "namespace": "elsewhere", "labels": {"app": "x"}}})
    store.patch(CM, "default", "a", {"metadata": {"labels": {"app": "y"}}})  # stops matching
    store.patch(CM, "default", "a", {"metadata": {"labels": {"app": "x"}}})  # matches again
    events = await collect(watch, 2)
    assert [t for t, _ in events] == ["DELETED", "ADDED"]
    await watch.aclose()


async def test_watch_sees_writes_from_threads_and_not_rollbacks(store: Store) -> None:
    watch = store.watch(CM, resource_version=str(store.revision))

    def writer() -> None:
        try:
            with store.transaction():
                store.create(CM, {"metadata": {"name": "ghost", "namespace": "default"}})
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        store.create(CM, {"metadata": {"name": "real", "namespace": "default"}})

    thread = threading.Thread(target=writer)
    thread.start()
    events = await collect(watch, 1)
    thread.join(5)
    assert [(t, o["metadata"]["name"]) for t, o in events] == [("ADDED", "real")]
    await watch.aclose()


async def test_watch_compacted_history_is_gone() -> None:
    store = Store(None, history=5)
    try:
        for i in range(20):
            store.create(CM, {"metadata": {"name": f"c{i}", "namespace": "default"}})
        with pytest.raises(Gone, match="too old resource version"):
            await collect(store.watch(CM, resource_version="1"), 1)
        recent = str(store.revision - 2)
        events = await collect(store.watch(CM, resource_version=recent), 2)
        assert [o["metadata"]["name"] for _, o in events] == ["c18", "c19"]
    finally:
        store.close()


async def test_close_ends_watches() -> None:
    store = Store(None)
    watch = store.watch(CM)
    task = asyncio.ensure_future(collect(watch, 1))
    await asyncio.sleep(0)
    store.close()
    assert await asyncio.wait_for(task, 5) == []


async def test_watch_resumes_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = Store(path)
    first.create(CM, {"metadata": {"name": "a", "namespace": "default"}})
    seen = first.revision
    first.patch(CM, "default", "a", {"data": {"k": "v"}})
    first.close()
    second = Store(path)
    try:
        watch = second.watch(CM, resource_version=str(seen))
        replayed = await collect(watch, 1)
        assert replayed[0][0] == "MODIFIED" and replayed[0][1]["data"] == {"k": "v"}
        second.delete(CM, "default", "a")
        assert (await collect(watch, 1))[0][0] == "DELETED"
        await watch.aclose()
    finally:
        second.close()


async def test_concurrent_writers_are_seen_in_revision_order(store: Store) -> None:
    store.create(CM, {"metadata": {"name": "seed", "namespace": "default"}})
    start = store.revision  # not "0", which would mean "list first, then watch"
    watch = store.watch(CM, resource_version=str(start))

    def writer(prefix: str) -> None:
        for i in range(50):
            store.create(CM, {"metadata": {"name": f"{prefix}-{i}", "namespace": "default"}})

    threads = [threading.Thread(target=writer, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    events = await collect(watch, 200)
    for t in threads:
        t.join(10)
    revisions = [int(o["metadata"]["resourceVersion"]) for _, o in events]
    assert revisions == sorted(revisions) and len(set(revisions)) == 200
    assert revisions[-1] == store.revision == start + 200
    await watch.aclose()


async def test_a_watch_that_stops_reading_is_cut_off_with_gone_and_loses_nothing() -> None:
    store = Store(None, watch_backlog=5)
    try:
        store.create(CM, {"metadata": {"name": "first", "namespace": "default"}})
        watch = store.watch(CM, resource_version=str(store.revision - 1))
        assert len(await collect(watch, 1)) == 1  # registered, and now it stops reading
        for i in range(20):
            store.create(CM, {"metadata": {"name": f"c{i}", "namespace": "default"}})
        seen: list[dict[str, Any]] = []
        with pytest.raises(Gone, match="fell 5 events behind"):
            async for _, obj in watch:
                seen.append(obj)
        assert [o["metadata"]["name"] for o in seen] == [f"c{i}" for i in range(5)]
        # As a Kubernetes client does after 410: watch again from the last version it saw.
        rest = await collect(store.watch(CM, resource_version=seen[-1]["metadata"]["resourceVersion"]), 15)
        assert [o["metadata"]["name"] for _, o in rest] == [f"c{i}" for i in range(5, 20)]
    finally:
        store.close()
