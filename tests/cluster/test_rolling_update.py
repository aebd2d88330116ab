"""A rolling update while a client keeps sending requests through the Service's ClusterIP: zero
failed requests, and the traffic moves from the old pods to the new ones."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from _localcluster import (
    DEPLOYMENTS,
    SERVICES,
    app_container,
    deployment_manifest,
    local_cluster,
    service_manifest,
    wait_for,
)

from meshpilot.cluster import runtime
from meshpilot.cluster.controllers import deployment as d


@pytest.fixture(autouse=True)
def small_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.BACKOFF_ENV, "0.3")


async def one_request(host: str, port: int) -> str:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 3)
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 3)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise AssertionError(f"bad response {data[:80]!r}")
    return str(json.loads(body)["version"])


async def test_rolling_update_through_the_cluster_ip_fails_no_request(tmp_path: Path) -> None:
    async with local_cluster(tmp_path) as c:
        readiness = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1}
        container = app_container(
            env=[{"name": "VERSION", "value": "v1"}],
            readinessProbe=readiness,
            # the usual production practice: keep serving briefly after leaving the endpoints
            lifecycle={"preStop": {"sleep": {"seconds": 1}}},
        )
        manifest = deployment_manifest(
            "roll",
            3,
            template_spec={"containers": [container], "terminationGracePeriodSeconds": 10},
            strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        )
        c.apply(manifest)
        c.apply(service_manifest("roll", {"app": "roll"}))
        ip = c.store.get(SERVICES, "default", "roll")["spec"]["clusterIP"]
        await wait_for(
            lambda: (
                (c.store.get(DEPLOYMENTS, "default", "roll").get("status") or {}).get("availableReplicas")
                == 3
            ),
            what="3 available",
        )
        await wait_for(
            lambda: len(c.manager.proxy.backends.get(("default", "roll", "http"), [])) == 3,
            what="proxy has 3 backends",
        )

        results: dict[str, int] = {}
        failures: list[str] = []
        stop = asyncio.Event()

        async def client() -> None:
            while not stop.is_set():
                try:
                    version = await one_request(ip, 80)
                    results[version] = results.get(version, 0) + 1
                except Exception as exc:
                    failures.append(repr(exc))
                await asyncio.sleep(0.005)

        clients = [asyncio.ensure_future(client()) for _ in range(3)]
        try:
            await wait_for(lambda: sum(results.values()) >= 20, what="traffic flowing")
            template = c.store.get(DEPLOYMENTS, "default", "roll")["spec"]["template"]
            template = d.restart_template(template)
            template["spec"]["containers"][0]["env"] = [{"name": "VERSION", "value": "v2"}]
            c.store.patch(DEPLOYMENTS, "default", "roll", {"spec": {"template": template}})
            started = time.monotonic()
            await wait_for(
                lambda: (
                    d.rollout_complete(c.store.get(DEPLOYMENTS, "default", "roll"))[0]
                    and len([p for p in c.pods(selector="app=roll")]) == 3
                ),
                timeout=60,
                what="rollout complete and old pods gone",
            )
            elapsed = time.monotonic() - started
            before = results.get("v2", 0)
            await wait_for(lambda: results.get("v2", 0) >= before + 20, what="more v2 traffic")
        finally:
            stop.set()
            await asyncio.gather(*clients)
        assert failures == [], f"{len(failures)} failed requests, e.g. {failures[:3]}"
        assert results.get("v1", 0) > 0 and results.get("v2", 0) > 0
        assert sum(results.values()) > 100, results
        assert elapsed < 60
        # the last requests all reach the new version
        for _ in range(10):
            assert await one_request(ip, 80) == "v2"
