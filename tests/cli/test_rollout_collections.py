"""``rollout restart|status deployment -n NS`` without a name acts on every Deployment of the
namespace, as kubectl (checked against kubectl 1.30) does; on the shared real cluster."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from meshpilot.api.rollout import RESTARTED_AT

pytestmark = pytest.mark.slow

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}, labels: {{tier: {tier}}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: sleeper
        command: ["python", "-c", "import time; time.sleep(3600)"]
"""


def restarted_at(cluster: Any, ns: str, name: str) -> str | None:
    dep = cluster.client.get(("apps", "deployments"), name, ns)
    return (dep["spec"]["template"]["metadata"].get("annotations") or {}).get(RESTARTED_AT)


@pytest.fixture(scope="module")
def ns(cluster: Any) -> Iterator[str]:
    name = f"rollouts-{uuid.uuid4().hex[:6]}"
    cluster.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    docs = "---\n".join(
        DEPLOYMENT.format(name=n, ns=name, tier=t) for n, t in (("alpha", "web"), ("beta", "db"))
    )
    applied = cluster.cli("apply", "-f", "-", input=docs)
    assert applied.exit_code == 0, applied.stderr
    yield name
    cluster.client.delete("namespaces", name)


def test_restart_without_a_name_restarts_every_deployment(cluster: Any, ns: str) -> None:
    assert restarted_at(cluster, ns, "alpha") is None and restarted_at(cluster, ns, "beta") is None
    result = cluster.cli("rollout", "restart", "deployment", "-n", ns)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.splitlines() == ["deployment.apps/alpha restarted", "deployment.apps/beta restarted"]
    first = {n: restarted_at(cluster, ns, n) for n in ("alpha", "beta")}
    assert all(first.values()), first

    # -l narrows it down, as kubectl's --selector
    time.sleep(1.1)  # restartedAt has a one-second resolution
    only = cluster.cli("rollout", "restart", "deploy", "-n", ns, "-l", "tier=db")
    assert (only.exit_code, only.stdout.strip()) == (0, "deployment.apps/beta restarted")
    assert restarted_at(cluster, ns, "alpha") == first["alpha"]
    assert restarted_at(cluster, ns, "beta") != first["beta"]

    both = cluster.cli("rollout", "restart", "deployment", "beta", "-n", ns, "-l", "tier=db")
    assert (both.exit_code, both.stderr.strip()) == (
        1,
        "error: name cannot be provided when a selector is specified",
    )


def test_status_without_a_name_waits_for_each(cluster: Any, ns: str) -> None:
    result = cluster.cli("rollout", "status", "deployment", "-n", ns, "--timeout", "90s")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == 'deployment "beta" successfully rolled out'
    assert 'deployment "alpha" successfully rolled out' in result.stdout.splitlines()


def test_nothing_to_restart_is_not_an_error(cluster: Any) -> None:
    result = cluster.cli("rollout", "restart", "deployment", "-n", "kube-public")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "",
        "No resources found in kube-public namespace.\n",
    )
    status = cluster.cli("rollout", "status", "deployment", "-n", "kube-public")
    assert (status.exit_code, status.stderr) == (0, "No resources found in kube-public namespace.\n")
