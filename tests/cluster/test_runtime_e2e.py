"""The runtime and controllers inside the real daemon (the shared ``cluster`` fixture): a Deployment
behind a Service reached through its ClusterIP, ``top pods`` from the runtime's measurements,
``logs`` from the container's log file, and eviction through the API honouring a budget."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from _localcluster import APP, http_get_retry

pytestmark = pytest.mark.slow

NS = "rt-e2e"


def manifests() -> list[dict[str, Any]]:
    labels = {"app": "echo"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "echo", "namespace": NS},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 5,
                        "containers": [
                            {
                                "name": "app",
                                "image": "test/app",
                                "command": ["python", APP],
                                "env": [{"name": "VERSION", "value": "e2e"}],
                                "ports": [{"name": "http", "containerPort": 8080}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": "http"},
                                    "periodSeconds": 1,
                                },
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "echo", "namespace": NS},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "echo", "namespace": NS},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": labels}},
        },
    ]


def wait(predicate: Any, timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_deployment_service_top_logs_and_eviction(cluster: Any) -> None:
    client = cluster.client
    client.apply(manifests())
    try:

        def available() -> bool:
            status = client.get("deployments", "echo", NS).get("status") or {}
            return status.get("availableReplicas") == 2

        wait(available, what="2 available replicas")
        service = client.get("services", "echo", NS)
        ip = service["spec"]["clusterIP"]
        assert ip.startswith(f"127.{cluster.info.index}.")
        status, body = asyncio.run(http_get_retry(ip, 80, "/"))
        assert status == 200 and json.loads(body)["version"] == "e2e"

        name = client.list("pods", NS)[0]["metadata"]["name"]
        top = cluster.cli("top", "pods", "-n", NS)
        assert top.exit_code == 0, top.stderr
        assert name in top.stdout and "Mi" in top.stdout, top.stdout
        logs = cluster.cli("logs", name, "-n", NS)
        assert logs.exit_code == 0 and "listening" in logs.stdout, logs.stdout + logs.stderr
        # maxUnavailable 0: the budget allows no voluntary disruption
        from meshpilot.client import ApiError

        with pytest.raises(ApiError) as refused:
            client.evict(name, NS)
        assert refused.value.status == 429
    finally:
        client.delete("namespaces", NS)
