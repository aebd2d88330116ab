"""The API server speaks Kubernetes' REST dialect: a maintained client library (lightkube) works.

Every test drives a real HTTP server on loopback (see ``apiserver`` in conftest.py).
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import pytest
from lightkube import ApiError as LightkubeError
from lightkube import Client as Lightkube
from lightkube import KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Namespace

from meshpilot.client import ApiError, Client

VirtualService = create_namespaced_resource("networking.istio.io", "v1", "VirtualService", "virtualservices")
VirtualServiceBeta = create_namespaced_resource(
    "networking.istio.io", "v1beta1", "VirtualService", "virtualservices"
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def lk(apiserver: Any) -> Any:
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": apiserver.url}}],
            "users": [{"name": "u", "user": {"token": apiserver.token}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "default"}}],
            "current-context": "x",
        }
    )
    client = Lightkube(config=config, field_manager="tests")
    yield client


@pytest.fixture(scope="module")
def client(apiserver: Any) -> Any:
    with Client(apiserver.url, apiserver.token) as c:
        yield c


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "app", "image": "local", "command": ["python", "-c", "pass"]}]
                },
            },
        },
    }


def virtual_service(name: str, weight: Any = 100) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "hosts": ["productcatalog"],
            "http": [
                {"route": [{"destination": {"host": "productcatalog", "subset": "v1"}, "weight": weight}]}
            ],
        },
    }


def test_unauthenticated_requests_get_401(apiserver: Any) -> None:
    response = httpx.get(f"{apiserver.url}/api/v1/namespaces")
    assert response.status_code == 401
    assert response.json()["reason"] == "Unauthorized"
    wrong = httpx.get(f"{apiserver.url}/api/v1/namespaces", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert httpx.get(f"{apiserver.url}/readyz").text == "ok"


def test_discovery_documents(client: Client) -> None:
    core = client.request("GET", "/api/v1").json()
    pods = next(r for r in core["resources"] if r["name"] == "pods")
    assert (
        pods["kind"] == "Pod"
        and pods["namespaced"]
        and "watch" in pods["verbs"]
        and "po" in pods["shortNames"]
    )
    assert any(r["name"] == "pods/log" for r in core["resources"])
    groups = {g["name"]: g for g in client.request("GET", "/apis").json()["groups"]}
    assert {"apps", "networking.istio.io", "security.istio.io"} <= set(groups)
    istio_versions = [v["version"] for v in groups["networking.istio.io"]["versions"]]
    assert {"v1", "v1beta1", "v1alpha3"} <= set(istio_versions)
    apps = client.request("GET", "/apis/apps/v1").json()
    assert any(r["name"] == "deployments/scale" and r["kind"] == "Scale" for r in apps["resources"])
    assert client.request("GET", "/version").json()["major"] == "1"


def test_lightkube_core_crud_and_watch(lk: Any, apiserver: Any) -> None:
    name = unique("cm")
    created = lk.create(ConfigMap(metadata=ObjectMeta(name=name, labels={"suite": "crud"}), data={"k": "v"}))
    assert created.metadata.uid and created.metadata.resourceVersion
    got = lk.get(ConfigMap, name)
    assert got.data == {"k": "v"}
    assert name in [c.metadata.name for c in lk.list(ConfigMap, labels={"suite": "crud"})]
    patched = lk.patch(ConfigMap, name, {"data": {"k": "w"}})
    assert patched.data == {"k": "w"}
    with pytest.raises(LightkubeError) as info:
        lk.create(ConfigMap(metadata=ObjectMeta(name=name)))
    assert info.value.status.code == 409 and info.value.status.reason == "AlreadyExists"

    # watch from the creation's resourceVersion: the patch and the deletion arrive in order
    events: list[tuple[str, str]] = []
    done = threading.Event()

    def consume() -> None:
        for op, obj in lk.watch(
            ConfigMap,
            namespace="default",
            resource_version=created.metadata.resourceVersion,
            labels={"suite": "crud"},
        ):
            events.append((op, obj.metadata.name))
            if op == "DELETED":
                done.set()
                return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    lk.delete(ConfigMap, name)
    assert done.wait(10), events
    assert events == [("MODIFIED", name), ("DELETED", name)]
    with pytest.raises(LightkubeError) as missing:
        lk.get(ConfigMap, name)
    assert missing.value.status.code == 404


def test_lightkube_deployment_scale_and_apply(lk: Any) -> None:
    name = unique("web")
    dep = lk.create(Deployment.from_dict(deployment(name)))
    assert dep.metadata.generation == 1
    scaled = lk.patch(Deployment, name, {"spec": {"replicas": 3}})
    assert scaled.spec.replicas == 3 and scaled.metadata.generation == 2
    from lightkube.resources.apps_v1 import Deployment as D

    scale = lk.get(D.Scale, name)
    assert scale.spec.replicas == 3 and scale.status.selector == f"app={name}"
    # server-side apply (lightkube's apply) creates and updates
    applied_name = unique("applied")
    applied = lk.apply(Deployment.from_dict(deployment(applied_name, 2)))
    assert applied.spec.replicas == 2
    lk.delete(Deployment, name)
    lk.delete(Deployment, applied_name)


def test_lightkube_istio_generic_resources_in_every_version(lk: Any) -> None:
    name = unique("vs")
    created = lk.create(VirtualService.from_dict(virtual_service(name)))
    assert created.apiVersion == "networking.istio.io/v1"
    # the same object under another served version
    beta = lk.get(VirtualServiceBeta, name)
    assert beta.apiVersion == "networking.istio.io/v1beta1"
    assert beta.spec["http"][0]["route"][0]["destination"]["subset"] == "v1"
    lk.patch(VirtualService, name, {"spec": {"hosts": ["productcatalog", "catalog"]}})
    assert lk.get(VirtualService, name).spec["hosts"] == ["productcatalog", "catalog"]
    assert name in [v.metadata.name for v in lk.list(VirtualService, namespace="*")]
    lk.delete(VirtualService, name)


def test_invalid_objects_are_422_with_field_paths(client: Client, lk: Any) -> None:
    with pytest.raises(ApiError) as info:
        client.create(virtual_service(unique("bad"), weight="ten"))
    err = info.value
    assert err.status == 422 and err.reason == "Invalid"
    assert "spec.http[0].route[0].weight" in err.message
    assert err.details["causes"][0]["field"] == "spec.http[0].route[0].weight"
    with pytest.raises(LightkubeError) as lk_info:
        lk.create(Namespace(metadata=ObjectMeta(name="Not_A_Valid_Name")))
    assert lk_info.value.status.code == 422


def test_namespace_must_exist(client: Client) -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "nowhere"}}
    with pytest.raises(ApiError) as info:
        client.create(obj)
    assert info.value.status == 404 and 'namespaces "nowhere" not found' in info.value.message


def test_status_subresource_and_conflicts(client: Client) -> None:
    name = unique("st")
    created = client.create(deployment(name))
    client.patch("deploy", name, {"status": {"replicas": 5}})  # main resource ignores status
    assert "status" not in client.get("deployments", name) or client.get("deployments", name)["status"] == {}
    client.patch("deployments.apps", name, {"status": {"replicas": 1}}, subresource="status")
    assert client.get(("apps", "deployments"), name)["status"]["replicas"] == 1
    stale = dict(created, spec=dict(created["spec"], replicas=4))
    with pytest.raises(ApiError) as info:
        client.replace(stale)
    assert info.value.status == 409 and info.value.reason == "Conflict"
    client.delete("deploy", name)


def test_watch_with_too_old_version_is_gone(client: Client, apiserver: Any) -> None:
    apiserver.store._compacted = 5  # as if history before revision 5 had been compacted
    try:
        with pytest.raises(ApiError) as info:
            next(iter(client.watch("configmaps", resource_version="1")))
        assert info.value.status == 410 and info.value.reason == "Expired"
    finally:
        apiserver.store._compacted = 0


def test_our_client_watch_list_and_pods(client: Client, apiserver: Any) -> None:
    name = unique("pod")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": "local", "command": ["python", "-c", "pass"]}]},
    }
    client.create(pod)
    items = client.list("po", label_selector=f"app={name}")
    assert [p["metadata"]["name"] for p in items] == [name] and int(items.resource_version) > 0
    # logs come from the file the runtime writes
    log_dir = apiserver.info.pods_dir / "default" / name
    log_dir.mkdir(parents=True)
    (log_dir / "main.log").write_text("one\ntwo\nthree\n")
    assert client.logs(name) == "one\ntwo\nthree\n"
    assert client.logs(name, container="main", tail_lines=1) == "three\n"
    with pytest.raises(ApiError) as info:
        client.logs(name, container="nope")
    assert info.value.status == 400
    # graceful deletion: the pod is marked, then removed with grace 0
    marked = client.delete("pods", name)
    assert marked["metadata"]["deletionTimestamp"]
    events = client.watch("pods", resource_version=marked["metadata"]["resourceVersion"], timeout_seconds=5)
    client.delete("pods", name, grace_period_seconds=0)
    assert next(iter(events))[0] == "DELETED"


def test_meshpilot_apply_is_atomic(client: Client) -> None:
    good, bad = unique("good"), unique("bad")
    ns = unique("ns")
    items = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        dict(deployment(good), metadata={"name": good, "namespace": ns}),
        virtual_service(bad, weight="ten"),
    ]
    with pytest.raises(ApiError) as info:
        client.apply(items)
    assert info.value.status == 422
    with pytest.raises(ApiError):
        client.get("namespaces", ns)
    results = client.apply(items[:2])
    assert [r["result"] for r in results] == ["created", "created"]
    assert [r["result"] for r in client.apply(items[:2])] == ["unchanged", "unchanged"]
    changed = dict(items[1], spec=dict(items[1]["spec"], replicas=3))
    assert [r["result"] for r in client.apply([items[0], changed])] == ["unchanged", "configured"]
    assert client.get("deploy", good, ns)["spec"]["replicas"] == 3
    # a failure in the middle of the transaction (namespace missing) changes nothing
    other = dict(deployment(unique("x")), metadata={"name": "x", "namespace": unique("missing")})
    with pytest.raises(ApiError) as missing:
        client.apply([dict(changed, spec=dict(changed["spec"], replicas=5)), other])
    assert missing.value.status == 404
    assert client.get("deploy", good, ns)["spec"]["replicas"] == 3


def ready_pod(name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": "local", "command": ["python", "-c", "pass"]}]},
    }


def test_eviction_honours_pod_disruption_budget(client: Client, apiserver: Any) -> None:
    app = unique("pdb")
    client.create(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": app, "namespace": "default"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}},
        }
    )
    ready = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    first = f"{app}-a"
    client.create(ready_pod(first, app))
    client.patch("pods", first, {"status": ready}, subresource="status")
    with pytest.raises(ApiError) as refused:
        client.evict(first)
    assert refused.value.status == 429 and refused.value.reason == "TooManyRequests"
    assert "disruption budget" in refused.value.message
    second = f"{app}-b"
    client.create(ready_pod(second, app))
    client.patch("pods", second, {"status": ready}, subresource="status")
    client.evict(first)
    assert client.get("pods", first)["metadata"]["deletionTimestamp"]


def test_follow_logs_streams_appended_lines(client: Client, apiserver: Any) -> None:
    name = unique("logger")
    client.create(ready_pod(name, name))
    log_file = apiserver.info.pods_dir / "default" / name / "main.log"
    log_file.parent.mkdir(parents=True)
    log_file.write_text("first\n")
    lines = client.logs(name, follow=True)
    assert next(lines) == "first"
    with log_file.open("a") as fh:
        fh.write("second\n")
    assert next(lines) == "second"
    client.delete("pods", name, grace_period_seconds=0)
    assert list(lines) == []  # the stream ends when the pod is gone


def _write_log(apiserver: Any, name: str, text: str) -> None:
    log_file = apiserver.info.pods_dir / "default" / name / "main.log"
    log_file.parent.mkdir(parents=True)
    log_file.write_text(text)


def test_plain_logs_serve_tail_lines_and_limit_bytes_in_chunks(client: Client, apiserver: Any) -> None:
    name = unique("biglog")
    client.create(ready_pod(name, name))
    lines = [f"line {i:06d} " + "x" * 40 for i in range(20_000)]  # ~1 MB: many read chunks
    _write_log(apiserver, name, "\n".join(lines) + "\n")
    url = f"{apiserver.url}/api/v1/namespaces/default/pods/{name}/log"
    headers = {"Authorization": f"Bearer {apiserver.token}"}
    with httpx.Client(headers=headers, timeout=10) as http:
        whole = http.get(url)
        assert whole.status_code == 200 and whole.text.splitlines() == lines
        assert whole.headers.get("transfer-encoding") == "chunked"  # streamed, not one buffer
        tail = http.get(url, params={"tailLines": "3"})
        assert tail.text == "\n".join(lines[-3:]) + "\n"
        assert http.get(url, params={"tailLines": "0"}).text == ""
        limited = http.get(url, params={"limitBytes": "100"})
        assert limited.content == whole.content[:100]
        both = http.get(url, params={"tailLines": "2", "limitBytes": "10"})
        assert both.text == lines[-2][:10]
        for bad in ({"tailLines": "-1"}, {"limitBytes": "0"}, {"limitBytes": "ten"}):
            refused = http.get(url, params=bad)
            assert refused.status_code == 400, bad
            assert next(iter(bad)) in refused.json()["message"]
    client.delete("pods", name, grace_period_seconds=0)


def test_tail_offset_reads_only_the_end_of_a_large_log(tmp_path: Any) -> None:
    from meshpilot.cluster import apiserver as module

    path = tmp_path / "big.log"
    path.write_bytes(b"y" * 4_000_000 + b"\na\nb\nc")
    with path.open("rb") as raw:
        read = 0

        class Counting:
            def seek(self, offset: int) -> int:
                return raw.seek(offset)

            def read(self, size: int = -1) -> bytes:
                nonlocal read
                data = raw.read(size)
                read += len(data)
                return data

        size = path.stat().st_size
        assert module._tail_offset(Counting(), 2, size) == size - 3  # type: ignore[arg-type]
        assert read < 2 * module._LOG_CHUNK
        assert module._tail_offset(Counting(), 5, size) == 0  # type: ignore[arg-type]


def test_follow_logs_honours_tail_lines_and_limit_bytes(client: Client, apiserver: Any) -> None:
    name = unique("followtail")
    client.create(ready_pod(name, name))
    _write_log(apiserver, name, "one\ntwo\nthree\n")
    lines = client.follow_logs(name, tail_lines=1)
    assert next(lines) == "three"
    lines.close()
    url = f"{apiserver.url}/api/v1/namespaces/default/pods/{name}/log"
    headers = {"Authorization": f"Bearer {apiserver.token}"}
    with httpx.Client(headers=headers, timeout=10) as http:
        # the stream ends once limitBytes are sent, though the pod is still there
        limited = http.get(url, params={"follow": "true", "limitBytes": "6"})
        assert limited.text == "one\ntw"
    client.delete("pods", name, grace_period_seconds=0)


async def test_async_client_roundtrip(apiserver: Any) -> None:
    import asyncio

    from meshpilot.client import AsyncClient

    name = unique("async")
    async with AsyncClient(apiserver.url, apiserver.token) as ac:
        created = await ac.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}}
        )

        async def collect() -> list[tuple[str, str]]:
            seen = []
            rv = created["metadata"]["resourceVersion"]
            async for type_, obj in ac.watch("cm", resource_version=rv, timeout_seconds=10):
                if obj["metadata"]["name"] == name:
                    seen.append((type_, obj["metadata"]["name"]))
                if type_ == "DELETED":
                    break
            return seen

        watching = asyncio.ensure_future(collect())
        await ac.patch("configmaps", name, {"data": {"a": "2"}})
        await ac.delete("configmaps", name)
        assert await asyncio.wait_for(watching, 10) == [("MODIFIED", name), ("DELETED", name)]
        listed = await ac.list("configmaps", namespace="*")
        assert name not in [i["metadata"]["name"] for i in listed]


def test_abandoned_watch_releases_its_store_watcher(apiserver: Any) -> None:
    import socket
    import time

    before = len(apiserver.store._watchers)
    host, port = apiserver.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    request = (
        f"GET /api/v1/namespaces/default/configmaps?watch=true&resourceVersion={apiserver.store.revision} HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {apiserver.token}\r\n\r\n"
    )
    sock.sendall(request.encode())
    assert b"200 OK" in sock.recv(4096)
    deadline = time.monotonic() + 5
    while len(apiserver.store._watchers) <= before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(apiserver.store._watchers) == before + 1
    sock.close()
    deadline = time.monotonic() + 5
    while len(apiserver.store._watchers) > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(apiserver.store._watchers) == before


def test_delete_with_orphan_propagation_keeps_dependents(client: Client) -> None:
    owner = client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": unique("owner")}})
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    dependent = client.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": unique("dep"), "ownerReferences": [ref]},
        }
    )
    client.delete("configmaps", owner["metadata"]["name"], propagation_policy="Orphan")
    kept = client.get("configmaps", dependent["metadata"]["name"])
    assert "ownerReferences" not in kept["metadata"]
    with pytest.raises(ApiError) as bad:
        client.delete("configmaps", dependent["metadata"]["name"], propagation_policy="Sometimes")
    assert bad.value.status == 400


def test_deleting_a_namespace_deletes_its_contents(client: Client) -> None:
    ns = unique("gone")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ns}})
    client.create(dict(virtual_service("vs"), metadata={"name": "vs", "namespace": ns}))
    client.delete("namespaces", ns)
    assert client.list("configmaps", ns) == [] and client.list("vs", ns) == []
    with pytest.raises(ApiError) as missing:
        client.get("namespaces", ns)
    assert missing.value.status == 404
    with pytest.raises(ApiError) as protected:
        client.delete("namespaces", "default")
    assert protected.value.status == 403


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (119, "119s"),
        (200, "3m20s"),
        (240, "4m"),
        (47 * 60, "47m"),
        (5 * 3600 + 180, "5h3m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (200 * 86400, "200d"),
    ],
)
def test_human_duration_matches_kubernetes(seconds: int, text: str) -> None:
    from meshpilot.cluster.apitables import human_duration

    assert human_duration(seconds) == text


def test_tables_for_kubectl_get(client: Client) -> None:
    name = unique("tbl")
    client.create(ready_pod(name, name))
    client.patch(
        "pods",
        name,
        {
            "status": {
                "phase": "Running",
                "podIP": "127.1.1.9",
                "containerStatuses": [
                    {
                        "name": "main",
                        "ready": True,
                        "restartCount": 2,
                        "image": "local",
                        "imageID": "",
                        "state": {"running": {}},
                    }
                ],
            }
        },
        subresource="status",
    )
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    body = client.request(
        "GET",
        "/api/v1/namespaces/default/pods",
        params={"labelSelector": f"app={name}"},
        headers={"Accept": accept},
    ).json()
    assert body["kind"] == "Table"
    assert [c["name"] for c in body["columnDefinitions"]][:5] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]
    assert body["rows"][0]["cells"][:4] == [name, "1/1", "Running", 2]
    assert body["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    one = client.request("GET", f"/api/v1/namespaces/default/pods/{name}", headers={"Accept": accept}).json()
    assert one["rows"][0]["cells"][0] == name
    client.delete("pods", name, grace_period_seconds=0)


def test_list_pagination_with_limit_and_continue(client: Client, lk: Any) -> None:
    label = unique("page")
    for i in range(5):
        client.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{label}-{i}", "labels": {"page": label}},
            }
        )
    first = client.request(
        "GET",
        "/api/v1/namespaces/default/configmaps",
        params={"labelSelector": f"page={label}", "limit": "2"},
    ).json()
    assert len(first["items"]) == 2 and first["metadata"]["continue"]
    # lightkube follows the continue tokens itself
    names = [c.metadata.name for c in lk.list(ConfigMap, labels={"page": label}, chunk_size=2)]
    assert names == [f"{label}-{i}" for i in range(5)]


def test_reapplying_the_examples_changes_nothing(client: Client, apiserver: Any) -> None:
    from pathlib import Path

    from meshpilot.api import load_objects

    examples = Path(__file__).resolve().parents[2] / "examples"
    items = []
    for path in sorted(examples.glob("*.yaml")):
        items.extend(load_objects(path.read_text(), str(path)))
    first = client.apply(items)
    assert {r["result"] for r in first} <= {"created", "configured", "unchanged"}
    again = client.apply(items)
    assert [(r["kind"], r["name"], r["result"]) for r in again if r["result"] != "unchanged"] == []
    # a Service keeps its ClusterIP across re-applies
    services = [r for r in again if r["kind"] == "Service"]
    assert services and all(r["object"]["spec"].get("clusterIP") for r in services)


def test_follow_logs_carries_on_across_a_container_restart(client: Client, apiserver: Any) -> None:
    """The runtime renames a restarting container's log to .previous.log and starts a new one: a
    follower gets the old instance's last lines, then the new log from its first byte."""
    name = unique("restarter")
    client.create(ready_pod(name, name))
    log_file = apiserver.info.pods_dir / "default" / name / "main.log"
    log_file.parent.mkdir(parents=True)
    log_file.write_text("first\n")
    lines = client.logs(name, follow=True)
    assert next(lines) == "first"
    fresh = log_file.with_name("fresh.tmp")
    fresh.write_text("new instance starting\nnew instance listening\nnew instance serving\n")
    with log_file.open("a") as fh:
        fh.write("old instance exiting\n")
    log_file.rename(log_file.with_name("main.previous.log"))
    fresh.replace(log_file)
    got = [next(lines) for _ in range(4)]
    assert got == [
        "old instance exiting",
        "new instance starting",
        "new instance listening",
        "new instance serving",
    ]
    client.delete("pods", name, grace_period_seconds=0)
    assert list(lines) == []
