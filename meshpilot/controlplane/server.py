"""istiod's serving side: the xDS stream on 15010 and the push loop.

``ControlPlane`` owns the latest registry snapshot and every proxy connection. The watcher calls
``update(snapshot, changed_keys)``; the push loop debounces, then regenerates configuration only
for the proxies a change can affect (their recorded dependencies, or objects newly visible to
them) and sends only the resource types whose content changed.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from meshpilot.controlplane._util import annotations_of, key_of, namespace_of, spec_of
from meshpilot.controlplane.debounce import Debouncer
from meshpilot.controlplane.metrics import PilotMetrics
from meshpilot.controlplane.registry import (
    EXPORT_TO_ANNOTATION,
    ProxyIdentity,
    Registry,
    Snapshot,
    exported_to,
    parse_app_ports,
    parse_export_to,
    parse_node_id,
    proxy_from_pod,
)
from meshpilot.controlplane.translate import ProxyConfig, generate
from meshpilot.controlplane.xds import ProxyConnection
from meshpilot.tasks import spawn
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

log = logging.getLogger("meshpilot.controlplane")

MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_WRITE_BUFFER = 64 * 1024 * 1024  # a proxy this far behind is disconnected; it will reconnect


@dataclass
class _Peer:
    conn: ProxyConnection
    writer: asyncio.StreamWriter


def identity_from_node(node: Node, registry: Registry | None) -> ProxyIdentity:
    """The proxy's identity: its pod as the registry knows it, else what its node metadata says."""
    ip, pod_name, namespace = parse_node_id(node["id"])
    cluster_id = node.get("cluster") or (registry.cluster_id if registry else "Kubernetes")
    if registry is not None:
        pod = registry.pod(namespace, pod_name)
        if pod is not None:
            proxy = proxy_from_pod(pod, registry.cluster_id)
            if proxy.ip:
                return proxy
    md = node.get("metadata") or {}
    labels = md.get("LABELS") if isinstance(md.get("LABELS"), Mapping) else {}
    assert isinstance(labels, Mapping)
    return ProxyIdentity(
        id=node["id"],
        pod=pod_name,
        namespace=namespace,
        ip=ip,
        labels={str(k): str(v) for k, v in labels.items()},
        service_account=str(md.get("SERVICE_ACCOUNT") or "default"),
        inbound_ports=tuple(
            (outer, inner, "") for outer, inner in sorted(parse_app_ports(md.get("APP_PORTS")).items())
        ),
        cluster_id=str(cluster_id),
    )


