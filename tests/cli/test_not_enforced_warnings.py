"""Config the local mesh stores but does not act on draws Kubernetes ``Warning`` headers.

On the shared real cluster (``cluster`` fixture): ``meshpilot apply`` prints them on stderr as
kubectl does, the client hands them to its handler, and real kubectl prints them too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from meshpilot.client import Client

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.slow

# the reference text's section 6.2 policy, in a namespace of its own
DEFAULT_DENY = """\
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: default-deny
  namespace: {ns}
spec: {{}}
"""

VIRTUAL_SERVICE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: productcatalog
  namespace: {ns}
spec:
  hosts: [productcatalog]
  http:
  - route:
    - destination: {{host: productcatalog}}
"""

EXPECTED = (
    "Warning: AuthorizationPolicy {ns}/default-deny is stored but not enforced: "
    "meshpilot's sidecars do not implement authorization yet"
)


@pytest.fixture()
def ns(cluster: Any) -> Iterator[str]:
    name = f"warn-{uuid.uuid4().hex[:6]}"
    cluster.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    cluster.client.delete("namespaces", name)


def test_apply_prints_the_warning_on_stderr_and_still_stores(cluster: Any, ns: str) -> None:
    result = cluster.cli(
        "apply", "-f", "-", input=DEFAULT_DENY.format(ns=ns) + "---\n" + VIRTUAL_SERVICE.format(ns=ns)
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "authorizationpolicy.security.istio.io/default-deny created",
        "virtualservice.networking.istio.io/productcatalog created",
    ]
    assert result.stderr.splitlines() == [EXPECTED.format(ns=ns)]
    assert cluster.client.get("authorizationpolicies", "default-deny", ns)["spec"] == {}

    # re-applying is still not enforced; a kind that works never warns
    again = cluster.cli("apply", "-f", "-", input=DEFAULT_DENY.format(ns=ns))
    assert (again.exit_code, again.stdout.strip(), again.stderr.strip()) == (
        0,
        "authorizationpolicy.security.istio.io/default-deny unchanged",
        EXPECTED.format(ns=ns),
    )
    vs = cluster.cli("apply", "-f", "-", input=VIRTUAL_SERVICE.format(ns=ns))
    assert (vs.exit_code, vs.stderr) == (0, "")

    # an update through another verb warns too (PATCH)
    labelled = cluster.cli("label", "authorizationpolicy", "default-deny", "-n", ns, "team=a")
    assert labelled.exit_code == 0, labelled.stderr
    assert labelled.stderr.splitlines() == [EXPECTED.format(ns=ns)]


def test_client_hands_warnings_to_its_handler(cluster: Any, ns: str) -> None:
    seen: list[str] = []
    with Client(cluster.info.server, cluster.info.token) as client:
        client.on_warning = seen.append
        client.create(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "Sidecar",
                "metadata": {"name": "default", "namespace": ns},
                "spec": {"ingress": [{"port": {"number": 9080, "protocol": "HTTP", "name": "http"}}]},
            }
        )
        assert seen == [
            f"Sidecar {ns}/default: spec.ingress is stored but not enforced: "
            "inbound listeners come from the pod's container ports"
        ]
        client.get("sidecars", "default", ns)
        assert len(seen) == 1  # reads do not warn


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_real_kubectl_prints_our_warning(cluster: Any, ns: str) -> None:
    env = dict(os.environ, KUBECONFIG=str(cluster.home / "kubeconfig"), HOME=str(cluster.home))
    done = subprocess.run(
        [str(KUBECTL), "--context", cluster.context, "apply", "--validate=false", "-f", "-"],
        input=DEFAULT_DENY.format(ns=ns),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "authorizationpolicy.security.istio.io/default-deny created" in done.stdout
    assert EXPECTED.format(ns=ns) in done.stderr.splitlines()
