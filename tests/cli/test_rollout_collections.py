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


def test_history_and_undo_without_a_name_act_on_each_deployment(cluster: Any, ns: str) -> None:
    """Output checked against kubectl 1.32 on the same cluster: one block per Deployment for
    history; undo rolls back each one with history and reports the others after, exit 1."""
    restarted = cluster.cli("rollout", "restart", "deployment/alpha", "-n", ns)
    assert restarted.exit_code == 0, restarted.stderr
    status = cluster.cli("rollout", "status", "deployment", "-n", ns, "--timeout", "90s")
    assert status.exit_code == 0, status.stderr

    history = cluster.cli("rollout", "history", "deployment", "-n", ns)
    assert (history.exit_code, history.stderr) == (0, "")
    beta_revisions = [
        line.split()[0]
        for line in history.stdout.split("deployment.apps/beta \n")[1].splitlines()[1:]
        if line
    ]
    assert history.stdout == (
        "deployment.apps/alpha \nREVISION   CHANGE-CAUSE\n"
        + "".join(
            f"{r}          <none>\n" for r in _revisions(history.stdout.split("deployment.apps/beta")[0])
        )
        + "\ndeployment.apps/beta \nREVISION   CHANGE-CAUSE\n"
        + "".join(f"{r}          <none>\n" for r in beta_revisions)
        + "\n"
    )
    only = cluster.cli("rollout", "history", "deploy", "-n", ns, "-l", "tier=db")
    assert only.exit_code == 0 and only.stdout.startswith("deployment.apps/beta \n")
    assert "alpha" not in only.stdout
    nothing = cluster.cli("rollout", "history", "deployment", "-n", ns, "-l", "tier=none")
    assert (nothing.exit_code, nothing.stdout, nothing.stderr) == (0, "", "")

    alpha_before = cluster.client.get(("apps", "deployments"), "alpha", ns)["metadata"]["generation"]
    restarted_before = restarted_at(cluster, ns, "alpha")
    undo = cluster.cli("rollout", "undo", "deployment", "-n", ns, "-l", "tier=web")
    assert (undo.exit_code, undo.stdout, undo.stderr) == (0, "deployment.apps/alpha rolled back\n", "")
    assert cluster.client.get(("apps", "deployments"), "alpha", ns)["metadata"]["generation"] > alpha_before
    assert restarted_at(cluster, ns, "alpha") != restarted_before  # the template went back

    # gamma has one revision only: like kubectl, the others are still rolled back, gamma is an
    # error at the end
    added = cluster.cli("apply", "-f", "-", input=DEPLOYMENT.format(name="gamma", ns=ns, tier="solo"))
    assert added.exit_code == 0, added.stderr
    every = cluster.cli("rollout", "undo", "deployment", "-n", ns)
    assert every.exit_code == 1
    assert [line.split()[0] for line in every.stdout.splitlines()] == [
        "deployment.apps/alpha",
        "deployment.apps/beta",
    ]
    assert every.stderr == 'error: no rollout history found for deployment "gamma"\n'


def _revisions(block: str) -> list[str]:
    return [line.split()[0] for line in block.splitlines()[2:] if line.strip()]
