"""The push server over real sockets: a fake proxy speaks the NDJSON discovery stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from cp_helpers import istio
from test_translate import FRONTEND, REVIEWS_POD, snapshot

from meshpilot.controlplane.debounce import Debouncer
from meshpilot.controlplane.debug import start_debug
from meshpilot.controlplane.registry import proxy_from_pod
from meshpilot.controlplane.server import ControlPlane
from meshpilot.controlplane.xds import sync_status
from meshpilot.xds import stream
from meshpilot.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE

TYPES = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)


class FakeProxy:
    """Just enough of a sidecar's xDS client to drive the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, node_id: str) -> None:
        self.reader, self.writer, self.node_id = reader, writer, node_id
        self.first = True

    @classmethod
    async def connect(cls, port: int, pod: dict[str, Any]) -> FakeProxy:
        return await cls.connect_to("127.0.0.1", port, pod)

    @classmethod
    async def connect_to(cls, host: str, port: int, pod: dict[str, Any]) -> FakeProxy:
        reader, writer = await asyncio.open_connection(host, port, limit=64 * 1024 * 1024)
        return cls(reader, writer, proxy_from_pod(pod).id)

    async def send(self, req: dict[str, Any]) -> None:
        if self.first:
            req = {
                **req,
                "node": {
                    "id": self.node_id,
                    "cluster": "Kubernetes",
                    "metadata": {"ISTIO_VERSION": "1.30.3"},
                },
            }
            self.first = False
        self.writer.write(stream.encode(req))
        await self.writer.drain()

    async def subscribe(self, *types: str) -> None:
        for t in types:
            await self.send({"type_url": t})

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        assert line, "stream closed"
        return dict(stream.decode(line))

    async def expect_nothing(self, within: float = 0.4) -> None:
        try:
            line = await asyncio.wait_for(self.reader.readline(), within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected push: {line[:200]!r}")

    async def ack(self, resp: dict[str, Any]) -> None:
        await self.send(
            {
                "type_url": resp["type_url"],
                "version_info": resp["version_info"],
                "response_nonce": resp["nonce"],
            }
        )

    async def nack(self, resp: dict[str, Any], last_good: str = "") -> None:
        await self.send(
            {
                "type_url": resp["type_url"],
                "version_info": last_good,
                "response_nonce": resp["nonce"],
                "error_detail": {"code": 3, "message": "route 8080: bad regex"},
            }
        )

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


@pytest.fixture
async def cp() -> AsyncIterator[tuple[ControlPlane, int]]:
    plane = ControlPlane(istiod_id="istiod-test", debounce_after=0.05, debounce_max=0.3)
    port = await plane.start("127.0.0.1", 0)
    try:
        yield plane, port
    finally:
        await plane.close()


async def eventually(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def statuses(plane: ControlPlane) -> dict[str, dict[str, str]]:
    return {p["proxy"]: {k: v["status"] for k, v in p["types"].items()} for p in plane.syncz()}


async def test_subscribe_ack_gives_synced(cp: tuple[ControlPlane, int]) -> None:
    plane, port = cp
    plane.update(snapshot())
    await eventually(lambda: plane.ready)
    proxy = await FakeProxy.connect(port, FRONTEND)
    await proxy.subscribe(*TYPES)
    responses = [await proxy.recv() for _ in TYPES]
    assert [r["type_url"] for r in responses] == list(TYPES)
    clusters = {c["name"] for c in responses[0]["resources"]}
    assert "outbound|8080||productcatalog.production.svc.cluster.local" in clusters
    assert responses[0]["control_plane"] == {"identifier": "istiod-test", "version": "0.1.0"}
    assert len({r["nonce"] for r in responses}) == 4
    st = statuses(plane)[proxy.node_id]
    assert st == {k: "STALE (Never Acknowledged)" for k in ("cds", "eds", "lds", "rds")}
    for r in responses:
        await proxy.ack(r)
    await eventually(lambda: set(statuses(plane)[proxy.node_id].values()) == {"SYNCED"})
    (entry,) = plane.syncz()
    assert entry["types"]["cds"]["acked_version"] == responses[0]["version_info"]
    assert entry["istio_version"] == "1.30.3" and entry["istiod"] == "istiod-test"
    assert "SYNCED" in repr(plane.find(f"{FRONTEND['metadata']['name']}.production"))
    await proxy.close()
    await eventually(lambda: not plane.peers)


async def test_unsubscribed_types_are_not_sent(cp: tuple[ControlPlane, int]) -> None:
    plane, port = cp
    plane.update(snapshot())
    proxy = await FakeProxy.connect(port, FRONTEND)
    await proxy.subscribe(CLUSTER_TYPE)
    await proxy.ack(await proxy.recv())
    await eventually(lambda: statuses(plane).get(proxy.node_id, {}).get("cds") == "SYNCED")
    assert statuses(plane)[proxy.node_id]["lds"] == "NOT SENT"
    await proxy.close()


async def test_subscription_before_the_registry_is_ready_is_answered_by_the_first_push(
    cp: tuple[ControlPlane, int],
) -> None:
    plane, port = cp
    proxy = await FakeProxy.connect(port, FRONTEND)
    await proxy.subscribe(CLUSTER_TYPE, LISTENER_TYPE)
    await proxy.expect_nothing(0.2)
    plane.update(snapshot())
    got = [await proxy.recv(), await proxy.recv()]
    assert [r["type_url"] for r in got] == [CLUSTER_TYPE, LISTENER_TYPE]
    await proxy.close()


async def test_nack_keeps_the_proxy_stale_with_the_error(cp: tuple[ControlPlane, int]) -> None:
    plane, port = cp
    plane.update(snapshot())
    proxy = await FakeProxy.connect(port, FRONTEND)
    await proxy.subscribe(ROUTE_TYPE)
    first = await proxy.recv()
    await proxy.ack(first)
    await eventually(lambda: statuses(plane).get(proxy.node_id, {}).get("rds") == "SYNCED")
    vs = istio(
        "VirtualService",
        "pc",
        "production",
        {"hosts": ["productcatalog"], "http": [{"directResponse": {"status": 503}}]},
    )
    plane.update(snapshot(virtual_services=[vs]), {"VirtualService/production/pc"})
    second = await proxy.recv()
    assert second["version_info"] != first["version_info"]
    await proxy.nack(second, last_good=first["version_info"])
    await eventually(lambda: plane.syncz()[0]["types"]["rds"]["error"] != "")
    assert statuses(plane)[proxy.node_id]["rds"] == "STALE"
    (entry,) = plane.syncz()
    assert entry["types"]["rds"]["error"] == "route 8080: bad regex"
    assert entry["types"]["rds"]["acked_version"] == first["version_info"]
    assert 'pilot_total_xds_rejects{type="rds"} 1' in plane.metrics.render()
    # a late ACK of the superseded nonce is ignored
    await proxy.ack(first)
    await asyncio.sleep(0.1)
    assert statuses(plane)[proxy.node_id]["rds"] == "STALE"
    await proxy.close()


async def test_only_affected_proxies_are_pushed_and_unchanged_configs_are_skipped(
    cp: tuple[ControlPlane, int],
) -> None:
    plane, port = cp
    plane.update(snapshot())
    fe = await FakeProxy.connect(port, FRONTEND)
    rv = await FakeProxy.connect(port, REVIEWS_POD)
    for p in (fe, rv):
        await p.subscribe(*TYPES)
        for _ in TYPES:
            await p.ack(await p.recv())
    await eventually(
        lambda: all(set(s.values()) == {"SYNCED"} for s in statuses(plane).values()) and len(plane.peers) == 2
    )
    private = istio(
        "VirtualService",
        "pc",
        "production",
        {"hosts": ["productcatalog"], "exportTo": ["."], "http": [{"directResponse": {"status": 418}}]},
    )
    plane.update(snapshot(virtual_services=[private]), {"VirtualService/production/pc"})
    pushed = await fe.recv()
    assert pushed["type_url"] == ROUTE_TYPE  # only the changed type is sent
    await fe.expect_nothing(0.3)
    await rv.expect_nothing(0.1)
    # a change to an object the proxy depends on but that yields the same config: no push
    skipped_before = plane.metrics.skipped.values.get((), 0.0)
    plane.update(snapshot(virtual_services=[private]), {"VirtualService/production/pc"})
    await eventually(lambda: plane.metrics.skipped.values.get((), 0.0) > skipped_before)
    await fe.expect_nothing(0.2)
    await fe.close()
    await rv.close()


async def test_changes_are_debounced_into_one_push(cp: tuple[ControlPlane, int]) -> None:
    plane, port = cp
    plane.update(snapshot())
    proxy = await FakeProxy.connect(port, FRONTEND)
    await proxy.subscribe(ROUTE_TYPE)
    await proxy.ack(await proxy.recv())
    for status in range(400, 410):
        vs = istio(
            "VirtualService",
            "pc",
            "production",
            {"hosts": ["productcatalog"], "http": [{"directResponse": {"status": status}}]},
        )
        plane.update(snapshot(virtual_services=[vs]), {"VirtualService/production/pc"})
        await asyncio.sleep(0.01)
    resp = await proxy.recv()
    statuses_seen = {
        r["direct_response"]["status"]
        for rc in resp["resources"]
        for vh in rc["virtual_hosts"]
        for r in vh["routes"]
        if "direct_response" in r
    }
    assert statuses_seen == {409}
    await proxy.expect_nothing(0.4)
    await proxy.close()


async def test_reconnect_gets_the_full_config_again(cp: tuple[ControlPlane, int]) -> None:
    plane, port = cp
    plane.update(snapshot())
    first = await FakeProxy.connect(port, FRONTEND)
    await first.subscribe(CLUSTER_TYPE)
    old = await first.recv()
    await first.ack(old)
    await first.close()
    await eventually(lambda: not plane.peers)
    again = await FakeProxy.connect(port, FRONTEND)
    await again.send(
        {"type_url": CLUSTER_TYPE, "version_info": old["version_info"], "response_nonce": old["nonce"]}
    )
    resp = await again.recv()
    assert resp["resources"] == old["resources"] and resp["nonce"] != old["nonce"]
    await again.ack(resp)
    await eventually(lambda: statuses(plane).get(again.node_id, {}).get("cds") == "SYNCED")
    assert len(plane.syncz()) == 1
    await again.close()


async def test_a_malformed_stream_is_closed_without_harm(cp: tuple[ControlPlane, int]) -> None:
    plane, port = cp
    plane.update(snapshot())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b'{"type_url": "x"}\n')  # no node on the first request
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"not json\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    proxy = await FakeProxy.connect(port, FRONTEND)
    await proxy.subscribe(CLUSTER_TYPE)
    assert (await proxy.recv())["type_url"] == CLUSTER_TYPE
    await proxy.close()


async def test_debug_endpoints(cp: tuple[ControlPlane, int]) -> None:
    plane, port = cp
    runner, debug_port = await start_debug(plane, "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{debug_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/ready") as r:
                assert r.status == 503
            plane.update(snapshot())
            proxy = await FakeProxy.connect(port, FRONTEND)
            await proxy.subscribe(*TYPES)
            for _ in TYPES:
                await proxy.ack(await proxy.recv())
            await eventually(lambda: set(statuses(plane).get(proxy.node_id, {}).values()) == {"SYNCED"})
            async with http.get(f"{base}/ready") as r:
                assert r.status == 200
            async with http.get(f"{base}/debug/syncz") as r:
                (entry,) = await r.json()
                assert entry["proxy"] == proxy.node_id and entry["types"]["eds"]["status"] == "SYNCED"
            pod_id = f"{FRONTEND['metadata']['name']}.production"
            async with http.get(f"{base}/debug/config_dump", params={"proxyID": pod_id}) as r:
                dump = await r.json()
                clusters = dump["configs"][1]["dynamic_active_clusters"]
                assert any(c["cluster"]["name"] == "inbound|8080||" for c in clusters)
            async with http.get(f"{base}/debug/config_dump", params={"proxyID": "nope.default"}) as r:
                assert r.status == 404
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
                assert 'pilot_xds_pushes{type="cds"} 1' in text
                assert "pilot_proxy_convergence_time_count" in text
                assert 'pilot_xds{version="0.1.0"} 1' in text
            async with http.get(f"{base}/debug/registryz") as r:
                hosts = {s["hostname"] for s in await r.json()}
                assert "productcatalog.production.svc.cluster.local" in hosts
            await proxy.close()
    finally:
        await runner.cleanup()


def test_debouncer_waits_for_quiet_but_not_longer_than_max() -> None:
    d = Debouncer(quiet=0.1, max_delay=1.0)
    assert d.deadline() is None and d.take(0.0) is None
    d.add({"a"}, 0.0)
    assert d.take(0.05) is None
    d.add({"b"}, 0.05)
    assert d.deadline() == pytest.approx(0.15)
    assert d.take(0.16) == ({"a", "b"}, 0.0)
    assert not d.pending
    # a steady stream of changes (every 50 ms) still pushes once max_delay has passed
    d.add({"x"}, 10.0)
    pushed_at = None
    for step in range(1, 40):
        now = 10.0 + step * 0.05
        if d.take(now) is not None:
            pushed_at = now
            break
        d.add({"y"}, now)
    assert pushed_at == pytest.approx(11.0, abs=0.06)
    d.add({"z"}, 20.0)
    d.add(None, 20.01)
    assert d.take(20.2) == (None, 20.0)


@pytest.mark.parametrize(
    ("sent", "acked", "status"),
    [
        ("", "", "NOT SENT"),
        ("n1", "n1", "SYNCED"),
        ("n2", "n1", "STALE"),
        ("n1", "", "STALE (Never Acknowledged)"),
    ],
)
def test_sync_status_is_istioctls(sent: str, acked: str, status: str) -> None:
    assert sync_status(sent, acked) == status


def test_stream_messages_are_single_lines() -> None:
    line = stream.encode({"a": "x\ny"})
    assert line.count(b"\n") == 1 and json.loads(line) == {"a": "x\ny"}


def test_affected_proxies_by_dependency_and_visibility() -> None:
    from meshpilot.controlplane.registry import Registry
    from meshpilot.controlplane.translate import generate
    from meshpilot.controlplane.xds import ProxyConnection

    plane = ControlPlane()
    hidden = istio("VirtualService", "new", "production", {"hosts": ["x"], "exportTo": ["."]})
    public_se = istio(
        "ServiceEntry",
        "ext",
        "other",
        {"hosts": ["api.example.com"], "ports": [{"number": 80, "name": "http"}]},
    )
    sidecar = istio("Sidecar", "default", "other", {"egress": [{"hosts": ["./*"]}]})
    snap = snapshot(virtual_services=[hidden], service_entries=[public_se], sidecars=[sidecar])
    plane.update(snap)
    registry = Registry(snapshot())
    conns = {}
    for p in (FRONTEND, REVIEWS_POD):
        ident = proxy_from_pod(p)
        conn = ProxyConnection(ident.id, {"id": ident.id}, 0.0)
        conn.set_config(generate(registry, ident))
        conns[p["metadata"]["namespace"]] = conn
    fe, rv = conns["production"], conns["other"]
    assert plane.affected(fe, None) and plane.affected(rv, None)
    # a dependency: the pod itself, a service it sees, the mesh config
    assert plane.affected(fe, {f"Pod/production/{FRONTEND['metadata']['name']}"})
    # ... and, through endpoint metadata, every proxy that sees a service the pod backs
    assert plane.affected(rv, {f"Pod/production/{FRONTEND['metadata']['name']}"})
    assert plane.affected(rv, {"Endpoints/production/productcatalog"})
    assert plane.affected(rv, {"ConfigMap/istio-system/istio"})
    # a new object counts where it is visible
    assert plane.affected(fe, {"VirtualService/production/new"})
    assert not plane.affected(rv, {"VirtualService/production/new"})
    assert plane.affected(fe, {"ServiceEntry/other/ext"}) and plane.affected(rv, {"ServiceEntry/other/ext"})
    assert plane.affected(rv, {"Sidecar/other/default"}) and not plane.affected(fe, {"Sidecar/other/default"})
    assert plane.affected(fe, {"Sidecar/istio-system/default"})  # the root namespace's applies to all
    assert not plane.affected(fe, {"Pod/elsewhere/unrelated"})


async def test_config_problems_are_logged_once_and_counted(
    cp: tuple[ControlPlane, int], caplog: pytest.LogCaptureFixture
) -> None:
    plane, port = cp
    plane.update(snapshot())
    proxy = await FakeProxy.connect(port, FRONTEND)
    await proxy.subscribe(ROUTE_TYPE)
    await proxy.ack(await proxy.recv())
    broken = istio(
        "VirtualService",
        "pc",
        "production",
        {"hosts": ["productcatalog"], "http": [{"route": [{"destination": {}}]}]},
        valid=False,
    )
    for _ in range(2):
        plane.update(snapshot(virtual_services=[broken]), {"VirtualService/production/pc"})
        await eventually(lambda: plane.metrics.config_warnings.values.get((), 0.0) == 1.0)
        await asyncio.sleep(0.1)
    problems = [r for r in caplog.records if "config problem" in r.getMessage()]
    assert len(problems) == 1 and "destination.host is required" in problems[0].getMessage()
    plane.update(snapshot(), None)
    await eventually(lambda: plane.metrics.config_warnings.values.get((), 0.0) == 0.0)
    await proxy.close()


async def test_a_push_that_fails_does_not_end_the_push_loop(
    cp: tuple[ControlPlane, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The push loop is one long-lived task: an unexpected error while building a push (here the
    registry) costs that push only; the next change is pushed as usual."""
    import meshpilot.controlplane.server as server

    plane, port = cp
    plane.update(snapshot())
    proxy = await FakeProxy.connect(port, FRONTEND)
    await proxy.subscribe(ROUTE_TYPE)
    await proxy.ack(await proxy.recv())
    real = server.Registry
    calls = []

    def flaky(snap: Any) -> Any:
        calls.append(snap)
        if len(calls) == 1:
            raise RuntimeError("registry bug")
        return real(snap)

    monkeypatch.setattr(server, "Registry", flaky)

    def vs(status: int) -> dict[str, Any]:
        spec = {"hosts": ["productcatalog"], "http": [{"directResponse": {"status": status}}]}
        return istio("VirtualService", "pc", "production", spec)

    plane.update(snapshot(virtual_services=[vs(418)]), {"VirtualService/production/pc"})
    await eventually(lambda: len(calls) == 1)
    await proxy.expect_nothing(0.2)
    plane.update(snapshot(virtual_services=[vs(419)]), {"VirtualService/production/pc"})
    resp = await proxy.recv()
    routes = [r for rc in resp["resources"] for vh in rc["virtual_hosts"] for r in vh["routes"]]
    assert {r["direct_response"]["status"] for r in routes if "direct_response" in r} == {419}
    await proxy.close()
