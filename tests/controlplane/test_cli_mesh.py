"""``meshpilot install`` / ``proxy-status`` / ``proxy-config``: istioctl's tables, and the real
thing against an istiod pod running in the shared local cluster."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
import pytest
from test_server import FakeProxy
from test_translate import FRONTEND, SUBSETS_DR, gen, snapshot, vs

from meshpilot.api import validate
from meshpilot.cli.mesh import (
    CLUSTER_HEADERS,
    cluster_rows,
    clusters_of,
    config_diff,
    endpoint_rows,
    endpoints_of,
    listener_rows,
    listeners_of,
    route_rows,
    routes_of,
    status_rows,
)
from meshpilot.controlplane.install import InstallError, manifests
from meshpilot.controlplane.server import envoy_config_dump
from meshpilot.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE

PC = "productcatalog.production.svc.cluster.local"


def dump() -> dict[str, Any]:
    split = vs(
        [
            {
                "route": [
                    {"destination": {"host": "productcatalog", "subset": "v1"}, "weight": 90},
                    {"destination": {"host": "productcatalog", "subset": "v2"}, "weight": 10},
                ]
            }
        ]
    )
    cfg = gen(snapshot(virtual_services=[split], destination_rules=[SUBSETS_DR]))
    return envoy_config_dump(cfg, {}, {"id": "x"})


def test_manifests_validate_and_revisions_rename() -> None:
    for rev in (None, "canary", "1-30-3"):
        objs = manifests(rev, cluster_id="local")
        for obj in objs:
            validate(obj)
        dep = next(o for o in objs if o["kind"] == "Deployment")
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert labels["app"] == "istiod" and labels["istio.io/rev"] == (rev or "default")
        assert dep["metadata"]["name"] == ("istiod" if rev is None else f"istiod-{rev}")
        env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["CLUSTER_ID"] == "local" and env["REVISION"] == (rev or "default")
        ports = {p["containerPort"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert ports == {15010, 15012, 15014}
        svc = next(o for o in objs if o["kind"] == "Service")
        assert svc["spec"]["selector"] == {"app": "istiod", "istio.io/rev": rev or "default"}
        cm = next(o for o in objs if o["kind"] == "ConfigMap")
        assert cm["metadata"]["name"] == ("istio" if rev is None else f"istio-{rev}")
    with pytest.raises(InstallError):
        manifests("Bad_Rev")


def test_cluster_table_has_istioctls_columns() -> None:
    rows = {r[0] + "|" + r[1] + "|" + r[2]: r for r in cluster_rows(clusters_of(dump()))}
    assert CLUSTER_HEADERS == ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"]
    assert rows[f"{PC}|8080|v1"] == [PC, "8080", "v1", "outbound", "EDS", "productcatalog.production"]
    assert rows[f"{PC}|8080|-"][5] == "productcatalog.production"
    assert rows["BlackHoleCluster|-|-"] == ["BlackHoleCluster", "-", "-", "-", "STATIC", "-"]
    assert rows["|8080|-"][3:5] == ["inbound", "STATIC"]


def test_route_listener_endpoint_tables() -> None:
    d = dump()
    routes = route_rows(routes_of(d))
    row = next(r for r in routes if r[1] == f"{PC}:8080")
    assert row == [
        "8080",
        f"{PC}:8080",
        "productcatalog, productcatalog.production + 3 more...",
        "/*",
        "productcatalog.production",
    ]
    listeners = listener_rows(listeners_of(d), routes_of(d))
    assert ["127.1.1.20", "8080", "ALL", "Cluster: inbound|8080||"] in listeners
    assert ["127.1.1.20", "15001", "Port: 8080", "Route: 8080"] in listeners
    assert ["127.1.1.20", "15001", "ALL", "Cluster: PassthroughCluster"] in listeners
    eps = endpoint_rows(None, endpoints_of(d))
    assert ["127.1.1.12:8080", "HEALTHY", "OK", f"outbound|8080|v2|{PC}"] in eps
    status = {
        "cluster_statuses": [
            {
                "name": "c",
                "host_statuses": [
                    {
                        "address": {"socket_address": {"address": "1.2.3.4", "port_value": 80}},
                        "health_status": {"eds_health_status": "HEALTHY", "failed_outlier_check": True},
                    }
                ],
            }
        ]
    }
    assert endpoint_rows(status, []) == [["1.2.3.4:80", "HEALTHY", "FAILED", "c"]]


def test_status_rows() -> None:
    entry = {
        "proxy": "sidecar~127.1.1.20~web-1.prod~prod.svc.cluster.local",
        "cluster_id": "Kubernetes",
        "istiod": "istiod-abc",
        "istio_version": "1.30.3",
        "types": {"cds": {"status": "SYNCED"}, "lds": {"status": "STALE"}, "eds": {"status": "SYNCED"}},
    }
    assert status_rows([entry]) == [
        ["web-1.prod", "Kubernetes", "SYNCED", "STALE", "SYNCED", "NOT SENT", "istiod-abc", "1.30.3"]
    ]


def test_bad_revision_is_one_line_and_changes_nothing(cluster: Any) -> None:
    result = cluster.cli("install", "--revision", "Bad_Rev", "--no-wait")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: invalid revision 'Bad_Rev': use lowercase letters, digits and '-'"
    ]


# --- a real istiod pod in the local cluster ----------------------------------------------------------------


@pytest.fixture
def istiod_pod(cluster: Any) -> Any:
    client = cluster.client
    created_ns = False
    try:
        client.get(("", "namespaces"), "istio-system")
    except Exception:
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
        created_ns = True
    name = "istiod-cli-test"
    client.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": "istio-system",
                "labels": {"app": "istiod", "istio.io/rev": "clitest"},
            },
            "spec": {
                "containers": [
                    {
                        "name": "discovery",
                        "image": "meshpilot/pilot",
                        "command": ["python", "-m", "meshpilot.controlplane"],
                        "env": [{"name": "REVISION", "value": "clitest"}],
                        "ports": [{"containerPort": 15010}, {"containerPort": 15014}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 15014}, "periodSeconds": 1},
                    }
                ]
            },
        }
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            pod = client.get(("", "pods"), name, "istio-system")
            conds = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []}
            if conds.get("Ready") == "True":
                break
            assert time.monotonic() < deadline, f"istiod pod not ready: {pod.get('status')}"
            time.sleep(0.2)
        yield pod
    finally:
        with contextlib.suppress(Exception):
            client.delete(("", "pods"), name, "istio-system", grace_period_seconds=0)
        if created_ns:
            with contextlib.suppress(Exception):
                client.delete(("", "namespaces"), "istio-system")


async def test_proxy_status_reads_istiod_in_the_cluster(cluster: Any, istiod_pod: Any) -> None:
    ip = istiod_pod["status"]["podIP"]
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"http://{ip}:15014/ready")).status_code == 200
        registry = (await http.get(f"http://{ip}:15014/debug/registryz")).json()
        assert "kubernetes.default.svc.cluster.local" in {s["hostname"] for s in registry}
    proxy = await FakeProxy.connect_to(ip, 15010, FRONTEND)
    try:
        await proxy.subscribe(CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)
        for _ in range(4):
            await proxy.ack(await proxy.recv())
        deadline = time.monotonic() + 10
        while True:
            result = await asyncio.to_thread(cluster.cli, "proxy-status", "--revision", "clitest")
            assert result.exit_code == 0, result.stderr
            lines = result.stdout.strip().splitlines()
            assert lines[0].split() == ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ISTIOD", "VERSION"]
            if len(lines) == 2 and lines[1].split()[2:6] == ["SYNCED"] * 4:
                break
            assert time.monotonic() < deadline, result.stdout
            await asyncio.sleep(0.1)
        assert lines[1].split()[0] == "frontend-6b7c8d9e0f-zzzzz.production"
        assert lines[1].split()[6] == "istiod-cli-test"
    finally:
        await proxy.close()


def test_proxy_status_without_istiod_is_a_clear_error(cluster: Any) -> None:
    result = cluster.cli("proxy-status", "--revision", "nonexistent")
    assert result.exit_code == 1
    assert "no running istiod pods in istio-system" in result.stderr


def test_controlplane_process_with_a_kubeconfig_serves_and_stops_on_sigterm(
    cluster: Any, tmp_path: Any
) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE")}
    env.update(cluster.env)
    log = tmp_path / "istiod.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "meshpilot.controlplane",
                "--context",
                cluster.context,
                "--host",
                "127.0.0.1",
                "--xds-port",
                "0",
                "--debug-port",
                "0",
            ],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        port = None
        while port is None:
            m = re.search(r"debug on 127\.0\.0\.1:(\d+)", log.read_text())
            if m:
                port = int(m.group(1))
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        while httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code != 200:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()
        assert "stopping" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_controlplane_process_without_credentials_is_one_line_exit_2(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE")}
    env["MESHPILOT_HOME"] = str(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshpilot.controlplane",
            "--host",
            "127.0.0.1",
            "--xds-port",
            "0",
            "--debug-port",
            "0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_config_diff_names_what_differs() -> None:
    sent = dump()
    running = json.loads(json.dumps(sent))
    clusters = running["configs"][1]["dynamic_active_clusters"]
    clusters[0]["cluster"]["lb_policy"] = "RANDOM"
    results = {t: (ok, diff) for t, ok, diff in config_diff(sent, running)}
    assert results["Listeners"] == (True, "") and results["Routes"][0]
    ok, diff = results["Clusters"]
    assert not ok and diff.startswith("--- Istiod Clusters\n+++ Envoy Clusters")
    assert '+  "lb_policy": "RANDOM",' in diff.splitlines()
