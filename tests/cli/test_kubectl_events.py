"""``get events`` and the Events section of ``describe``, against the shared real local cluster:
scaling a Deployment and a crash-looping pod show up as kubectl shows them."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.slow

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: example/sleeper
        command: ["python", "-c", "import time; time.sleep(3600)"]
---
apiVersion: v1
kind: Pod
metadata:
  name: crasher
  namespace: {ns}
spec:
  containers:
  - name: app
    image: example/crasher
    command: ["python", "-c", "raise SystemExit(2)"]
"""


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


def run_ok(cluster: Any, *args: str, input: str | None = None) -> str:
    result = cluster.cli(*args, input=input)
    assert result.exit_code == 0, f"meshpilot {' '.join(args)} failed ({result.exit_code}): {result.stderr}"
    return str(result.stdout)


@pytest.fixture(scope="module")
def ns(cluster: Any) -> Iterator[str]:
    name = f"events-{uuid.uuid4().hex[:6]}"
    run_ok(cluster, "apply", "-f", "-", input=MANIFEST.format(ns=name))
    run_ok(cluster, "rollout", "status", "deployment/web", "-n", name, "--timeout", "60s")
    run_ok(cluster, "scale", "deployment/web", "--replicas", "3", "-n", name)
    yield name
    cluster.cli("delete", "namespace", name, "--timeout", "60s")


def test_get_events_has_kubectls_columns(cluster: Any, ns: str) -> None:
    out = wait_for(
        lambda: (text := run_ok(cluster, "get", "events", "-n", ns)) and "to 3 from 1" in text and text
    )
    lines = out.splitlines()
    assert lines[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    scaled = [line for line in lines if "ScalingReplicaSet" in line]
    assert any(
        re.search(r"Normal\s+ScalingReplicaSet\s+deployment/web\s+Scaled up replica set web-\w+ to 1$", s)
        for s in scaled
    )
    assert any(re.search(r"deployment/web\s+Scaled up replica set web-\w+ to 3 from 1$", s) for s in scaled)
    assert any(
        re.search(r"Normal\s+SuccessfulCreate\s+replicaset/web-\w+\s+Created pod: web-", s) for s in lines
    )
    assert any(
        re.search(r"Normal\s+Scheduled\s+pod/crasher\s+Successfully assigned " + ns + "/crasher to", s)
        for s in lines
    )
    # -A adds the NAMESPACE column; ev is the short name
    every = run_ok(cluster, "get", "ev", "-A")
    assert every.splitlines()[0].split()[:3] == ["NAMESPACE", "LAST", "SEEN"]
    assert any(line.startswith(ns + " ") for line in every.splitlines())


def test_field_selector_picks_one_objects_events(cluster: Any, ns: str) -> None:
    def backoff() -> str:
        text = run_ok(cluster, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=crasher")
        return text if "BackOff" in text else ""

    out = wait_for(backoff)
    rows = out.splitlines()[1:]
    assert rows and all(" pod/crasher " in row for row in rows)
    assert any(
        re.search(
            r"Warning\s+BackOff\s+pod/crasher\s+Back-off restarting failed container app in pod crasher_", r
        )
        for r in rows
    )
    warnings = run_ok(
        cluster,
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        "involvedObject.name=crasher,type=Warning",
        "-o",
        "json",
    )
    items = json.loads(warnings)["items"]
    assert items and {e["type"] for e in items} == {"Warning"}
    assert all(e["involvedObject"]["name"] == "crasher" and e["count"] >= 1 for e in items)
    assert all(
        e["source"]["component"] == "kubelet" and e["firstTimestamp"] and e["lastTimestamp"] for e in items
    )


def test_describe_shows_the_objects_events(cluster: Any, ns: str) -> None:
    wait_for(lambda: "to 3 from 1" in run_ok(cluster, "get", "events", "-n", ns))
    deployment = run_ok(cluster, "describe", "deployment", "web", "-n", ns)
    section = deployment[deployment.index("\nEvents:") + 1 :].splitlines()
    assert section[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert any(
        re.search(
            r"Normal\s+ScalingReplicaSet\s+\S+\s+deployment-controller\s+Scaled up replica set web-\w+ to 3 from 1$",
            line,
        )
        for line in section
    )

    def crasher() -> str:
        text = run_ok(cluster, "describe", "pod", "crasher", "-n", ns)
        return text if "BackOff" in text and "(x" in text else ""

    pod = wait_for(crasher)
    section = pod[pod.index("\nEvents:") + 1 :].splitlines()
    assert any(
        re.search(r"Normal\s+Scheduled\s+\S+\s+default-scheduler\s+Successfully assigned", line)
        for line in section
    )
    # a repeated event shows its count, as kubectl does: "5s (x2 over 7s)"
    assert any(
        re.search(r"Normal\s+Started\s+\S+ \(x\d+ over \S+\)\s+kubelet\s+Started container app$", line)
        for line in section
    )
    assert any(
        re.search(
            r"Warning\s+BackOff\s+.*kubelet\s+Back-off restarting failed container app in pod crasher_", line
        )
        for line in section
    )


def test_a_bad_field_selector_is_one_clear_line(cluster: Any, ns: str) -> None:
    result = cluster.cli("get", "events", "-n", ns, "--field-selector", "involvedObject.name")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "field selector" in result.stderr.lower() or "selector" in result.stderr.lower()
    watched = cluster.cli("get", "events", "-n", ns, "-w", "--field-selector", "type=Warning")
    assert watched.exit_code == 1 and "--watch does not support --field-selector" in watched.stderr
