"""Helpers for the end-to-end tests: the ``Mesh`` handle on one real mesh-enabled local cluster.

The cluster is what a user gets from ``meshpilot cluster up`` + ``meshpilot install`` + the
packaged sample apps with both namespaces labelled ``istio-injection=enabled``: istiod pods in
istio-system, productcatalog v1 (2 pods) and v2 (1 pod) in ``production`` and the frontend in
``frontend``, every app pod with an injected ``istio-proxy`` sidecar. Starting it costs seconds on
two cores, so the tests share it and each one removes the Istio objects it applied.

``Mesh`` gives the tests what they need to look at it from outside: pod IPs, the frontend
sidecar's outbound listener (the ``$HTTP_PROXY`` the frontend app uses), admin ``/config_dump``,
Prometheus scrapes, ``proxy-status`` rows and a wait for "every proxy SYNCED on the latest push".
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from _clusterhandle import LocalCluster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ISTIO = "istio-system"
CATALOG_HOST = "productcatalog.production.svc.cluster.local"
MESH_NAMESPACES = ("production", "frontend")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = check()
        except Exception as exc:
            last_error, value = exc, None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what} (last error: {last_error!r})"
            )
        time.sleep(interval)


@dataclass
class Mesh(LocalCluster):
    """The shared cluster handle (``.cli``, ``.env``, ``.client`` ...) plus what looking at a mesh needs."""

    http: httpx.Client = field(repr=False, default_factory=lambda: httpx.Client(timeout=5.0, trust_env=False))

    # --- pods ---------------------------------------------------------------------------------

    def pods(self, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        items = self.client.list(("", "pods"), namespace, label_selector=selector)
        return [p for p in items if (p.get("status") or {}).get("phase") == "Running"]

    def pod(self, namespace: str, selector: str) -> dict[str, Any]:
        pods = self.pods(namespace, selector)
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        return pods[0]

    def app_pods(self) -> list[dict[str, Any]]:
        return [p for ns in MESH_NAMESPACES for p in self.pods(ns)]

    @property
    def frontend(self) -> dict[str, Any]:
        return self.pod("frontend", "app=frontend")

    @property
    def frontend_proxy(self) -> str:
        """The frontend's ``$HTTP_PROXY``: its sidecar's outbound listener."""
        return f"http://{self.frontend['status']['podIP']}:15001"

    # --- proxies ------------------------------------------------------------------------------

    def config_dump(self, pod: dict[str, Any]) -> dict[str, Any]:
        resp = self.http.get(f"http://{pod['status']['podIP']}:15000/config_dump")
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    def routes_of(self, pod: dict[str, Any]) -> str:
        """The pod's route configuration as JSON text (for "does it contain X yet" polls)."""
        for section in self.config_dump(pod)["configs"]:
            if section["@type"].endswith("RoutesConfigDump"):
                return json.dumps(section)
        return ""

    def scrape(self, pod: dict[str, Any]) -> str:
        resp = self.http.get(f"http://{pod['status']['podIP']}:15090/stats/prometheus")
        resp.raise_for_status()
        return resp.text

    def syncz(self) -> list[dict[str, Any]]:
        """``/debug/syncz`` of every running istiod pod, concatenated."""
        out: list[dict[str, Any]] = []
        for pod in self.pods(ISTIO, "app=istiod"):
            resp = self.http.get(f"http://{pod['status']['podIP']}:15014/debug/syncz")
            resp.raise_for_status()
            out.extend(resp.json())
        return out

    def proxy_status(self) -> dict[str, list[str]]:
        """``meshpilot proxy-status`` parsed: proxy NAME -> [CLUSTER, CDS, LDS, EDS, RDS, ISTIOD, VERSION]."""
        result = self.cli("proxy-status")
        assert result.exit_code == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert lines and lines[0].split()[:6] == ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS"], (
            result.stdout
        )
        return {line.split()[0]: line.split()[1:] for line in lines[1:] if line.strip()}

    def all_synced(self) -> bool:
        """Every app pod's sidecar connected and SYNCED on all four types, per proxy-status."""
        rows = self.proxy_status()
        want = {f"{p['metadata']['name']}.{p['metadata']['namespace']}" for p in self.app_pods()}
        return want <= set(rows) and all(rows[name][1:5] == ["SYNCED"] * 4 for name in want)

    # --- config -------------------------------------------------------------------------------

    def apply(self, text: str) -> None:
        from meshpilot.api import load_objects

        self.client.apply(load_objects(text, "test.yaml"))

    def delete(self, resource: str, name: str, namespace: str) -> None:
        from meshpilot.client import ApiError

        with contextlib.suppress(ApiError):
            self.client.delete(resource, name, namespace)


def sample_objects() -> list[dict[str, Any]]:
    """The packaged examples with both namespaces labelled for injection."""
    from meshpilot.api import load_objects

    objects: list[dict[str, Any]] = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        objects.extend(load_objects(path.read_text(), str(path)))
    for obj in objects:
        if obj["kind"] == "Namespace" and obj["metadata"]["name"] in MESH_NAMESPACES:
            obj["metadata"].setdefault("labels", {})["istio-injection"] = "enabled"
    return objects


def ready(mesh: Mesh) -> bool:
    for dep in [*mesh.client.list(("apps", "deployments"), ISTIO)] + [
        d for ns in MESH_NAMESPACES for d in mesh.client.list(("apps", "deployments"), ns)
    ]:
        want = int(dep["spec"].get("replicas", 1))
        status = dep.get("status") or {}
        if int(status.get("readyReplicas", 0)) < want or int(status.get("replicas", 0)) != want:
            return False
    return len(mesh.app_pods()) == 4 and mesh.all_synced()


def yaml_docs(*docs: dict[str, Any]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)
