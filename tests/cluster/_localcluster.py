"""An in-process local cluster (store + ControllerManager, no API server) for runtime and controller tests.

Each cluster gets a random index in 200..249 so its pod and service addresses (127.N.x.x) do not
meet those of clusters other tests start at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from meshpilot.api import validate
from meshpilot.cluster import admission
from meshpilot.cluster.controllers import ControllerManager
from meshpilot.cluster.objects import (  # re-exported: the tests here import the keys from this module
    CONFIGMAPS,
    DEPLOYMENTS,
    ENDPOINTS,
    NAMESPACES,
    PDBS,
    PODS,
    REPLICASETS,
    SECRETS,
    SERVICES,
)
from meshpilot.cluster.state import ClusterInfo
from meshpilot.store import NotFound, ResourceKey, Store

APP = str(Path(__file__).with_name("_app.py"))

KEYS = {
    "Pod": PODS,
    "Service": SERVICES,
    "Endpoints": ENDPOINTS,
    "Deployment": DEPLOYMENTS,
    "Namespace": NAMESPACES,
    "PodDisruptionBudget": PDBS,
    "ConfigMap": CONFIGMAPS,
    "Secret": SECRETS,
    "ReplicaSet": REPLICASETS,
}


@dataclass
class LocalCluster:
    store: Store
    info: ClusterInfo
    manager: ControllerManager

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Validate, admit and create, as the API server does."""
        key = KEYS[obj["kind"]]
        normalized = validate(obj)
        admitted = admission.admit(self.store, self.info, key, normalized, "CREATE")
        return self.store.create(key, admitted)

    def pods(self, namespace: str = "default", selector: str | None = None) -> list[dict[str, Any]]:
        items, _ = self.store.list(PODS, namespace=namespace, label_selector=selector)
        return items

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return self.store.get(PODS, namespace, name)

    def exists(self, key: ResourceKey, name: str, namespace: str = "default") -> bool:
        try:
            self.store.get(key, namespace, name)
        except NotFound:
            return False
        return True


async def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (NotFound, KeyError, IndexError, OSError):
            last = None
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def make_info(tmp_path: Path, name: str = "t") -> ClusterInfo:
    index = random.randint(200, 249)
    return ClusterInfo(
        name=f"{name}{index}", index=index, state_dir=tmp_path / "state", token="tok-" + name, mesh=False
    )


@contextlib.asynccontextmanager
async def local_cluster(
    tmp_path: Path, info: ClusterInfo | None = None, store: Store | None = None
) -> AsyncIterator[LocalCluster]:
    info = info or make_info(tmp_path)
    own_store = store is None
    store = store or Store(None)
    for ns in ("default", "istio-system"):
        with contextlib.suppress(Exception):
            store.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    manager = ControllerManager(store, info)
    await manager.start()
    cluster = LocalCluster(store, info, manager)
    try:
        yield cluster
    finally:
        await cluster.manager.stop(stop_pods=True)
        if own_store:
            store.close()


def app_container(
    name: str = "app", port: int = 8080, args: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": "test/app",
        "command": ["python", APP],
        "args": list(args or []),
        "ports": [{"name": "http", "containerPort": port}],
    }
    container.update(extra)
    return container


def pod_manifest(
    name: str, containers: list[dict[str, Any]], labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {"app": name}},
        "spec": {"containers": containers, **spec},
    }


def deployment_manifest(
    name: str, replicas: int, labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    labels = labels or {"app": name}
    readiness = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1}
    template_spec = spec.pop("template_spec", None) or {
        "containers": [app_container(readinessProbe=readiness)],
        "terminationGracePeriodSeconds": 5,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": template_spec},
            **spec,
        },
    }


def service_manifest(
    name: str, selector: dict[str, str], port: int = 80, target: Any = "http"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": port, "targetPort": target}]},
    }


def pids_of(pod: dict[str, Any]) -> list[int]:
    out = []
    for status in pod.get("status", {}).get("containerStatuses") or []:
        cid = status.get("containerID", "")
        if cid.startswith("meshpilot://"):
            out.append(int(cid.removeprefix("meshpilot://").split("-")[0]))
    return out


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def processes_running(path_fragment: str) -> list[int]:
    """PIDs whose command line mentions ``path_fragment`` (only our own test processes)."""
    out = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if (
                any(path_fragment in part for part in proc.info["cmdline"] or [])
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                out.append(proc.info["pid"])
    return out


async def http_get(host: str, port: int, path: str = "/", timeout: float = 3.0) -> tuple[int, bytes]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, body


async def http_get_retry(host: str, port: int, path: str = "/", timeout: float = 10.0) -> tuple[int, bytes]:
    """GET once the server listens (a just-started app may not have bound yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await http_get(host, port, path)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


PYTHON = sys.executable
ENV = os.environ
