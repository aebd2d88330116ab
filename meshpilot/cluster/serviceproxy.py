"""The userspace service proxy: ClusterIP:port -> a ready endpoint (kube-proxy's userspace mode).

One TCP listener per Service port on the Service's ClusterIP. Each accepted connection goes to
the next ready endpoint (round-robin); an endpoint that refuses or does not answer within a
second is skipped and the next one tried, so a pod that just died costs a retry, not a failed
request. The outgoing socket is bound to the ClusterIP itself: the pod sees the Service as the
peer (as it would see the node with kube-proxy), and loopback addresses of other clusters or of
pods are never used as a source.

Endpoints changes replace the backend lists; connections already established keep their
backend until they end.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from meshpilot import tasks
from meshpilot.cluster.informer import watch_forever
from meshpilot.cluster.objects import ENDPOINTS, SERVICES, Obj, name_of, namespace_of
from meshpilot.cluster.probes import IP_BIND_ADDRESS_NO_PORT
from meshpilot.cluster.state import ClusterInfo
from meshpilot.store import Store

log = logging.getLogger("meshpilot.cluster.serviceproxy")

CONNECT_TIMEOUT = 1.0
FAILED_FOR = 2.0  # seconds an endpoint that refused is tried only after the others

PortKey = tuple[str, str, str]  # (namespace, service, port name)


@dataclass
class _Listener:
    key: PortKey
    server: asyncio.Server
    connections: int = 0


class ServiceProxy:
    def __init__(self, store: Store, info: ClusterInfo) -> None:
        self.store = store
        self.info = info
        self.backends: dict[PortKey, list[tuple[str, int]]] = {}
        self._listeners: dict[tuple[str, int], _Listener] = {}
        self._counters: dict[PortKey, itertools.count[int]] = {}
        self._watches: list[asyncio.Task[None]] = []
        self._dirty = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._failed: dict[tuple[str, int], float] = {}
        self.active = 0

    def __repr__(self) -> str:
        backends = sum(len(b) for b in self.backends.values())
        return f"<ServiceProxy {self.info.name} [{len(self._listeners)} listeners, {backends} backends, {self.active} connections]>"

    def serves(self, ip: str) -> bool:
        """Whether new connections may still be sent to ``ip``."""
        return any(ip == host for backends in self.backends.values() for host, _ in backends)

    async def start(self) -> None:
        await self.sync()
        for key in (SERVICES, ENDPOINTS):
            self._watches.append(
                tasks.spawn(
                    watch_forever(self.store, key, self._on_event), name=f"serviceproxy: watch {key[1]}"
                )
            )
        self._loop_task = tasks.spawn(self._run(), name="serviceproxy: sync")

    def _on_event(self, _type: str, _obj: Obj) -> None:
        self._dirty.set()

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.sync()
            except Exception:
                log.exception("service proxy sync failed")
                await asyncio.sleep(0.5)

    async def sync(self) -> None:
        services, _ = self.store.list(SERVICES)
        endpoints, _ = self.store.list(ENDPOINTS)
        by_name = {(namespace_of(e), name_of(e)): e for e in endpoints}
        wanted: dict[tuple[str, int], PortKey] = {}
        backends: dict[PortKey, list[tuple[str, int]]] = {}
        for svc in services:
            spec = svc.get("spec", {})
            ip = spec.get("clusterIP")
            if not ip or ip == "None" or spec.get("type") == "ExternalName":
                continue
            ns, name = namespace_of(svc), name_of(svc)
            ep = by_name.get((ns, name)) or {}
            for port in spec.get("ports") or []:
                if str(port.get("protocol") or "TCP") != "TCP":
                    continue
                pname = str(port.get("name") or "")
                key = (ns, name, pname)
                wanted[(ip, int(port["port"]))] = key
                targets: list[tuple[str, int]] = []
                for subset in ep.get("subsets") or []:
                    sports = subset.get("ports") or []
                    match = next((p for p in sports if str(p.get("name") or "") == pname), None)
                    if match is None and len(sports) == 1 and len(spec.get("ports") or []) == 1:
                        match = sports[0]
                    if match is None:
                        continue
                    for address in subset.get("addresses") or []:
                        targets.append((str(address["ip"]), int(match["port"])))
                backends[key] = targets
        self.backends = backends
        moment = time.monotonic()
        self._failed = {k: until for k, until in self._failed.items() if until > moment}
        for addr in list(self._listeners):
            listener = self._listeners[addr]
            if wanted.get(addr) != listener.key:
                listener.server.close()  # stops accepting; established connections carry on
                del self._listeners[addr]
        for addr, key in wanted.items():
            if addr in self._listeners:
                continue
            try:
                server = await asyncio.get_running_loop().create_server(
                    self._factory(key, addr[0]), host=addr[0], port=addr[1], reuse_address=True
                )
            except OSError as exc:
                log.warning(
                    "service %s/%s: cannot listen on %s:%d: %s", key[0], key[1], addr[0], addr[1], exc
                )
                continue
            self._listeners[addr] = _Listener(key, server)

    async def connect(self, key: PortKey, source: str) -> socket.socket | None:
        """A socket connected to the next endpoint that accepts, bound to ``source``; None if none does."""
        backends = list(self.backends.get(key) or [])
        if not backends:
            return None
        counter = self._counters.setdefault(key, itertools.count())
        moment = time.monotonic()
        # endpoints that failed recently are tried last, so one dead pod does not cost every
        # connection a refused attempt while the Endpoints catch up
        order = sorted(range(len(backends)), key=lambda i: self._failed.get(backends[i], 0.0) > moment)
        tried: set[int] = set()
        for _ in range(len(backends)):
            start = next(counter) % len(backends)
            index = next(i for i in order[start:] + order[:start] if i not in tried)
            tried.add(index)
            host, port = backends[index]
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                sock.bind((source, 0))
                await asyncio.wait_for(
                    asyncio.get_running_loop().sock_connect(sock, (host, port)), CONNECT_TIMEOUT
                )
                self._failed.pop((host, port), None)
                return sock
            except (OSError, TimeoutError) as exc:
                sock.close()
                self._failed[(host, port)] = time.monotonic() + FAILED_FOR
                log.debug("service %s/%s: endpoint %s:%d failed: %s", key[0], key[1], host, port, exc)
        return None

    def _factory(self, key: PortKey, source: str) -> Callable[[], asyncio.Protocol]:
        def make() -> asyncio.Protocol:
            return _Downstream(self, key, source)

        return make

    async def stop(self) -> None:
        for task in self._watches:
            task.cancel()
        if self._loop_task is not None:
            self._loop_task.cancel()
        for task in [*self._watches, *([self._loop_task] if self._loop_task else [])]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for listener in self._listeners.values():
            listener.server.close()
        for listener in self._listeners.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.server.wait_closed(), 1.0)
        self._listeners.clear()


class _Side(asyncio.Protocol):
    """One end of a proxied connection; bytes received go to ``peer``, with flow control both ways:
    when a side's outgoing buffer fills, the other side stops reading until it drains."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.eof = False
        self.closed = False
        self.pending: list[bytes] = []  # bytes that arrived before the other side existed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass: no isinstance check here
        self.transport = cast(asyncio.Transport, transport)

    def link(self, peer: _Side) -> None:
        """Connect the two sides and hand over whatever arrived before."""
        self.peer = peer
        if self.pending and peer.transport is not None:
            peer.transport.writelines(self.pending)
        self.pending = []
        if self.eof:
            self.eof_received()

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.pending.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None:
            return True
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()
        if peer is not None and peer.eof:
            self.close()
            peer.close()
            return False
        return True  # half-closed: the other direction may still carry the response

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.peer is not None:
            self.peer.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.closed:
            self.peer.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


class _Downstream(_Side):
    """The client's connection to ClusterIP:port: reading waits until an endpoint accepted."""

    def __init__(self, proxy: ServiceProxy, key: PortKey, source: str) -> None:
        super().__init__()
        self.proxy = proxy
        self.key = key
        self.source = source

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        self.proxy.active += 1
        tasks.spawn(self._link(), name=f"serviceproxy: connect {self.key[0]}/{self.key[1]}")

    async def _link(self) -> None:
        sock = await self.proxy.connect(self.key, self.source)
        if sock is None or self.closed:
            if sock is not None:
                sock.close()
            self.close()
            return
        upstream = _Side()
        try:
            await asyncio.get_running_loop().create_connection(lambda: upstream, sock=sock)
        except OSError:
            sock.close()
            self.close()
            return
        upstream.link(self)
        self.link(upstream)
        if self.closed:
            upstream.close()
            return
        assert self.transport is not None
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.active -= 1
        super().connection_lost(exc)
