"""The proxy's side of the xDS stream: subscribe, validate, apply, ACK or NACK, reconnect.

State of the world per type, as Envoy's SotW protocol: every response carries all resources of its
type. A response is applied only if the whole resulting configuration compiles and binds; else
it is NACKed with the error and the last good configuration keeps serving. When the control plane
goes away the proxy keeps its configuration and reconnects with exponential back-off; on the new
stream it reports the versions it holds, so the control plane can tell what it is running.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from meshpilot.proxy.router import ConfigError
from meshpilot.proxy.server import Proxy
from meshpilot.xds import stream
from meshpilot.xds.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SHORT_NAMES,
    DiscoveryRequest,
    DiscoveryResponse,
    Node,
)

log = logging.getLogger("meshpilot.proxy.xds")

SUBSCRIBED = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)


class XdsClient:
    def __init__(
        self,
        proxy: Proxy,
        host: str,
        port: int,
        initial: dict[str, list[Any]] | None = None,
        backoff: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        self.proxy = proxy
        self.host, self.port = host, port
        self.accepted: dict[str, list[Any]] = dict(initial or {})
        self.versions: dict[str, str] = {}
        self.nonces: dict[str, str] = {}
        self.names: dict[str, list[str]] = {}
        self.backoff = backoff
        self.connected = False
        self.writer: asyncio.StreamWriter | None = None
        self.control_plane: dict[str, str] = {}
        self.received: set[str] = set()

    def node(self) -> Node:
        ident = self.proxy.identity
        return {"id": ident.node_id, "cluster": ident.cluster, "metadata": ident.metadata}

    async def run(self) -> None:
        delay = self.backoff[0]
        while not self.proxy.stopped.is_set():
            try:
                await self._session()
                delay = self.backoff[0]
            # EOFError: the control plane closed the stream; ValueError: a line that is not JSON or
            # longer than the limit (stream.MessageTooLarge). Either way: reconnect, keep serving.
            except (OSError, EOFError, ValueError) as e:
                log.warning(
                    "xDS stream to %s:%d: %s; keeping the last configuration", self.host, self.port, e
                )
            self.connected = False
            self._status_all("DISCONNECTED")
            if self.proxy.stopped.is_set():
                break
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.backoff[1])

    def _status_all(self, state: str) -> None:
        for t in SUBSCRIBED:
            st = self.proxy.xds_status.setdefault(t, {})
            st["stream"] = state

    async def _session(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=stream.MAX_MESSAGE_BYTES)
        self.writer = writer
        self.connected = True
        self._status_all("CONNECTED")
        try:
            first = True
            for t in SUBSCRIBED:
                req: DiscoveryRequest = {"type_url": t}
                if first:
                    req["node"] = self.node()
                    first = False
                if t in self.versions:
                    req["version_info"] = self.versions[t]
                if t in self.names:
                    req["resource_names"] = self.names[t]
                writer.write(stream.encode(req))
            await writer.drain()
            while True:
                await self.handle(await stream.read_message(reader))
        finally:
            self.writer = None
            writer.close()

    async def handle(self, resp: DiscoveryResponse) -> None:
        t = resp.get("type_url") if isinstance(resp, dict) else None
        nonce = str(resp.get("nonce", "")) if isinstance(resp, dict) else ""
        if t not in SUBSCRIBED:
            await self._send(
                {
                    "type_url": str(t),
                    "response_nonce": nonce,
                    "error_detail": {"code": 12, "message": f"type {t!r} is not supported by this proxy"},
                }
            )
            return
        assert isinstance(resp, dict)
        self.control_plane = dict(resp.get("control_plane") or {})
        version = str(resp.get("version_info", ""))
        resources = resp.get("resources")
        try:
            if not isinstance(resources, list):
                raise ConfigError("resources: expected a list")
            candidate = dict(self.accepted)
            candidate[t] = resources
            versions = dict(self.versions)
            versions[t] = version
            await self.proxy.apply(candidate, versions)
        except ConfigError as e:
            log.error("rejected %s version %s: %s", SHORT_NAMES[t], version, e)
            self.proxy.xds_status.setdefault(t, {}).update(
                {"state": "NACKED", "rejected_version": version, "error": str(e), "nonce": nonce}
            )
            nack: DiscoveryRequest = {
                "type_url": t,
                "response_nonce": nonce,
                "version_info": self.versions.get(t, ""),
                "error_detail": {"code": 3, "message": str(e)},
            }
            if t in self.names:
                nack["resource_names"] = self.names[t]
            await self._send(nack)
            return
        self.accepted[t] = resources
        self.versions[t] = version
        self.nonces[t] = nonce
        self.received.add(t)
        self.proxy.xds_status.setdefault(t, {}).update(
            {"state": "ACKED", "version": version, "nonce": nonce, "error": ""}
        )
        ack: DiscoveryRequest = {"type_url": t, "version_info": version, "response_nonce": nonce}
        if t in self.names:
            ack["resource_names"] = self.names[t]
        await self._send(ack)
        await self._resubscribe(t)
        if not self.proxy.ready and all(x in self.received for x in SUBSCRIBED):
            self.proxy.ready = True
            log.info("first full configuration applied; ready")

    async def _resubscribe(self, accepted_type: str) -> None:
        """After CDS/LDS changes, ask for the EDS/RDS resources they name (as Envoy does)."""
        if accepted_type == CLUSTER_TYPE:
            dep = ENDPOINT_TYPE
            names = sorted(c["name"] for c in self.accepted.get(CLUSTER_TYPE, []) if c.get("type") == "EDS")
        elif accepted_type == LISTENER_TYPE:
            dep = ROUTE_TYPE
            listeners = self.accepted.get(LISTENER_TYPE, [])
            if any(
                li.get("traffic_direction") != "INBOUND" and not li.get("route_config_name")
                for li in listeners
            ):
                return  # per-port route tables (virtualOutbound): the subscription stays a wildcard
            names = sorted(
                {
                    li["route_config_name"]
                    for li in self.accepted.get(LISTENER_TYPE, [])
                    if li.get("route_config_name")
                }
            )
        else:
            return
        if self.names.get(dep) == names:
            return
        self.names[dep] = names
        req: DiscoveryRequest = {"type_url": dep, "resource_names": names}
        if dep in self.versions:
            req["version_info"] = self.versions[dep]
            req["response_nonce"] = self.nonces.get(dep, "")
        await self._send(req)

    async def _send(self, req: DiscoveryRequest) -> None:
        w = self.writer
        if w is None:
            return
        w.write(stream.encode(req))
        await w.drain()


__all__ = ["SUBSCRIBED", "XdsClient"]
