"""The userspace service proxy on real sockets: round-robin over ready endpoints, skipping
endpoints that refuse, following Endpoints changes without cutting established connections, and
connecting from the ClusterIP."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

from _localcluster import ENDPOINTS, SERVICES, wait_for

from meshpilot.cluster.serviceproxy import ServiceProxy
from meshpilot.cluster.state import ClusterInfo
from meshpilot.store import Store


async def echo_server(host: str, tag: bytes, peers: list[str]) -> asyncio.Server:
    """Answers each line with ``tag:line``; records peer addresses."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[0])
        try:
            while line := await reader.readline():
                writer.write(tag + b":" + line)
                await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, 0)


@contextlib.asynccontextmanager
async def proxy_env(tmp_path: Path) -> AsyncIterator[tuple[Store, ServiceProxy, int]]:
    index = random.randint(200, 249)
    info = ClusterInfo(name=f"sp{index}", index=index, state_dir=tmp_path, token="t", mesh=False)
    store = Store(None)
    proxy = ServiceProxy(store, info)
    await proxy.start()
    try:
        yield store, proxy, index
    finally:
        await proxy.stop()
        store.close()


def endpoints(name: str, backends: list[tuple[str, int]], not_ready: list[tuple[str, int]] = ()) -> dict:  # type: ignore[assignment]
    subsets = []
    for host, port in backends:
        subsets.append(
            {"addresses": [{"ip": host}], "ports": [{"name": "tcp", "port": port, "protocol": "TCP"}]}
        )
    for host, port in not_ready:
        subsets.append(
            {"notReadyAddresses": [{"ip": host}], "ports": [{"name": "tcp", "port": port, "protocol": "TCP"}]}
        )
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": "default"},
        "subsets": subsets,
    }


async def ask(ip: str, port: int, line: bytes = b"hi\n") -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 3)
    try:
        writer.write(line)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 3)
    finally:
        writer.close()


async def test_round_robin_skips_refusing_and_not_ready_endpoints(tmp_path: Path) -> None:
    async with proxy_env(tmp_path) as (store, proxy, n):
        peers: list[str] = []
        a = await echo_server(f"127.{n}.1.10", b"a", peers)
        b = await echo_server(f"127.{n}.1.11", b"b", peers)
        c = await echo_server(f"127.{n}.1.12", b"c", peers)
        port_a = a.sockets[0].getsockname()[1]
        port_b = b.sockets[0].getsockname()[1]
        port_c = c.sockets[0].getsockname()[1]
        dead = (f"127.{n}.1.13", 1)  # nothing listens there: connection refused
        cluster_ip = f"127.{n}.128.7"
        store.create(
            SERVICES,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "echo", "namespace": "default"},
                "spec": {
                    "clusterIP": cluster_ip,
                    "selector": {"app": "echo"},
                    "ports": [{"name": "tcp", "port": 7000, "targetPort": 7000}],
                },
            },
        )
        store.create(
            ENDPOINTS,
            endpoints(
                "echo",
                [(f"127.{n}.1.10", port_a), dead, (f"127.{n}.1.11", port_b)],
                not_ready=[(f"127.{n}.1.12", port_c)],
            ),
        )
        await wait_for(lambda: len(proxy.backends.get(("default", "echo", "tcp"), [])) == 3, what="backends")
        answers = [await ask(cluster_ip, 7000) for _ in range(12)]
        assert set(answers) == {b"a:hi\n", b"b:hi\n"}, answers
        assert answers.count(b"a:hi\n") == answers.count(b"b:hi\n") == 6, "round-robin, the dead one skipped"
        assert set(peers) == {cluster_ip}, "the proxy connects from the Service's ClusterIP"
        assert "echo" in repr(proxy) or "listeners" in repr(proxy)
        for server in (a, b, c):
            server.close()


