"""Every namespace carries ``kubernetes.io/metadata.name`` as on Kubernetes >= 1.21, whichever way it
was made (create, apply, ``create namespace``) and whatever a later update says."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from meshpilot.client import Client

LABEL = "kubernetes.io/metadata.name"


@pytest.fixture(scope="module")
def client(apiserver: Any) -> Iterator[Client]:
    with Client(apiserver.url, apiserver.token) as c:
        yield c


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def test_created_and_applied_namespaces_get_the_name_label(client: Client) -> None:
    created, applied = f"ns-{uuid.uuid4().hex[:8]}", f"ns-{uuid.uuid4().hex[:8]}"
    assert client.create(namespace(created))["metadata"]["labels"] == {LABEL: created}
    client.apply([namespace(applied, {"team": "catalog"})])
    assert client.get(("", "namespaces"), applied)["metadata"]["labels"] == {
        "team": "catalog",
        LABEL: applied,
    }
    found = client.list(("", "namespaces"), label_selector=f"{LABEL}={applied}")
    assert [n["metadata"]["name"] for n in found] == [applied]


def test_an_update_cannot_remove_or_change_the_name_label(client: Client) -> None:
    name = f"ns-{uuid.uuid4().hex[:8]}"
    client.create(namespace(name))
    client.patch(
        ("", "namespaces"), name, {"metadata": {"labels": {LABEL: None, "istio-injection": "enabled"}}}
    )
    labels = client.get(("", "namespaces"), name)["metadata"]["labels"]
    assert labels == {LABEL: name, "istio-injection": "enabled"}
    client.patch(("", "namespaces"), name, {"metadata": {"labels": {LABEL: "other"}}})
    assert client.get(("", "namespaces"), name)["metadata"]["labels"][LABEL] == name
