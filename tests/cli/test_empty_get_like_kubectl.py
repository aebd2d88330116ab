"""``get`` with nothing found says exactly what kubectl 1.30 says, on stdout and stderr.

kubectl prints ``No resources found in NS namespace.`` (``No resources found`` with ``-A``) on stderr
only for its human-readable printers (tables); ``-o name`` prints nothing at all, and ``-o json`` an
empty List. Checked here against real kubectl on the same cluster when it is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.slow

# (arguments after "get", expected stdout, expected stderr); {ns} is an empty namespace
CASES = [
    (("pods", "-n", "{ns}"), "", "No resources found in {ns} namespace.\n"),
    (("pods,svc", "-n", "{ns}"), "", "No resources found in {ns} namespace.\n"),
    (("pods", "-n", "{ns}", "-o", "wide"), "", "No resources found in {ns} namespace.\n"),
    (("pods", "-n", "{ns}", "-o", "name"), "", ""),
    (("pods,svc", "-n", "{ns}", "-o", "name"), "", ""),
    (("pods", "-n", "{ns}", "-l", "app=none", "-o", "name"), "", ""),
]


@pytest.fixture(scope="module")
def ns(cluster: Any) -> Iterator[str]:
    name = f"empty-{uuid.uuid4().hex[:6]}"
    cluster.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    cluster.client.delete("namespaces", name)


@pytest.mark.parametrize(("args", "stdout", "stderr"), CASES)
def test_meshpilot(cluster: Any, ns: str, args: tuple[str, ...], stdout: str, stderr: str) -> None:
    result = cluster.cli("get", *(a.format(ns=ns) for a in args))
    assert (result.exit_code, result.stdout, result.stderr) == (0, stdout, stderr.format(ns=ns))


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
@pytest.mark.parametrize(("args", "stdout", "stderr"), CASES)
def test_kubectl_says_the_same(
    cluster: Any, ns: str, args: tuple[str, ...], stdout: str, stderr: str
) -> None:
    env = dict(os.environ, KUBECONFIG=str(cluster.home / "kubeconfig"), HOME=str(cluster.home))
    done = subprocess.run(
        [str(KUBECTL), "--context", cluster.context, "get", *(a.format(ns=ns) for a in args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, stdout, stderr.format(ns=ns))