async def test_endpoint_changes_keep_established_connections(tmp_path: Path) -> None:
    async with proxy_env(tmp_path) as (store, proxy, n):
        peers: list[str] = []
        a = await echo_server(f"127.{n}.1.20", b"a", peers)
        b = await echo_server(f"127.{n}.1.21", b"b", peers)
        cluster_ip = f"127.{n}.128.8"
        store.create(
            SERVICES,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "echo", "namespace": "default"},
                "spec": {
                    "clusterIP": cluster_ip,
                    "selector": {"app": "echo"},
                    "ports": [{"name": "tcp", "port": 7001, "targetPort": 7001}],
                },
            },
        )
        store.create(ENDPOINTS, endpoints("echo", [(f"127.{n}.1.20", a.sockets[0].getsockname()[1])]))
        await wait_for(lambda: proxy.backends.get(("default", "echo", "tcp")), what="backends")
        reader, writer = await asyncio.open_connection(cluster_ip, 7001)
        writer.write(b"one\n")
        assert await asyncio.wait_for(reader.readline(), 3) == b"a:one\n"
        # the endpoint moves to b: new connections go to b, the open one stays on a
        ep = store.get(ENDPOINTS, "default", "echo")
        ep["subsets"] = endpoints("echo", [(f"127.{n}.1.21", b.sockets[0].getsockname()[1])])["subsets"]
        store.update(ENDPOINTS, ep)
        await wait_for(lambda: not proxy.serves(f"127.{n}.1.20"), what="a removed")
        assert await ask(cluster_ip, 7001) == b"b:hi\n"
        writer.write(b"two\n")
        assert await asyncio.wait_for(reader.readline(), 3) == b"a:two\n"
        writer.close()
        # no endpoints at all: the connection is closed at once, not left hanging
        ep = store.get(ENDPOINTS, "default", "echo")
        ep["subsets"] = []
        store.update(ENDPOINTS, ep)
        await wait_for(lambda: not proxy.backends.get(("default", "echo", "tcp")), what="no backends")
        r2, w2 = await asyncio.open_connection(cluster_ip, 7001)
        assert await asyncio.wait_for(r2.read(), 3) == b""
        w2.close()
        # the Service goes away: its listener closes
        store.delete(SERVICES, "default", "echo")
        await wait_for(lambda: ("default", "echo", "tcp") not in proxy.backends, what="service gone")

        async def refused() -> bool:
            try:
                _, w = await asyncio.open_connection(cluster_ip, 7001)
            except OSError:
                return True
            w.close()
            return False

        deadline = asyncio.get_running_loop().time() + 5
        while not await refused():
            assert asyncio.get_running_loop().time() < deadline, "listener still open"
            await asyncio.sleep(0.05)
        a.close()
        b.close()


async def test_large_transfers_and_half_close_pass_through(tmp_path: Path) -> None:
    """20 MB each way, and a server that answers only after the client half-closed (as a
    request/response protocol with no length would)."""
    async with proxy_env(tmp_path) as (store, proxy, n):
        received = bytearray()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while chunk := await reader.read(1 << 16):
                received.extend(chunk)
            writer.write(b"x" * (20 << 20))  # answer after the client's EOF
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, f"127.{n}.1.30", 0)
        cluster_ip = f"127.{n}.128.9"
        store.create(
            SERVICES,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "bulk", "namespace": "default"},
                "spec": {
                    "clusterIP": cluster_ip,
                    "selector": {"app": "bulk"},
                    "ports": [{"name": "tcp", "port": 7002}],
                },
            },
        )
        store.create(ENDPOINTS, endpoints("bulk", [(f"127.{n}.1.30", server.sockets[0].getsockname()[1])]))
        await wait_for(lambda: proxy.backends.get(("default", "bulk", "tcp")), what="backends")
        reader, writer = await asyncio.open_connection(cluster_ip, 7002)
        payload = bytes(range(256)) * (80 << 10)  # 20 MiB
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        got = 0
        while chunk := await asyncio.wait_for(reader.read(1 << 16), 10):
            got += len(chunk)
        writer.close()
        assert bytes(received) == payload
        assert got == 20 << 20
        await wait_for(lambda: proxy.active == 0, what="connection accounted as closed")
        server.close()
