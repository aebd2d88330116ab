"""Namespace termination on a real cluster daemon: a deleted namespace stays Terminating while a
pod with a slow shutdown drains, refuses new content with 403, and goes once it is empty."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import psutil
import pytest
from _localcluster import APP

from meshpilot.client import ApiError

NAMESPACES = ("", "namespaces")
PODS = ("", "pods")
CONFIGMAPS = ("", "configmaps")


def wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def gone(client: Any, resource: Any, name: str, namespace: str | None = None) -> bool:
    try:
        client.get(resource, name, namespace)
    except ApiError as exc:
        return exc.status == 404
    return False


def slow_pod(namespace: str, term_delay: float) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "drainer", "namespace": namespace, "labels": {"app": "drainer"}},
        "spec": {
            "terminationGracePeriodSeconds": 30,
            "containers": [
                {
                    "name": "app",
                    "image": "test/app",
                    "command": ["python", APP, "--term-delay", str(term_delay)],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
                }
            ],
        },
    }


def ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


def test_namespace_stays_terminating_until_its_pods_are_gone(cluster: Any) -> None:
    client = cluster.client
    ns = f"term-{uuid.uuid4().hex[:6]}"
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    client.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns}}
    )
    client.create(slow_pod(ns, term_delay=4.0))
    pod = wait(lambda: (p := client.get(PODS, "drainer", ns)) and ready(p) and p, 30, "pod ready")
    pid = int(pod["status"]["containerStatuses"][0]["containerID"].split("//")[1].split("-")[0])
    assert psutil.pid_exists(pid)

    answered = client.delete(NAMESPACES, ns)
    assert answered["metadata"].get("deletionTimestamp")
    assert answered["status"]["phase"] == "Terminating"
    assert "kubernetes" in answered["spec"]["finalizers"]

    # while the pod drains: the namespace is Terminating, its other content is gone
    current = client.get(NAMESPACES, ns)
    assert current["status"]["phase"] == "Terminating"
    assert gone(client, CONFIGMAPS, "settings", ns)
    assert client.get(PODS, "drainer", ns)["metadata"].get("deletionTimestamp")
    remaining = wait(
        lambda: next(
            (
                c
                for c in client.get(NAMESPACES, ns).get("status", {}).get("conditions") or []
                if c["type"] == "NamespaceContentRemaining"
            ),
            None,
        ),
        10,
        "NamespaceContentRemaining condition",
    )
    assert remaining["status"] == "True" and "pods. has 1 resource instances" in remaining["message"]
    with pytest.raises(ApiError) as refused:
        client.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late", "namespace": ns}}
        )
    assert refused.value.status == 403 and refused.value.reason == "Forbidden"
    assert (
        f"unable to create new content in namespace {ns} because it is being terminated"
        in refused.value.message
    )
    table = cluster.cli("get", "namespace", ns)
    assert table.exit_code == 0 and table.stdout.split()[3:5] == [ns, "Terminating"]
    # deleting it again changes nothing
    assert client.delete(NAMESPACES, ns)["status"]["phase"] == "Terminating"

    # the pod finishes its shutdown; then the namespace goes
    wait(lambda: gone(client, NAMESPACES, ns), 30, "namespace gone")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert all(n["metadata"]["name"] != ns for n in client.list(NAMESPACES))
    # and the name can be used again
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    client.delete(NAMESPACES, ns)
    wait(lambda: gone(client, NAMESPACES, ns), 10, "empty namespace gone")


def test_a_namespace_without_pods_goes_at_once(cluster: Any) -> None:
    client = cluster.client
    ns = f"quick-{uuid.uuid4().hex[:6]}"
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ns}})
    client.delete(NAMESPACES, ns)
    assert gone(client, NAMESPACES, ns) and gone(client, CONFIGMAPS, "c", ns)


def test_the_cli_waits_for_a_terminating_namespace(cluster: Any) -> None:
    client = cluster.client
    ns = f"cliterm-{uuid.uuid4().hex[:6]}"
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    client.create(slow_pod(ns, term_delay=1.5))
    wait(lambda: ready(client.get(PODS, "drainer", ns)), 30, "pod ready")
    started = time.monotonic()
    result = cluster.cli("delete", "namespace", ns, "--timeout", "30s")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f'namespace "{ns}" deleted'
    assert time.monotonic() - started >= 1.0  # it waited for the pod's shutdown
    assert gone(client, NAMESPACES, ns)


def test_deleting_namespaces_by_selector_terminates_each_and_spares_protected_ones(cluster: Any) -> None:
    client = cluster.client
    tag = uuid.uuid4().hex[:6]
    names = [f"bulk-{tag}-{i}" for i in range(2)]
    for name in names:
        client.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"bulk": tag}}}
        )
        client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": name}})
    client.patch(NAMESPACES, "default", {"metadata": {"labels": {"bulk": tag}}})
    try:
        answer = client.request("DELETE", "/api/v1/namespaces", params={"labelSelector": f"bulk={tag}"})
        assert answer.status_code == 200
        assert sorted(i["metadata"]["name"] for i in answer.json()["items"]) == names
        for name in names:
            assert gone(client, NAMESPACES, name) and gone(client, CONFIGMAPS, "c", name)
        assert client.get(NAMESPACES, "default")["metadata"]["name"] == "default"
    finally:
        client.patch(NAMESPACES, "default", {"metadata": {"labels": {"bulk": None}}})
