"""frontend: the caller of the reference text's examples; it calls productcatalog by service name.

It serves ``/`` (a small HTML page) and ``/api/products`` (JSON), and for each request fetches the
catalogue from productcatalog, forwarding ``x-request-id`` and the trace headers, and reports which
productcatalog version and pod answered (header ``x-productcatalog-version`` and the JSON body).

How productcatalog is reached, in this order:

1. ``$HTTP_PROXY`` (or ``http_proxy``) is set — the app runs with a sidecar: the request goes to the
   proxy in absolute form (``GET http://productcatalog.production.svc.cluster.local/products``) and
   the mesh routes it. Keep-alive connections to the sidecar are reused.
2. No proxy: the service name in ``$PRODUCTCATALOG_URL`` (default
   ``http://productcatalog.production.svc.cluster.local``) is resolved as cluster DNS would:
   a. from Kubernetes' service environment variables (``PRODUCTCATALOG_SERVICE_HOST/PORT``) when the
      service is in the pod's own namespace — Kubernetes injects them only for that namespace, and
      frontend lives in ``frontend`` while productcatalog lives in ``production``;
   b. otherwise by asking the cluster API for the Service's ClusterIP (what kube-dns does), when the
      local cluster gave the pod an API token (``$MESHPILOT_TOKEN_FILE``);
   c. otherwise by ordinary DNS (a real Kubernetes cluster).
   Without a sidecar every call opens a fresh connection, so that the L4 service proxy spreads calls
   across the ready pods as kube-proxy would, instead of pinning one pooled connection to one pod.

Outgoing connections are bound to ``$POD_IP`` before connecting, so that the mesh sees this pod as
their source.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from meshpilot.samples._common import TRACE_HEADERS, listen_address, parse_duration, pod_name, run, serve

DEFAULT_PORT = 8080
DEFAULT_CATALOG_URL = "http://productcatalog.production.svc.cluster.local"
_RESOLVE_TTL = 30.0


def _proxy_from_env() -> str | None:
    return os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy") or None


def _bypasses_proxy(host: str) -> bool:
    """``NO_PROXY`` as curl reads it: ``*``, exact hosts, and domain suffixes (``.local``, ``local``)."""
    raw = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    for entry in (e.strip().lower() for e in raw.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.split(":", 1)[0] if entry.count(":") == 1 else entry
        bare = entry.lstrip(".")
        if host == bare or host.endswith("." + bare):
            return True
    return False


def split_service_host(host: str, default_namespace: str) -> tuple[str, str] | None:
    """``name``, ``name.ns``, ``name.ns.svc``, ``name.ns.svc.cluster.local`` -> (name, ns)."""
    parts = host.lower().split(".")
    if parts[-2:] == ["cluster", "local"]:
        parts = parts[:-2]
    if parts and parts[-1] == "svc":
        parts = parts[:-1]
    if len(parts) == 1 and parts[0]:
        return parts[0], default_namespace
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    return None


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass
class Resolution:
    """Where a call goes: the URL to send, through which proxy, with which Host header, and why."""

    base_url: str
    proxy: str | None
    host_header: str | None
    how: str


@dataclass
class CatalogClient:
    """Finds productcatalog and calls it; see the module docstring for the resolution order."""

    service_url: str
    timeout: float
    namespace: str
    _session: aiohttp.ClientSession | None = None
    _cache: tuple[float, Resolution] | None = None
    _api_session: aiohttp.ClientSession | None = field(default=None, repr=False)

    def _local_addr(self) -> tuple[str, int] | None:
        pod_ip = os.environ.get("POD_IP")
        return (pod_ip, 0) if pod_ip else None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            proxied = _proxy_from_env() is not None
            connector = aiohttp.TCPConnector(
                local_addr=self._local_addr(),
                force_close=not proxied,  # see the module docstring: per-call balancing without a mesh
                limit=256,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                auto_decompress=True,
                trust_env=False,  # the proxy decision is ours, made explicitly below
            )
        return self._session

    async def close(self) -> None:
        for sess in (self._session, self._api_session):
            if sess is not None:
                await sess.close()

    async def resolve(self) -> Resolution:
        now = time.monotonic()
        if self._cache is not None and now - self._cache[0] < _RESOLVE_TTL:
            return self._cache[1]
        resolution = await self._resolve()
        self._cache = (now, resolution)
        return resolution

    def forget(self) -> None:
        """Drop the cached resolution (after a failed call the service may have moved)."""
        self._cache = None

    async def _resolve(self) -> Resolution:
        parts = urlsplit(self.service_url)
        host = (parts.hostname or "").lower()
        proxy = _proxy_from_env()
        if proxy and not _bypasses_proxy(host):
            return Resolution(self.service_url, proxy, None, f"via proxy {proxy}")
        if _is_ip(host):
            return Resolution(self.service_url, None, None, "direct")
        service = split_service_host(host, self.namespace)
        port = parts.port or 80
        if service is not None:
            name, ns = service
            env_prefix = name.upper().replace("-", "_")
            env_host = os.environ.get(f"{env_prefix}_SERVICE_HOST")
            if ns == self.namespace and env_host:
                env_port = os.environ.get(f"{env_prefix}_SERVICE_PORT") or str(port)
                url = urlunsplit((parts.scheme, f"{env_host}:{env_port}", "", "", ""))
                return Resolution(url, None, parts.netloc, f"service env {env_prefix}_SERVICE_HOST")
            cluster_ip = await self._cluster_ip(name, ns)
            if cluster_ip is not None:
                url = urlunsplit((parts.scheme, f"{cluster_ip}:{port}", "", "", ""))
                return Resolution(url, None, parts.netloc, f"ClusterIP of {ns}/{name} from the cluster API")
        return Resolution(self.service_url, None, None, "DNS")

    async def _cluster_ip(self, name: str, namespace: str) -> str | None:
        token_file = os.environ.get("MESHPILOT_TOKEN_FILE")
        api_host = os.environ.get("KUBERNETES_SERVICE_HOST")
        api_port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not token_file or not api_host:
            return None
        try:
            with open(token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError:
            return None
        if self._api_session is None:
            self._api_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(local_addr=self._local_addr()),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                trust_env=False,
            )
        url = f"http://{api_host}:{api_port}/api/v1/namespaces/{namespace}/services/{name}"
        try:
            async with self._api_session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                if resp.status != 200:
                    return None
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        ip = body.get("spec", {}).get("clusterIP")
        return ip if isinstance(ip, str) and ip and ip != "None" else None

    async def fetch(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any, Resolution]:
        resolution = await self.resolve()
        send_headers = dict(headers)
        if resolution.host_header:
            send_headers["Host"] = resolution.host_header
        session = await self.session()
        try:
            async with session.get(
                resolution.base_url.rstrip("/") + path, headers=send_headers, proxy=resolution.proxy
            ) as resp:
                raw = await resp.read()
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")[:200]
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body, resolution
        except (aiohttp.ClientError, TimeoutError, OSError):
            self.forget()
            raise


@dataclass
class State:
    catalog: CatalogClient
    pod: str
    version: str
    ready: bool = True
    drain: float = 0.5


STATE_KEY = web.AppKey("state", State)


def _trace_headers(request: web.Request) -> dict[str, str]:
    headers = {name: value for name in TRACE_HEADERS if (value := request.headers.get(name)) is not None}
    headers.setdefault("x-request-id", str(uuid.uuid4()))
    return headers


async def _call_catalog(request: web.Request) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Fetch the catalogue; returns (status for our client, JSON body, response headers)."""
    state = request.app[STATE_KEY]
    outgoing = _trace_headers(request)
    started = time.perf_counter()
    meta: dict[str, Any] = {"frontend": {"pod": state.pod, "version": state.version}}
    meta["requestId"] = outgoing["x-request-id"]
    out_headers = {"x-request-id": outgoing["x-request-id"]}
    try:
        status, headers, body, resolution = await state.catalog.fetch("/products", outgoing)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        meta["productcatalog"] = {
            "error": f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
            "latencyMs": round((time.perf_counter() - started) * 1000, 2),
        }
        return 503, meta, out_headers
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    upstream: dict[str, Any] = {
        "status": status,
        "version": headers.get("x-version") or (body.get("version") if isinstance(body, dict) else None),
        "pod": headers.get("x-pod-name") or (body.get("pod") if isinstance(body, dict) else None),
        "latencyMs": latency_ms,
        "via": resolution.how,
    }
    meta["productcatalog"] = upstream
    if upstream["version"]:
        out_headers["x-productcatalog-version"] = str(upstream["version"])
    if upstream["pod"]:
        out_headers["x-productcatalog-pod"] = str(upstream["pod"])
    if 200 <= status < 300 and isinstance(body, dict):
        meta["products"] = body.get("products", [])
        return 200, meta, out_headers
    upstream["error"] = body.get("error") if isinstance(body, dict) else body
    return 502, meta, out_headers


