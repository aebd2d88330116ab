"""The control plane configures a real sidecar process (``python -m meshpilot.proxy``).

The control plane runs in the test's loop, fed a registry snapshot; the proxy is a real process on
its own loopback address speaking the xDS stream; upstreams are real HTTP servers. This checks
the contract between the translator's output and the proxy's reader end to end: routing by host,
subsets, header matches, ACKs (proxy-status SYNCED) and a pushed change taking effect.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from cp_helpers import endpoints, istio, pod, service

from meshpilot.cli.mesh import (
    cluster_rows,
    clusters_of,
    config_diff,
    endpoint_rows,
    endpoints_of,
    listener_rows,
    listeners_of,
    route_rows,
    routes_of,
)
from meshpilot.controlplane.registry import Snapshot, proxy_from_pod
from meshpilot.controlplane.server import ControlPlane

ROOT = Path(__file__).resolve().parents[2]


def free_subnet() -> str:
    """A 127.a.b.0/24 prefix whose admin/outbound ports are free (other tests run concurrently)."""
    for _ in range(50):
        prefix = f"127.{random.randint(180, 250)}.{random.randint(1, 250)}"
        try:
            for port in (15000, 15001):
                with socket.socket() as s:
                    s.bind((f"{prefix}.20", port))
            return prefix
        except OSError:
            continue
    raise RuntimeError("no free loopback subnet")


async def upstream(ip: str, port: int, name: str) -> web.AppRunner:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"served_by": name, "path": request.path_qs, "host": request.host})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, ip, port).start()
    return runner


def mesh_snapshot(net: str, **extra: Any) -> tuple[Snapshot, dict[str, Any]]:
    v1 = pod("pc-v1", "production", f"{net}.10", {"app": "productcatalog", "version": "v1"}, [8080])
    v2 = pod("pc-v2", "production", f"{net}.11", {"app": "productcatalog", "version": "v2"}, [8080])
    fe = pod("frontend-1", "frontend", f"{net}.20", {"app": "frontend", "version": "v1"}, [])
    snap = Snapshot(
        services=[service("productcatalog", "production", [("http", 80, 8080)], f"{net}.200")],
        endpoints=[endpoints("productcatalog", "production", [v1, v2], [("http", 8080)])],
        pods=[v1, v2, fe],
        **extra,
    )
    return snap, fe


SUBSETS = istio(
    "DestinationRule",
    "productcatalog",
    "production",
    {
        "host": "productcatalog.production.svc.cluster.local",
        "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}],
    },
)


def header_route(to_header: str, default: str) -> dict[str, Any]:
    return istio(
        "VirtualService",
        "productcatalog",
        "production",
        {
            "hosts": ["productcatalog.production.svc.cluster.local"],
            "http": [
                {
                    "match": [{"headers": {"x-canary": {"exact": "yes"}}}],
                    "route": [
                        {
                            "destination": {
                                "host": "productcatalog.production.svc.cluster.local",
                                "subset": to_header,
                            }
                        }
                    ],
                },
                {
                    "route": [
                        {
                            "destination": {
                                "host": "productcatalog.production.svc.cluster.local",
                                "subset": default,
                            }
                        }
                    ]
                },
            ],
        },
    )


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    net = free_subnet()
    plane = ControlPlane(istiod_id="istiod-e2e", debounce_after=0.02, debounce_max=0.2)
    xds_port = await plane.start("127.0.0.1", 0)
    snap, fe = mesh_snapshot(net, destination_rules=[SUBSETS], virtual_services=[header_route("v2", "v1")])
    plane.update(snap)
    ups = [await upstream(f"{net}.10", 8080, "v1"), await upstream(f"{net}.11", 8080, "v2")]
    ident = proxy_from_pod(fe)
    boot = tmp_path / "bootstrap.json"
    boot.write_text(
        json.dumps(
            {
                "node": {
                    "id": ident.id,
                    "cluster": "Kubernetes",
                    "metadata": {"ISTIO_VERSION": "meshpilot", "LABELS": {"app": "frontend"}},
                },
                "ip": ident.ip,
                "admin": {"address": ident.ip, "port": 15000},
                "stats": None,
                "discovery_address": f"127.0.0.1:{xds_port}",
            }
        )
    )
    log = open(tmp_path / "proxy.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshpilot.proxy", "--bootstrap", str(boot)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
        start_new_session=True,
    )
    try:
        yield {
            "plane": plane,
            "net": net,
            "ip": ident.ip,
            "id": ident.id,
            "proc": proc,
            "log": tmp_path / "proxy.log",
        }
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
        for r in ups:
            await r.cleanup()
        await plane.close()


def synced(plane: ControlPlane, proxy_id: str) -> bool:
    return any(
        e["proxy"] == proxy_id and {t["status"] for t in e["types"].values()} == {"SYNCED"}
        for e in plane.syncz()
    )


async def wait_for(predicate: Any, what: str, log: Path, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached; proxy log:\n{log.read_text()[-3000:]}")
        await asyncio.sleep(0.05)


class Client:
    """httpx through the sidecar; a transport failure reports the proxy's log with it."""

    def __init__(self, http: httpx.AsyncClient, log: Path) -> None:
        self.http, self.log = http, log

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        try:
            return await self.http.get(url, **kw)
        except httpx.TransportError as exc:
            raise AssertionError(f"GET {url}: {exc!r}; proxy log:\n{self.log.read_text()[-3000:]}") from exc


