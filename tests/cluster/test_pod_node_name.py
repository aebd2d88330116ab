"""A pod is bound to the cluster's one node when it is created: ``get pods -o wide`` shows NODE (the
reference text's ``kubectl get pods -n istio-system -o wide``) and a field selector on
``spec.nodeName`` finds it, as after kube-scheduler's binding."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from meshpilot.client import Client
from meshpilot.cluster.events import NODE_NAME


@pytest.fixture(scope="module")
def client(apiserver: Any) -> Iterator[Client]:
    with Client(apiserver.url, apiserver.token) as c:
        yield c


def pod(name: str, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": "app", "image": "local", "command": ["python", "-c", "pass"]}]
    }
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def test_pods_are_bound_to_the_node_at_creation(client: Client) -> None:
    name = f"p-{uuid.uuid4().hex[:8]}"
    assert client.create(pod(name))["spec"]["nodeName"] == NODE_NAME == "meshpilot"
    found = client.list(
        ("", "pods"), "default", field_selector=f"spec.nodeName={NODE_NAME},metadata.name={name}"
    )
    assert [p["metadata"]["name"] for p in found] == [name]


def test_a_pod_that_names_its_node_keeps_it(client: Client) -> None:
    name = f"p-{uuid.uuid4().hex[:8]}"
    assert client.create(pod(name, node="elsewhere"))["spec"]["nodeName"] == "elsewhere"
