"""kubectl itself works against a local cluster: the kubeconfig's HTTPS address, CA and token.

client-go sends bearer tokens only over TLS, which is why the kubeconfig names the API's HTTPS
port. Skipped when kubectl is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from typing import Any

import pytest

KUBECTL = shutil.which("kubectl")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")]


def kubectl(cluster: Any, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=str(cluster.home / "kubeconfig"), HOME=str(cluster.home))
    return subprocess.run(
        [str(KUBECTL), "--context", cluster.context, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_kubectl_get_apply_delete(cluster: Any) -> None:
    namespaces = kubectl(cluster, "get", "namespaces", "-o", "name")
    assert namespaces.returncode == 0, namespaces.stderr
    assert "namespace/default" in namespaces.stdout.split()

    ns = f"kubectl-{uuid.uuid4().hex[:6]}"
    manifest = f"""
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: {ns}
data:
  mode: canary
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: productcatalog
  namespace: {ns}
spec:
  hosts: [productcatalog]
  http:
  - route:
    - destination: {{host: productcatalog, subset: v1}}
      weight: 90
    - destination: {{host: productcatalog, subset: v2}}
      weight: 10
"""
    # kubectl's client-side schema check needs OpenAPI documents we do not publish; the server
    # validates every write strictly anyway.
    applied = kubectl(cluster, "apply", "--validate=false", "-f", "-", input=manifest)
    assert applied.returncode == 0, applied.stderr
    assert f"namespace/{ns} created" in applied.stdout
    assert "virtualservice.networking.istio.io/productcatalog created" in applied.stdout
    again = kubectl(cluster, "apply", "--validate=false", "-f", "-", input=manifest)
    assert "configmap/settings unchanged" in again.stdout

    vs = json.loads(kubectl(cluster, "get", "vs", "productcatalog", "-n", ns, "-o", "json").stdout)
    assert [r["weight"] for r in vs["spec"]["http"][0]["route"]] == [90, 10]

    table = kubectl(cluster, "get", "vs,svc", "-n", ns)
    assert table.returncode == 0, table.stderr
    assert table.stdout.split()[:4] == ["NAME", "GATEWAYS", "HOSTS", "AGE"]  # Istio's printer columns
    assert "[productcatalog]" in table.stdout

    bad = manifest.replace("weight: 10", "weight: ten")
    refused = kubectl(cluster, "apply", "--validate=false", "-f", "-", input=bad)
    assert refused.returncode != 0
    assert 'spec.http[0].route[1].weight: expected integer 0..100, got "ten"' in refused.stderr

    deleted = kubectl(cluster, "delete", "namespace", ns)
    assert deleted.returncode == 0, deleted.stderr
    gone = kubectl(cluster, "get", "configmap", "settings", "-n", ns)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_kubectl_reads_events_and_waits_for_namespace_termination(cluster: Any) -> None:
    import time

    ns = f"kev-{uuid.uuid4().hex[:6]}"
    client = cluster.client
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    client.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "crasher", "namespace": ns},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {"name": "app", "image": "x", "command": ["python", "-c", "raise SystemExit(2)"]}
                ],
            },
        }
    )
    deadline = time.monotonic() + 30
    while True:
        listed = kubectl(cluster, "get", "events", "-n", ns)
        if "BackOff" in listed.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert any(
        line.split()[1:4] == ["Warning", "BackOff", "pod/crasher"] for line in listed.stdout.splitlines()
    )
    # kubectl describe asks for the pod's events with a field selector on involvedObject
    described = kubectl(cluster, "describe", "pod", "crasher", "-n", ns)
    assert described.returncode == 0, described.stderr
    events = described.stdout[described.stdout.index("\nEvents:") :]
    assert "default-scheduler" in events and "Back-off restarting failed container app" in events
    deleted = kubectl(cluster, "delete", "namespace", ns, "--timeout=60s")
    assert deleted.returncode == 0, deleted.stderr
    gone = kubectl(cluster, "get", "namespace", ns)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
