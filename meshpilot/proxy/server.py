"""The proxy process: identity, the live configuration, listeners, pools, telemetry and drain.

``Proxy.apply`` is the only way configuration changes: it compiles a complete ``Snapshot``, binds
any new listener, and only then swaps the snapshot in and closes listeners that went away
(``asyncio.Server.close`` stops accepting but leaves open connections alone). Anything that fails
raises ``ConfigError`` with the running configuration untouched, which the xDS client NACKs.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import itertools
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qs

from meshpilot.proxy import lb
from meshpilot.proxy.config import (
    BLACKHOLE,
    PASSTHROUGH,
    ClusterState,
    ClusterStats,
    ListenerConfig,
    Snapshot,
    compile_hosts,
)
from meshpilot.proxy.http import (
    DownstreamProtocol,
    Exchange,
    Pool,
    UpstreamProtocol,
    decode_peer_metadata,
    encode_peer_metadata,
)
from meshpilot.proxy.router import ConfigError
from meshpilot.proxy.stats import (
    Counters,
    IstioMetrics,
    PeerKey,
    SeriesTable,
    peer_key,
    stats_config,
    workload_view,
)
from meshpilot.tasks import spawn
from meshpilot.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SHORT_NAMES

log = logging.getLogger("meshpilot.proxy")

try:
    from meshpilot.proxy import _fastpath as fastpath
except ImportError:  # not compiled (no C compiler where it was installed): the interpreted lane only
    fastpath = None  # type: ignore[assignment]


@dataclass(slots=True)
class Settings:
    """Knobs with Envoy-like defaults; a bootstrap's ``proxy_settings`` overrides them."""

    header_timeout: float = 30.0
    idle_timeout: float = 300.0
    max_header_bytes: int = 60 * 1024  # Envoy's max_request_headers_kb default
    drain_timeout: float = 5.0  # Istio's terminationDrainDuration
    upstream_idle_timeout: float = 60.0
    dns_refresh: float = 5.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Settings:
        s = cls()
        for k, v in d.items():
            if not hasattr(s, k) or not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"proxy_settings.{k}: unknown setting or not a number >= 0")
            setattr(s, k, type(getattr(s, k))(v))
        return s


@dataclass(slots=True)
class Identity:
    """Who this proxy is, as Istio's node: id, metadata (ISTIO_META_*), pod IP."""

    node_id: str
    ip: str
    metadata: dict[str, Any] = field(default_factory=dict)
    cluster: str = "Kubernetes"