class ControlPlane:
    """The registry, the proxies connected to this istiod, and the push loop between them."""

    def __init__(
        self,
        *,
        istiod_id: str = "istiod",
        version: str = "0.1.0",
        revision: str = "default",
        debounce_after: float = 0.1,
        debounce_max: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.istiod_id = istiod_id
        self.version = version
        self.revision = revision
        self.clock = clock
        self.metrics = PilotMetrics()
        self.debouncer = Debouncer(debounce_after, debounce_max)
        self._snapshot: Snapshot | None = None
        self._snapshot_source: Callable[[], Snapshot] | None = None
        self.registry: Registry | None = None
        self.push_version = ""
        self.peers: dict[str, _Peer] = {}
        self._objects: dict[str, Mapping[str, Any]] = {}
        self._objects_of: Snapshot | None = None  # the snapshot ``_objects`` indexes
        self._wake = asyncio.Event()
        self._push_counter = itertools.count(1)
        self._conn_counter = itertools.count(1)
        self._servers: list[asyncio.Server] = []
        self._pusher: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"<ControlPlane {self.istiod_id} [proxies: {len(self.peers)} | version: {self.push_version or '-'}]>"

    @property
    def control_plane(self) -> dict[str, str]:
        return {"identifier": self.istiod_id, "version": self.version}

    @property
    def ready(self) -> bool:
        return self.registry is not None

    # --- input ------------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot | None:
        """The latest view of the cluster, built from a lazy source on first read after an update."""
        if self._snapshot_source is not None:
            self._snapshot, self._snapshot_source = self._snapshot_source(), None
        return self._snapshot

    def update(self, snapshot: Snapshot | Callable[[], Snapshot], changed: set[str] | None = None) -> None:
        """A new view of the cluster; ``changed`` are ``Kind/ns/name`` keys (None = everything).

        ``snapshot`` may be a function that builds one: the watcher passes its ``snapshot`` method,
        so a burst of watch events the debouncer folds into one push copies the cache once, when
        the push reads it, instead of once per event.
        """
        if isinstance(snapshot, Snapshot):
            self._snapshot, self._snapshot_source = snapshot, None
        else:
            self._snapshot_source = snapshot
        self.metrics.push_triggers.inc("full" if changed is None else "incremental")
        self.debouncer.add(changed, self.clock())
        self._wake.set()

    # --- scoping ----------------------------------------------------------------------------

    def _config_objects(self) -> Mapping[str, Mapping[str, Any]]:
        """Services and Istio config by ``Kind/ns/name``, indexed once per snapshot a push scopes
        against rather than on every watch event (most of which a debounced push coalesces)."""
        snapshot = self.snapshot
        if snapshot is not self._objects_of:
            objects: dict[str, Mapping[str, Any]] = {}
            if snapshot is not None:
                for kind, items in (
                    ("Service", snapshot.services),
                    ("ServiceEntry", snapshot.service_entries),
                    ("VirtualService", snapshot.virtual_services),
                    ("DestinationRule", snapshot.destination_rules),
                    ("Sidecar", snapshot.sidecars),
                ):
                    for obj in items:
                        objects[key_of(kind, obj)] = obj
            self._objects, self._objects_of = objects, snapshot
        return self._objects

    def affected(self, peer: ProxyConnection, keys: set[str] | None) -> bool:
        """Whether a change to ``keys`` can alter this proxy's configuration."""
        if keys is None or peer.config is None:
            return True
        deps = peer.config.dependencies
        try:
            _, _, namespace = parse_node_id(peer.proxy_id)
        except ValueError:
            return True
        root = self.snapshot.mesh.root_namespace if self.snapshot else "istio-system"
        objects = self._config_objects()
        for key in keys:
            if key in deps:
                return True
            kind, _, rest = key.partition("/")
            obj_ns = rest.partition("/")[0]
            if kind in ("WorkloadEntry", "Namespace"):
                return True
            if kind == "Sidecar" and obj_ns in (namespace, root):
                return True
            obj = objects.get(key)
            if obj is None:
                continue
            if kind == "Service":
                export = parse_export_to(annotations_of(obj).get(EXPORT_TO_ANNOTATION))
            else:
                export = parse_export_to(spec_of(obj).get("exportTo"))
            if kind in ("Service", "ServiceEntry", "VirtualService", "DestinationRule") and exported_to(
                export, obj_ns, namespace
            ):
                return True
        # a pod joining or leaving a ServiceEntry's workloadSelector changes that entry's endpoints
        pods = [k for k in keys if k.startswith("Pod/")]
        if pods and self.snapshot is not None:
            for se in self.snapshot.service_entries:
                if key_of("ServiceEntry", se) in deps and spec_of(se).get("workloadSelector"):
                    if any(k.split("/")[1] == namespace_of(se) for k in pods):
                        return True
        return False

    # --- pushing ----------------------------------------------------------------------------

    def _generate(self, conn: ProxyConnection) -> ProxyConfig:
        assert self.registry is not None
        return generate(self.registry, identity_from_node(conn.node, self.registry))

    def _send(self, peer: _Peer, responses: list[DiscoveryResponse]) -> None:
        for r in responses:
            peer.writer.write(stream.encode(r))
            self.metrics.pushes.inc(SHORT_NAMES.get(r["type_url"], "other").lower())
        transport = peer.writer.transport
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("proxy %s is not reading its stream; disconnecting it", peer.conn.proxy_id)
            transport.abort()

    def push(self, keys: set[str] | None, started: float | None = None) -> int:
        """Regenerate and send for the affected proxies now; how many proxies got a push."""
        return sum(self._push_steps(keys, started))

    def _push_steps(self, keys: set[str] | None, started: float | None) -> Iterator[int]:
        """One step per affected proxy (1 if it was sent something), so the loop can yield between."""
        if self.snapshot is None:
            return
        self.registry = Registry(self.snapshot)
        self.metrics.services.set(float(len(self.registry.services)))
        self.metrics.virt_services.set(float(len(self.snapshot.virtual_services)))
        self.push_version = (
            f"{datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}/{next(self._push_counter)}"
        )
        warnings: set[str] = set(self.registry.warnings)
        for conn_id, peer in list(self.peers.items()):
            if conn_id not in self.peers or not self.affected(peer.conn, keys):
                continue  # gone while the push was under way, or untouched by the change
            try:
                config = self._generate(peer.conn)
            except Exception:  # one proxy's bad input must not stop the others' pushes
                log.exception("generating config for %s failed", peer.conn.proxy_id)
                continue
            warnings.update(config.warnings)
            now = self.clock()
            changed = peer.conn.set_config(config)
            responses = peer.conn.push(changed, self.push_version, now, self.control_plane)
            if not responses:
                self.metrics.skipped.inc()
                yield 0
                continue
            self._send(peer, responses)
            if started is not None:
                self.metrics.convergence.observe(max(0.0, now - started))
            yield 1
        self._report_warnings(warnings, full=keys is None)

    def _report_warnings(self, warnings: set[str], *, full: bool) -> None:
        """Log each problem with the config once, when it first appears; export the count."""
        for w in sorted(warnings - self._warned):
            log.warning("config problem: %s", w)
        # a scoped push only sees some proxies' problems; forget old ones only after a full one
        self._warned = warnings if full else self._warned | warnings
        self.metrics.config_warnings.set(float(len(self._warned)))

    async def _push_loop(self) -> None:
        while True:
            deadline = self.debouncer.deadline()
            if deadline is None:
                await self._wake.wait()
                self._wake.clear()
                continue
            delay = deadline - self.clock()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except TimeoutError:
                    pass
                self._wake.clear()
                continue
            taken = self.debouncer.take(self.clock())
            if taken is not None:
                keys, started = taken
                try:
                    for _ in self._push_steps(keys, started):
                        await asyncio.sleep(0)  # let ACKs and debug requests in between proxies
                except Exception:  # a bug in one push must not end every later push with this task
                    log.exception("push %s failed; keeping the last registry", self.push_version)

    # --- the stream -------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer: _Peer | None = None
        conn_id = ""
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            while True:
                try:
                    req = await stream.read_message(reader)
                except stream.MessageTooLarge:
                    log.warning("xDS request too large; closing the stream")
                    return
                except EOFError:
                    return
                if not isinstance(req, dict):
                    raise ValueError("DiscoveryRequest must be a JSON object")
                if peer is None:
                    node = req.get("node")
                    if not isinstance(node, dict) or not isinstance(node.get("id"), str):
                        raise ValueError("the first DiscoveryRequest must carry node.id")
                    parse_node_id(node["id"])
                    conn_id = f"{node['id']}-{next(self._conn_counter)}"
                    peer = _Peer(ProxyConnection(conn_id, node, self.clock()), writer)  # type: ignore[arg-type]
                    self.peers[conn_id] = peer
                    self._update_gauge()
                    log.info("proxy connected: %s", node["id"])
                conn = peer.conn
                if self.registry is not None and conn.config is None:
                    conn.set_config(self._generate(conn))
                responses = conn.on_request(
                    cast(DiscoveryRequest, req),
                    self.push_version,
                    self.clock(),
                    self.control_plane,
                    ready=conn.config is not None,
                )
                for event in conn.events:
                    short = SHORT_NAMES.get(event.type_url, "other").lower()
                    if event.kind == "nack":
                        self.metrics.rejects.inc(short)
                        log.warning(
                            "proxy %s rejected %s: %s", conn.proxy_id, short, conn.types[event.type_url].error
                        )
                    else:
                        self.metrics.ack_time.observe(event.seconds)
                conn.events.clear()
                if responses:
                    self._send(peer, responses)
                    await writer.drain()
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("closing xDS stream %s: %s", conn_id or "(no node yet)", exc)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # a translation bug must cost one stream, not the server
            log.exception("closing xDS stream %s after an internal error", conn_id or "(no node yet)")
        finally:
            if conn_id:
                self.peers.pop(conn_id, None)
                self._update_gauge()
                log.info("proxy disconnected: %s", conn_id)
            writer.close()
            if task is not None:
                self._handlers.discard(task)

    def _update_gauge(self) -> None:
        self.metrics.xds.set(float(len(self.peers)), self.version)

    async def start(self, host: str, port: int) -> int:
        """Listen for proxies and start the push loop; returns the bound port."""
        server = await asyncio.start_server(self._handle, host, port, limit=MAX_REQUEST_BYTES)
        self._servers.append(server)
        if self._pusher is None:
            self._pusher = spawn(self._push_loop(), name="controlplane-push-loop")
        return int(server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
            try:
                await self._pusher
            except asyncio.CancelledError:
                pass
            self._pusher = None
        for server in self._servers:
            server.close()
        for peer in list(self.peers.values()):
            peer.writer.close()
        if self._handlers:
            # closing a stream ends its handler; wait so no handler outlives the server
            _, pending = await asyncio.wait(set(self._handlers), timeout=5)
            for task in pending:
                task.cancel()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    # --- debug views --------------------------------------------------------------------------

    def syncz(self) -> list[dict[str, Any]]:
        out = []
        for peer in sorted(self.peers.values(), key=lambda p: p.conn.proxy_id):
            conn = peer.conn
            out.append(
                {
                    "proxy": conn.proxy_id,
                    "connection_id": conn.conn_id,
                    "cluster_id": conn.node.get("cluster", "Kubernetes"),
                    "istiod": self.istiod_id,
                    "istio_version": str((conn.node.get("metadata") or {}).get("ISTIO_VERSION", "")),
                    "revision": self.revision,
                    "types": conn.syncz(),
                }
            )
        return out

    def find(self, proxy_id: str) -> ProxyConnection | None:
        """A connection by node id or by ``pod.namespace`` (the newest connection wins)."""
        found = None
        for peer in self.peers.values():
            conn = peer.conn
            try:
                _, pod, ns = parse_node_id(conn.proxy_id)
            except ValueError:
                continue
            if proxy_id in (conn.proxy_id, f"{pod}.{ns}", pod):
                found = conn
        return found

    def config_dump(self, conn: ProxyConnection) -> dict[str, Any]:
        """Envoy's config_dump shape for what this istiod sends the proxy."""
        cfg = conn.config or ProxyConfig()
        return envoy_config_dump(cfg, {t: st.sent_version for t, st in conn.types.items()}, conn.node)


def envoy_config_dump(
    cfg: ProxyConfig, versions: Mapping[str, str], node: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                "bootstrap": {"node": dict(node)},
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                "dynamic_active_clusters": [
                    {"version_info": versions.get(CLUSTER_TYPE, ""), "cluster": c} for c in cfg.clusters
                ],
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                "dynamic_listeners": [
                    {
                        "name": x["name"],
                        "active_state": {"version_info": versions.get(LISTENER_TYPE, ""), "listener": x},
                    }
                    for x in cfg.listeners
                ],
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
                "dynamic_route_configs": [
                    {"version_info": versions.get(ROUTE_TYPE, ""), "route_config": r} for r in cfg.routes
                ],
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
                "dynamic_endpoint_configs": [
                    {"version_info": versions.get(ENDPOINT_TYPE, ""), "endpoint_config": e}
                    for e in cfg.endpoints
                ],
            },
        ]
    }
