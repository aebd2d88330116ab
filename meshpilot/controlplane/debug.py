"""istiod's monitoring port (15014): readiness, metrics and the debug views istioctl reads.

- ``/ready``: 200 once the first registry snapshot has been pushed, else 503;
- ``/metrics``: ``pilot_*`` metrics (Prometheus text);
- ``/debug/syncz``: every connected proxy with per-type sent/acked versions and nonces and
  istioctl's SYNCED / NOT SENT / STALE status (``meshpilot proxy-status`` reads this);
- ``/debug/config_dump?proxyID=<node id | pod.namespace>``: what this istiod sends that proxy,
  in Envoy's config_dump shape;
- ``/debug/registryz``: the services of the registry.
"""

from __future__ import annotations

from aiohttp import web

from meshpilot.controlplane.server import ControlPlane


def make_app(cp: ControlPlane) -> web.Application:
    async def ready(_: web.Request) -> web.Response:
        if cp.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="registry not synced\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=cp.metrics.render(), content_type="text/plain", charset="utf-8")

    async def syncz(_: web.Request) -> web.Response:
        return web.json_response(cp.syncz())

    async def config_dump(request: web.Request) -> web.Response:
        proxy_id = request.query.get("proxyID", "")
        if not proxy_id:
            return web.json_response({"error": "proxyID is required"}, status=400)
        conn = cp.find(proxy_id)
        if conn is None:
            return web.json_response(
                {"error": f"proxy {proxy_id} is not connected to {cp.istiod_id}"}, status=404
            )
        return web.json_response(cp.config_dump(conn))

    async def registryz(_: web.Request) -> web.Response:
        registry = cp.registry
        services = [] if registry is None else registry.services
        return web.json_response(
            [
                {
                    "hostname": s.hostname,
                    "namespace": s.namespace,
                    "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in s.ports],
                    "addresses": list(s.addresses),
                    "resolution": s.resolution,
                    "source": s.source,
                }
                for s in services
            ]
        )

    app = web.Application()
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/debug/syncz", syncz)
    app.router.add_get("/debug/config_dump", config_dump)
    app.router.add_get("/debug/registryz", registryz)
    return app


async def start_debug(cp: ControlPlane, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve the debug app; returns the runner (for cleanup) and the bound port."""
    runner = web.AppRunner(make_app(cp), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    bound = port
    if server is not None and getattr(server, "sockets", None):
        bound = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    return runner, bound