async def test_proxy_gets_config_routes_and_follows_a_push(mesh: dict[str, Any]) -> None:
    plane: ControlPlane = mesh["plane"]
    await wait_for(lambda: synced(plane, mesh["id"]), "proxy SYNCED", mesh["log"])
    proxy_url = f"http://{mesh['ip']}:15001"
    async with httpx.AsyncClient(proxy=proxy_url, timeout=5.0) as raw:
        http = Client(raw, mesh["log"])
        for host in (
            "productcatalog.production",
            "productcatalog.production.svc.cluster.local",
            f"{mesh['net']}.200",
        ):
            r = await http.get(f"http://{host}/products?x=1")
            assert r.status_code == 200, r.text
            assert r.json()["served_by"] == "v1"
        r = await http.get("http://productcatalog.production/products", headers={"x-canary": "yes"})
        assert r.json()["served_by"] == "v2"
        # the operator flips the routes; the proxy follows within the push, and acknowledges
        snap, _ = mesh_snapshot(
            mesh["net"], destination_rules=[SUBSETS], virtual_services=[header_route("v1", "v2")]
        )
        plane.update(snap, {"VirtualService/production/productcatalog"})
        deadline = asyncio.get_running_loop().time() + 10
        while (await http.get("http://productcatalog.production/")).json()["served_by"] != "v2":
            assert asyncio.get_running_loop().time() < deadline, mesh["log"].read_text()[-2000:]
            await asyncio.sleep(0.05)
        r = await http.get("http://productcatalog.production/", headers={"x-canary": "yes"})
        assert r.json()["served_by"] == "v1"
    await wait_for(lambda: synced(plane, mesh["id"]), "proxy SYNCED after the push", mesh["log"])
    async with httpx.AsyncClient(timeout=5.0) as http:
        dump = (await http.get(f"http://{mesh['ip']}:15000/config_dump")).json()
    types = [c["@type"].rsplit(".", 1)[-1] for c in dump["configs"]]
    assert "ClustersConfigDump" in types and "RoutesConfigDump" in types
    # proxy-status POD: what istiod sent is what the proxy runs
    conn = plane.find(mesh["id"])
    assert conn is not None
    assert [(t, ok) for t, ok, _ in config_diff(plane.config_dump(conn), dump)] == [
        ("Clusters", True),
        ("Listeners", True),
        ("Routes", True),
    ]
    # proxy-config reads the proxy's own dump: the tables show what the control plane sent
    pc = "productcatalog.production.svc.cluster.local"
    assert [pc, "80", "v2", "outbound", "EDS", "productcatalog.production"] in cluster_rows(clusters_of(dump))
    assert any(
        r[1] == f"{pc}:80" and r[4] == "productcatalog.production" for r in route_rows(routes_of(dump))
    )
    assert [mesh["ip"], "15001", "ALL", "Cluster: PassthroughCluster"] in listener_rows(
        listeners_of(dump), routes_of(dump)
    )
    assert [f"{mesh['net']}.11:8080", "HEALTHY", "OK", f"outbound|80|v2|{pc}"] in endpoint_rows(
        None, endpoints_of(dump)
    )