class Proxy:
    def __init__(self, identity: Identity, settings: Settings | None = None) -> None:
        self.identity = identity
        self.settings = settings or Settings()
        self.loop = asyncio.get_running_loop()
        self.snapshot = Snapshot.build({}, {})
        self.servers: dict[tuple[str, int], tuple[str, asyncio.Server]] = {}
        self.bound: dict[str, int] = {}  # listener name -> bound port (port 0 picks one)
        self.admin_servers: list[asyncio.Server] = []
        # keyed by (address, port, fast lane?): each lane keeps its own keep-alive connections
        self.pools: dict[tuple[str, int, bool], Pool] = {}
        self.downstream: set[Any] = set()  # DownstreamProtocol, or the fast lane's FastDownstream
        self.metrics = IstioMetrics()
        self.counters = Counters()
        self.cluster_stats: dict[str, ClusterStats] = {}
        self.draining = False
        self.ready = False
        self.stopped = asyncio.Event()
        self.xds_status: dict[str, Any] = {}
        self.last_updated: dict[str, float] = {}
        self._conn_ids = itertools.count(1)
        self._source_keys: dict[tuple[str, str], PeerKey] = {}
        self._dest_keys: dict[tuple[bytes | None, str], tuple[PeerKey, SeriesTable]] = {}
        self.workload = workload_view(identity.metadata)
        peer: dict[str, Any] = {
            k: identity.metadata[k]
            for k in (
                "NAME",
                "NAMESPACE",
                "LABELS",
                "WORKLOAD_NAME",
                "CLUSTER_ID",
                "SERVICE_ACCOUNT",
                "MESH_ID",
            )
            if k in identity.metadata
        }
        self.peer_metadata_bytes = encode_peer_metadata(peer)
        self.node_id_bytes = identity.node_id.encode()
        # Appended to every outbound request (Istio's metadata exchange), as one list extend.
        self.peer_headers: list[tuple[bytes, bytes]] = [
            (b"x-envoy-peer-metadata-id", self.node_id_bytes),
            (b"x-envoy-peer-metadata", self.peer_metadata_bytes),
        ]
        self.date_header = b""
        self.coarse_now = 0.0  # loop time, refreshed by _tick (for bookkeeping that needs ~1 s)
        self.wall_offset = 0.0  # time.time() - time.monotonic(), refreshed by _tick
        self._tick()
        self._dns_task: asyncio.Task[None] | None = None
        self._dns_wakeup = asyncio.Event()
        self.on_quit: Callable[[], None] | None = None
        # The compiled fast lane for plain requests, unless it is not built or is turned off.
        self.fastlane: Any = None
        if fastpath is None:
            log.warning(
                "the compiled fast lane is not built (no C compiler at install?): every request takes the interpreted lane"
            )
        elif os.environ.get("MESHPILOT_PROXY_FASTPATH", "1") != "0":
            self.fastlane = fastpath.FastLane(self)

    def next_conn_id(self) -> int:
        return next(self._conn_ids)

    def _tick(self) -> None:
        """Once a second: the Date header (not formatted per response) and stale pooled connections.

        A pool left with no connection is forgotten: passthrough traffic makes one pool per
        destination named by the client's Host header, and endpoints come and go with every
        rollout, so keeping them all would grow without bound.
        """
        self.date_header = f"date: {email.utils.formatdate(usegmt=True)}\r\n".encode()
        self.wall_offset = time.time() - time.monotonic()
        self.coarse_now = now = self.loop.time()
        unused = []
        for key, pool in self.pools.items():
            if pool.idle:
                pool.sweep(now)
            if pool.empty:
                unused.append(key)
        for key in unused:
            self.pools.pop(key).retired = True
        if not self.stopped.is_set():
            self.loop.call_later(1.0, self._tick)

    # -- configuration

    async def apply(self, resources: dict[str, list[Any]], versions: dict[str, str]) -> None:
        """Compile, bind new listeners, swap. Raises ConfigError with nothing changed."""
        old = self.snapshot
        snap = Snapshot.build(resources, versions, previous=old)
        for c in snap.clusters.values():
            c.stats = self.cluster_stats.get(c.name) or c.stats  # counters outlive the push
        wanted = {lc.bind_key: lc for lc in snap.listeners.values()}
        new_servers: dict[tuple[str, int], asyncio.Server] = {}
        for key, lc in wanted.items():
            if key in self.servers:
                continue
            try:
                new_servers[key] = await self._listen(key)
            except OSError as e:
                for srv in new_servers.values():
                    srv.close()
                raise ConfigError(
                    f"listener {lc.name!r}: cannot bind {lc.address}:{lc.port}: {e.strerror or e}"
                ) from None
        # Commit: from here on nothing can fail.
        now = time.time()
        for type_url, v in versions.items():
            if old.versions.get(type_url) != v:
                self.last_updated[type_url] = now
        self.snapshot = snap
        # Only the clusters in the config keep counters (Envoy frees a removed cluster's stats
        # scope), so a mesh that churns through services does not grow the proxy forever; a
        # cluster pushed again later starts from zero, as in Envoy.
        self.cluster_stats = {name: c.stats for name, c in snap.clusters.items()}
        for key, srv in new_servers.items():
            self.servers[key] = (wanted[key].name, srv)
        for key, (_, srv) in list(self.servers.items()):
            if key not in wanted:
                srv.close()  # stops accepting; connections already open keep their listener config
                del self.servers[key]
        self.bound = {}
        for key, (_, srv) in self.servers.items():
            name = wanted[key].name
            self.servers[key] = (name, srv)
            self.bound[name] = srv.sockets[0].getsockname()[1] if srv.sockets else key[1]
        if old is not snap:
            old.close()
        self._start_dns()

    def _listener_at(self, key: tuple[str, int]) -> ListenerConfig | None:
        for lc in self.snapshot.listeners.values():
            if lc.bind_key == key:
                return lc
        return None

    def _connection(self, key: tuple[str, int]) -> asyncio.Protocol:
        """The protocol for a new connection on a listener: the compiled fast lane when it is
        built and enabled (it hands anything but plain requests to DownstreamProtocol)."""
        lc = self._listener_at(key)
        if self.fastlane is not None and lc is not None:
            return cast(asyncio.Protocol, fastpath.FastDownstream(self.fastlane, lc))
        return DownstreamProtocol(self, lc)

    async def _listen(self, key: tuple[str, int]) -> asyncio.Server:
        return await self.loop.create_server(
            lambda: self._connection(key),
            key[0],
            key[1],
            reuse_address=True,
            backlog=1024,
        )

    async def start_admin(self, address: str, port: int, stats_port: int | None) -> tuple[int, int | None]:
        """Admin (15000) and Prometheus (15090) endpoints; returns the bound ports."""
        srv = await self.loop.create_server(lambda: DownstreamProtocol(self, None, admin=True), address, port)
        self.admin_servers.append(srv)
        admin_port = srv.sockets[0].getsockname()[1]
        bound_stats = None
        if stats_port is not None:
            s2 = await self.loop.create_server(
                lambda: DownstreamProtocol(self, None, admin=True), address, stats_port
            )
            self.admin_servers.append(s2)
            bound_stats = s2.sockets[0].getsockname()[1]
        return admin_port, bound_stats

    # -- STRICT_DNS clusters

    def _start_dns(self) -> None:
        dns = [c for c in self.snapshot.clusters.values() if c.type == "STRICT_DNS"]
        if not dns:
            return
        if any(not c.hosts for c in dns):
            self._dns_wakeup.set()  # new names: resolve now rather than at the next refresh
        if self._dns_task is None:
            self._dns_task = spawn(self._dns_loop(), name="strict-dns")

    async def _dns_loop(self) -> None:
        """Resolve STRICT_DNS clusters every ``dns_refresh`` seconds, and at once after a push."""
        while not self.stopped.is_set():
            self._dns_wakeup.clear()
            for c in list(self.snapshot.clusters.values()):
                if c.type == "STRICT_DNS":
                    await self._resolve(c)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dns_wakeup.wait(), self.settings.dns_refresh)

    async def _resolve(self, c: ClusterState) -> None:
        hosts: list[lb.Host] = []
        # The configured names, read as every load assignment is (validated when it was applied).
        for name in compile_hosts(c.raw["load_assignment"], f"cluster {c.name!r}", dns=True):
            try:
                infos = await self.loop.getaddrinfo(name.address, name.port, type=1)
            except (OSError, UnicodeError) as e:  # UnicodeError: a label IDNA cannot encode (> 63 chars)
                log.warning("cluster %s: cannot resolve %s: %s", c.name, name.address, e)
                continue
            for info in infos:
                hosts.append(lb.Host(str(info[4][0]), name.port, name.weight, name.metadata, name.priority))
        if [h.key for h in hosts] != [h.key for h in c.hosts]:
            c.set_hosts(hosts)

    # -- pools

    def pool_for(self, host: lb.Host, cluster: ClusterState, fast: bool = False) -> Pool:
        key = (host.address, host.port, fast)
        pool = self.pools.get(key)
        if pool is None:
            # Upstream connections leave from the pod's own IP, as they would from a real pod. A
            # loopback pod IP cannot reach beyond loopback, so external passthrough goes unbound.
            ip = self.identity.ip
            loopback_pod = ip.startswith("127.")
            bind = ip if ip and (not loopback_pod or host.address.startswith("127.")) else None
            protocol = fastpath.FastUpstream if fast and fastpath is not None else None
            pool = self.pools[key] = Pool(self, host.address, host.port, bind, protocol)
            pool.idle_timeout = float(cluster.raw.get("idle_timeout", self.settings.upstream_idle_timeout))
        if fast:
            host.fast_pool = pool
        else:
            host.pool = pool
        return pool

    def release(self, up: UpstreamProtocol, reusable: bool) -> None:
        up.pool.release(up, reusable)

    # -- telemetry

    def record(self, x: Exchange) -> None:
        lc = x.conn.listener
        if lc is None:
            return
        key, table = self.series_for(x, lc)
        self.metrics.record_in(
            table,
            key,
            x.status,
            x.flags,
            (x.end_mono - x.start_mono) * 1000.0,
            x.bytes_received,
            x.bytes_sent,
        )
        if x.flags and x.cluster is not None:
            flags = x.cluster.stats.flags
            flags[x.flags] = flags.get(x.flags, 0) + 1
        for lg in lc.loggers:
            lg.log(x)

    def series_for(self, x: Exchange, lc: ListenerConfig) -> tuple[PeerKey, SeriesTable]:
        """The Istio label key of ``x``'s series and its per-peer table (cached both sides)."""
        if lc.direction == "INBOUND":
            return self._dest_key(x)
        host = x.host
        cached = host.stats_key if host is not None else None
        if cached is not None and cached[0] == x.cluster_name:
            return cached[1], cached[2]
        return self._source_key(x)

    def _service_of(self, x: Exchange) -> tuple[str, str, str]:
        c = x.cluster
        if c is not None and c.service_host:
            return c.service_host, c.service_name, c.service_namespace
        host = (
            x.authority.rsplit(":", 1)[0] if x.authority.rfind(":") > x.authority.rfind("]") else x.authority
        )
        if x.cluster_name in (PASSTHROUGH, BLACKHOLE):
            return host or "unknown", x.cluster_name, "unknown"
        return host or "unknown", host.split(".")[0] if host else "unknown", "unknown"

    def _source_key(self, x: Exchange) -> tuple[PeerKey, SeriesTable]:
        host = x.host
        ck = (x.cluster_name, host.key if host is not None else x.authority)
        key = self._source_keys.get(ck)
        if key is None:
            if len(self._source_keys) > 10000:
                self._source_keys.clear()
            dest = workload_view(host.metadata) if host is not None and host.metadata else None
            svc = self._service_of(x)
            key = peer_key("source", self.workload, dest, *svc, "unknown")
            self._source_keys[ck] = key
        table = self.metrics.table(key)
        if host is not None:
            # Remembered on the endpoint itself: one attribute read instead of a tuple and a dict.
            host.stats_key = (x.cluster_name, key, table)
        return key, table

    def _dest_key(self, x: Exchange) -> tuple[PeerKey, SeriesTable]:
        dk = (x.peer_header, x.cluster_name)
        cached = self._dest_keys.get(dk)
        if cached is None:
            if len(self._dest_keys) > 10000:
                self._dest_keys.clear()
            src = workload_view(decode_peer_metadata(x.peer_header)) if x.peer_header else None
            svc = self._service_of(x)
            key = peer_key("destination", src, self.workload, *svc, "none")
            cached = self._dest_keys[dk] = (key, self.metrics.table(key))
        return cached

    # -- admin

    def admin_request(self, x: Exchange) -> None:
        from meshpilot.proxy import admin

        try:
            status, ctype, body = admin.handle(self, x.method, x.path, parse_qs(x.query))
        except Exception:
            log.exception("admin %s %s failed", x.method, x.path)
            status, ctype, body = 500, "text/plain", b"internal error\n"
        x.local_reply(status, "", "admin", body, [(b"content-type", ctype.encode())])

    def quit(self) -> None:
        spawn(self.drain(), name="quitquitquit")

    # -- lifecycle

    async def drain(self) -> None:
        """SIGTERM: stop accepting, let in-flight requests finish (bounded), then stop."""
        if self.draining:
            return
        self.draining = True
        log.info("draining: %d connections open", len(self.downstream))
        for _, srv in self.servers.values():
            srv.close()
        deadline = self.loop.time() + self.settings.drain_timeout
        while self.loop.time() < deadline:
            for d in list(self.downstream):
                if not d.admin:
                    d.drain_idle()
            if not any(not d.admin for d in self.downstream):
                break
            await asyncio.sleep(0.05)
        await self.stop()

    async def stop(self) -> None:
        for _, srv in self.servers.values():
            srv.close()
        self.servers.clear()
        for d in list(self.downstream):
            d.close()
        for pool in self.pools.values():
            pool.close()
        for srv in self.admin_servers:
            srv.close()
        self.snapshot.close()
        self.stopped.set()
        if self._dns_task is not None:
            self._dns_task.cancel()

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, lambda: spawn(self.drain(), name="drain"))

    # -- introspection

    def config_dump(self) -> dict[str, Any]:
        """Envoy's /config_dump shape: one entry per resource type, with versions and update times."""
        snap = self.snapshot
        dynamic = bool(self.xds_status)

        def ver(t: str) -> str:
            return snap.versions.get(t, "")

        def ts(t: str) -> str:
            t0 = self.last_updated.get(t)
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)) if t0 else ""

        res = snap.resources
        prefix = "dynamic" if dynamic else "static"
        return {
            "configs": [
                {
                    "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                    "bootstrap": {
                        "node": {
                            "id": self.identity.node_id,
                            "cluster": self.identity.cluster,
                            "metadata": self.identity.metadata,
                        },
                        "admin": {"bound_listeners": self.bound},
                        "stats_config": stats_config(),
                    },
                },
                {
                    "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                    "version_info": ver(CLUSTER_TYPE),
                    f"{prefix}_active_clusters": [
                        {"version_info": ver(CLUSTER_TYPE), "cluster": c, "last_updated": ts(CLUSTER_TYPE)}
                        for c in res.get(CLUSTER_TYPE, [])
                    ],
                },
                {
                    "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                    "version_info": ver(LISTENER_TYPE),
                    f"{prefix}_listeners": [
                        {
                            "name": li.get("name"),
                            "active_state": {
                                "version_info": ver(LISTENER_TYPE),
                                "listener": li,
                                "last_updated": ts(LISTENER_TYPE),
                            },
                        }
                        for li in res.get(LISTENER_TYPE, [])
                    ],
                },
                {
                    "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
                    f"{prefix}_route_configs": [
                        {"version_info": ver(ROUTE_TYPE), "route_config": r, "last_updated": ts(ROUTE_TYPE)}
                        for r in res.get(ROUTE_TYPE, [])
                    ],
                },
                {
                    "@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
                    f"{prefix}_endpoint_configs": [
                        {
                            "version_info": ver(ENDPOINT_TYPE),
                            "endpoint_config": e,
                            "last_updated": ts(ENDPOINT_TYPE),
                        }
                        for e in res.get(ENDPOINT_TYPE, [])
                    ],
                },
            ],
            "xds": {SHORT_NAMES.get(k, k): v for k, v in self.xds_status.items()},
        }

    def cluster_counters(self) -> dict[str, int]:
        """Counters kept outside ``self.counters``: per cluster, and the fast lane's own
        (``meshpilot.fastlane.rq_total``: requests it served, ``.handovers``: connections it gave
        to the interpreted lane)."""
        out = {f"cluster.{name}.{k}": v for name, st in self.cluster_stats.items() for k, v in st.items()}
        if self.fastlane is not None:
            out["meshpilot.fastlane.rq_total"] = self.fastlane.requests
            out["meshpilot.fastlane.handovers"] = self.fastlane.handovers
        return out

    def clusters_text(self) -> str:
        out = []
        for c in self.snapshot.clusters.values():
            for h in c.hosts:
                p = f"{c.name}::{h.key}::"
                cx = sum(
                    len(pool.active) + len(pool.idle)
                    for pool in (self.pools.get((h.address, h.port, fast)) for fast in (False, True))
                    if pool is not None
                )
                out += [
                    f"{p}cx_active::{cx}",
                    f"{p}rq_active::{h.active}",
                    f"{p}weight::{h.weight}",
                    f"{p}health_flags::healthy",
                    f"{p}priority::{h.priority}",
                ]
        return "\n".join(out) + "\n"

    def clusters_json(self) -> dict[str, Any]:
        return {
            "cluster_statuses": [
                {
                    "name": c.name,
                    "type": c.type,
                    "lb_policy": c.lb_policy,
                    "host_statuses": [
                        {
                            "address": {"socket_address": {"address": h.address, "port_value": h.port}},
                            "weight": h.weight,
                            "priority": h.priority,
                            "rq_active": h.active,
                            "health_status": {"eds_health_status": "HEALTHY"},
                            "metadata": h.metadata,
                        }
                        for h in c.hosts
                    ],
                }
                for c in self.snapshot.clusters.values()
            ]
        }