async def api_products(request: web.Request) -> web.Response:
    status, body, headers = await _call_catalog(request)
    return web.json_response(body, status=status, headers=headers)


async def index(request: web.Request) -> web.Response:
    status, body, headers = await _call_catalog(request)
    upstream = body.get("productcatalog", {})
    rows = "".join(
        f"<tr><td>{int(p.get('id', 0))}</td><td>{html.escape(str(p.get('name', '')))}</td>"
        f"<td>{html.escape(str(p.get('price', '')))} {html.escape(str(p.get('currency', '')))}</td>"
        f"<td>{html.escape(str(p.get('rating', '-')))}</td></tr>"
        for p in body.get("products", [])
        if isinstance(p, dict)
    )
    if status == 200:
        summary = (
            f"served by productcatalog {html.escape(str(upstream.get('version')))} "
            f"({html.escape(str(upstream.get('pod')))}) in {upstream.get('latencyMs')} ms"
        )
    else:
        summary = f"productcatalog unavailable: {html.escape(str(upstream.get('error')))}"
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>meshpilot shop</title></head><body>"
        "<h1>meshpilot shop</h1>"
        f"<p>{summary}</p>"
        "<table><tr><th>id</th><th>name</th><th>price</th><th>rating</th></tr>"
        f"{rows}</table>"
        f"<p><small>frontend {html.escape(body['frontend']['pod'])}, request {html.escape(body['requestId'])}"
        "</small></p></body></html>"
    )
    return web.Response(text=page, content_type="text/html", status=status, headers=headers)


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return web.json_response({"service": "frontend", "pod": state.pod, "status": "ok"})


