"""A canary control plane revision, installed with ``install_into(client, revision=...)`` into the
shared local cluster: its istiod runs as a real Deployment, a namespace labelled
``istio.io/rev=<rev>`` gets sidecars that connect to it, and ``proxy-status --revision`` shows them
SYNCED against the canary istiod — the reference text's canary upgrade, on real processes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from meshpilot.cli.mesh import install_into
from meshpilot.controlplane.install import manifests

REV = "cptest"
NS = "cp-canary"

APP = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "echo", "namespace": NS, "labels": {"app": "echo"}},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "echo"}},
        "template": {
            "metadata": {"labels": {"app": "echo", "version": "v1"}},
            "spec": {
                "containers": [
                    {
                        "name": "echo",
                        "image": "python:3.11-slim",
                        "command": ["python", "-m", "meshpilot.samples.productcatalog"],
                        "args": ["--version", "v1"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                    }
                ]
            },
        },
    },
}
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "echo", "namespace": NS},
    "spec": {"selector": {"app": "echo"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
}


def wait_until(what: str, predicate: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def canary(cluster: Any) -> Iterator[Any]:
    client = cluster.client
    # what a user types: install the canary next to whatever runs, and wait for it
    result = cluster.cli("install", "--revision", REV, "--timeout", "60")
    assert result.exit_code == 0, result.stderr
    assert f"deployment/istiod-{REV} created" in result.stdout
    assert f"✔ Istiod (istiod-{REV}, revision {REV}) is ready" in result.stdout
    again = install_into(client, revision=REV, cluster_id=cluster.name)  # idempotent
    assert {r["result"] for r in again} == {"unchanged"}, again
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.delete(("", "namespaces"), NS)
        for obj in reversed(manifests(REV)):
            if obj["kind"] == "Namespace":
                continue  # istio-system may hold other revisions
            with contextlib.suppress(Exception):
                client.delete(obj["kind"].lower(), obj["metadata"]["name"], "istio-system")


def test_canary_revision_serves_the_namespaces_that_ask_for_it(cluster: Any, canary: Any) -> None:
    client = canary

    def istiod_ready() -> bool:
        dep = client.get(("apps", "deployments"), f"istiod-{REV}", "istio-system")
        return int((dep.get("status") or {}).get("readyReplicas") or 0) >= 1

    wait_until("the canary istiod to be ready", istiod_ready)
    client.create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": {"istio.io/rev": REV}}}
    )
    client.apply([SERVICE, APP])

    def injected_pod() -> dict[str, Any] | None:
        for p in client.list(("", "pods"), NS, label_selector="app=echo"):
            names = [c["name"] for c in p["spec"]["containers"]]
            if "istio-proxy" in names and (p.get("status") or {}).get("podIP"):
                return p
        return None

    pod = wait_until("an injected pod", injected_pod)
    proxy = next(c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy")
    env = {e["name"]: e.get("value") for e in proxy.get("env", [])}
    assert env["ISTIO_META_ISTIO_REVISION"] == REV
    svc_ip = client.get(("", "services"), f"istiod-{REV}", "istio-system")["spec"]["clusterIP"]
    assert svc_ip in env["PROXY_CONFIG"]
    name = f"{pod['metadata']['name']}.{NS}"

    last: list[str] = []

    def synced_row() -> list[str] | None:
        result = cluster.cli("proxy-status", "--revision", REV)
        last[:] = [result.stdout + result.stderr]
        if result.exit_code != 0:
            return None
        for line in result.stdout.splitlines()[1:]:
            cols = line.split()
            if cols and cols[0] == name and cols[2:6] == ["SYNCED"] * 4:
                return cols
        return None

    try:
        row = wait_until("the sidecar to be SYNCED with the canary istiod", synced_row)
    except AssertionError as exc:
        logs = client.logs(pod["metadata"]["name"], NS, container="istio-proxy", tail_lines=30)
        raise AssertionError(
            f"{exc}\nproxy-status:\n{last[0] if last else ''}\nsidecar log:\n{logs}"
        ) from None
    assert row[6].startswith(f"istiod-{REV}-")
    assert row[1] == cluster.name  # the cluster id the injector and the installed istiod agree on
    # proxy-status POD compares what the canary istiod sent with what the sidecar runs
    diff = cluster.cli("proxy-status", name)
    assert diff.exit_code == 0, diff.stderr
    assert diff.stdout.splitlines() == ["Clusters Match", "Listeners Match", "Routes Match"], diff.stdout
    # the default revision (if any) does not claim this proxy
    default = cluster.cli("proxy-status", "--revision", "default")
    assert name not in default.stdout