def identity_from_env(env: dict[str, str] | None = None) -> Identity:
    """Istio's sidecar environment: POD_NAME, POD_NAMESPACE, INSTANCE_IP, ISTIO_META_*, ISTIO_METAJSON_*."""
    env = dict(os.environ if env is None else env)
    name = env.get("POD_NAME", "")
    ns = env.get("POD_NAMESPACE", "default")
    ip = env.get("INSTANCE_IP") or env.get("POD_IP") or "127.0.0.1"
    meta: dict[str, Any] = {}
    for k, v in env.items():
        if k.startswith("ISTIO_METAJSON_"):
            try:
                meta[k[len("ISTIO_METAJSON_") :]] = json.loads(v)
            except ValueError:
                raise ConfigError(f"{k}: not JSON") from None
        elif k.startswith("ISTIO_META_"):
            meta[k[len("ISTIO_META_") :]] = v
    meta.setdefault("NAME", name)
    meta.setdefault("NAMESPACE", ns)
    meta.setdefault("INSTANCE_IPS", ip)
    if env.get("SERVICE_ACCOUNT"):
        meta.setdefault("SERVICE_ACCOUNT", env["SERVICE_ACCOUNT"])
    if isinstance(meta.get("LABELS"), str):
        try:
            meta["LABELS"] = json.loads(meta["LABELS"])
        except ValueError:
            raise ConfigError("ISTIO_META_LABELS: not a JSON object") from None
    labels = meta.setdefault("LABELS", {})
    if isinstance(labels, dict):
        # The injector passes the canonical names separately (as Istio's injector does).
        if env.get("CANONICAL_SERVICE"):
            labels.setdefault("service.istio.io/canonical-name", env["CANONICAL_SERVICE"])
        if env.get("CANONICAL_REVISION"):
            labels.setdefault("service.istio.io/canonical-revision", env["CANONICAL_REVISION"])
    node_id = f"sidecar~{ip}~{name}.{ns}~{ns}.svc.cluster.local"
    return Identity(node_id, ip, meta, str(meta.get("CLUSTER_ID", "Kubernetes")))