async def ready(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if not state.ready:
        return web.json_response({"service": "frontend", "pod": state.pod, "status": "draining"}, status=503)
    return web.json_response({"service": "frontend", "pod": state.pod, "status": "ready"})


def make_app(state: State) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = state
    app.router.add_get("/", index)
    app.router.add_get("/api/products", api_products)
    app.router.add_get("/health", health)
    app.router.add_get("/healthz", health)
    app.router.add_get("/ready", ready)

    async def close_clients(app: web.Application) -> None:
        await app[STATE_KEY].catalog.close()

    app.on_cleanup.append(close_clients)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m meshpilot.samples.frontend", description=__doc__)
    parser.add_argument(
        "--productcatalog-url",
        default=os.environ.get("PRODUCTCATALOG_URL", DEFAULT_CATALOG_URL),
        help="productcatalog's service URL (env PRODUCTCATALOG_URL)",
    )
    parser.add_argument("--version", default=os.environ.get("VERSION", "v1"), help="version label to report")
    parser.add_argument(
        "--timeout", default=os.environ.get("UPSTREAM_TIMEOUT", "5s"), help="per-call timeout"
    )
    parser.add_argument(
        "--drain", default=os.environ.get("DRAIN_SECONDS", "0.5"), help="seconds to drain on SIGTERM"
    )
    args = parser.parse_args(argv)
    try:
        timeout = parse_duration(args.timeout, default_unit="s")
        drain = parse_duration(args.drain, default_unit="s")
        host, port = listen_address(DEFAULT_PORT)
    except ValueError as exc:
        parser.error(str(exc))
    if (
        urlsplit(args.productcatalog_url).scheme not in {"http"}
        or not urlsplit(args.productcatalog_url).hostname
    ):
        parser.error(f"invalid productcatalog URL {args.productcatalog_url!r} (expected http://HOST[:PORT])")
    namespace = os.environ.get("POD_NAMESPACE", "default")
    pod = pod_name("frontend")
    catalog = CatalogClient(service_url=args.productcatalog_url, timeout=timeout, namespace=namespace)
    state = State(catalog=catalog, pod=pod, version=args.version, drain=drain)
    app = make_app(state)

    def draining() -> None:
        state.ready = False

    run(lambda: serve(app, host, port, f"frontend ({pod})", draining, drain))


if __name__ == "__main__":
    main()
