"""The kubectl-style CLI against the shared real local cluster (``cluster`` fixture in tests/conftest.py).

The examples are applied once for the module (namespaces ``production`` and ``frontend``) and
deleted at the end; every check of what a command did is made through the API, not by trusting the
command's own output.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.slow


def wait_for(check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


def run_ok(cluster: Any, *args: str, input: str | None = None) -> str:
    result = cluster.cli(*args, input=input)
    assert result.exit_code == 0, f"meshpilot {' '.join(args)} failed ({result.exit_code}): {result.stderr}"
    return str(result.stdout)


@pytest.fixture(scope="module")
def examples(cluster: Any) -> Iterator[Any]:
    out = run_ok(cluster, "apply", "-f", str(EXAMPLES))
    lines = out.strip().splitlines()
    assert re.search(r"^deployment\.apps/productcatalog-v1 (created|configured|unchanged)$", out, re.M)
    assert re.search(r"^namespace/production (created|configured|unchanged)$", out, re.M)
    assert re.search(r"^service/productcatalog (created|configured|unchanged)$", out, re.M)
    assert re.search(
        r"^poddisruptionbudget\.policy/productcatalog (created|configured|unchanged)$", out, re.M
    )
    assert len(lines) == sum(
        1 for p in EXAMPLES.glob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d
    )
    for name in ("productcatalog-v1", "productcatalog-v2"):
        run_ok(cluster, "rollout", "status", f"deployment/{name}", "-n", "production", "--timeout", "90s")
    run_ok(cluster, "rollout", "status", "deployment/frontend", "-n", "frontend", "--timeout", "90s")
    try:
        yield cluster
    finally:
        result = cluster.cli("delete", "-f", str(EXAMPLES), "--ignore-not-found", "--timeout", "60s")
    # delete -f removes what apply -f created (dependents first, namespaces last) and waits for it.
    assert result.exit_code == 0, result.stderr
    assert 'deployment.apps "productcatalog-v1" deleted' in result.stdout
    assert result.stdout.strip().splitlines()[-1] in (
        'namespace "production" deleted',
        'namespace "frontend" deleted',
    )
    remaining = {n["metadata"]["name"] for n in cluster.client.list(("", "namespaces"))}
    assert not remaining & {"production", "frontend"}
    # The Deployments' pods go after them (garbage collection, graceful termination).
    wait_for(lambda: cluster.client.list(("", "pods"), "production") == [], timeout=60)


def test_reapplying_is_unchanged(examples: Any) -> None:
    out = run_ok(examples, "apply", "-f", str(EXAMPLES))
    assert out.strip().splitlines()
    assert all(line.endswith(" unchanged") for line in out.strip().splitlines()), out


def test_apply_from_stdin_and_single_file(examples: Any) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-stdin\n  namespace: frontend\ndata:\n  a: b\n"
    assert run_ok(examples, "apply", "-f", "-", input=cm).strip() == "configmap/from-stdin created"
    assert examples.client.get(("", "configmaps"), "from-stdin", "frontend")["data"] == {"a": "b"}
    changed = cm.replace("a: b", "a: c")
    assert run_ok(examples, "apply", "-f", "-", input=changed).strip() == "configmap/from-stdin configured"
    assert examples.client.get(("", "configmaps"), "from-stdin", "frontend")["data"] == {"a": "c"}
    assert run_ok(examples, "delete", "configmap", "from-stdin", "-n", "frontend").strip() == (
        'configmap "from-stdin" deleted'
    )


def test_get_pods_table(examples: Any) -> None:
    out = run_ok(examples, "get", "pods", "-n", "production")
    lines = out.strip().splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    pods = examples.client.list(("", "pods"), "production")
    assert len(lines) - 1 == len(pods)
    for line in lines[1:]:
        assert line.split()[1] == "1/1"
        assert line.split()[2] == "Running"
    wide = (
        run_ok(examples, "get", "po", "-n", "production", "-o", "wide", "-l", "version=v2")
        .strip()
        .splitlines()
    )
    assert wide[0].split()[-2:] == ["IP", "NODE"]
    v2 = [p for p in pods if p["metadata"]["labels"].get("version") == "v2"]
    assert len(wide) - 1 == len(v2)
    assert wide[1].split()[5] == v2[0]["status"]["podIP"]


def test_get_services_and_endpoints_as_in_the_reference_text(examples: Any) -> None:
    # kubectl get svc,endpoints -n production
    out = run_ok(examples, "get", "svc,endpoints", "-n", "production")
    svc_block, ep_block = out.strip().split("\n\n")
    svc = examples.client.get(("", "services"), "productcatalog", "production")
    assert svc_block.splitlines()[0].split() == [
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "AGE",
    ]
    assert svc_block.splitlines()[1].split()[:5] == [
        "service/productcatalog",
        "ClusterIP",
        svc["spec"]["clusterIP"],
        "<none>",
        "80/TCP",
    ]
    assert ep_block.splitlines()[0].split() == ["NAME", "ENDPOINTS", "AGE"]
    assert ep_block.splitlines()[1].startswith("endpoints/productcatalog")
    assert ":8080" in ep_block


def test_get_all_namespaces_and_cluster_scoped(examples: Any) -> None:
    out = run_ok(examples, "get", "deployments", "-A")
    header = out.splitlines()[0].split()
    assert header == ["NAMESPACE", "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert re.search(r"^production\s+productcatalog-v1\s+2/2\s+2\s+2\s", out, re.M)
    assert re.search(r"^frontend\s+frontend\s+1/1\s", out, re.M)
    ns = run_ok(examples, "get", "namespaces")
    assert re.search(r"^production\s+Active\s", ns, re.M)


def test_get_output_formats(examples: Any) -> None:
    as_json = json.loads(
        run_ok(examples, "get", "deploy", "productcatalog-v1", "-n", "production", "-o", "json")
    )
    assert as_json["kind"] == "Deployment" and as_json["metadata"]["name"] == "productcatalog-v1"
    as_list = yaml.safe_load(run_ok(examples, "get", "svc", "-n", "production", "-o", "yaml"))
    assert as_list["kind"] == "List" and [i["metadata"]["name"] for i in as_list["items"]] == [
        "productcatalog"
    ]
    names = run_ok(examples, "get", "deploy", "-n", "production", "-o", "name").split()
    assert names == ["deployment.apps/productcatalog-v1", "deployment.apps/productcatalog-v2"]
    # The reference text's jsonpath one-liner (no istio-proxy containers yet: empty output).
    template = '{.items[*].spec.containers[?(@.name=="istio-proxy")].image}'
    assert run_ok(examples, "get", "pods", "-n", "production", "-o", f"jsonpath={template}").strip() == ""
    images = run_ok(
        examples, "get", "pods", "-n", "production", "-o", "jsonpath={.items[*].spec.containers[0].image}"
    ).split()
    assert images and set(images) == {"python:3.11-slim"}
    cols = run_ok(
        examples,
        "get",
        "deploy",
        "-n",
        "production",
        "-o",
        "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas",
    )
    assert cols.splitlines()[0].split() == ["NAME", "REPLICAS"]
    assert "productcatalog-v2   1" in cols


def test_get_errors(examples: Any) -> None:
    missing = examples.cli("get", "deploy", "nope", "-n", "production")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == 'Error from server (NotFound): deployments.apps "nope" not found'
    unknown = examples.cli("get", "frobnicators")
    assert unknown.exit_code == 1
    assert unknown.stderr.strip() == 'error: the server doesn\'t have a resource type "frobnicators"'
    bad_output = examples.cli("get", "pods", "-o", "xml")
    assert bad_output.exit_code == 1 and bad_output.stderr.count("\n") == 1
    empty = examples.cli("get", "pods", "-n", "nothing-here")
    assert empty.exit_code == 0 and "No resources found in nothing-here namespace." in empty.stderr


def test_describe(examples: Any) -> None:
    out = run_ok(examples, "describe", "deployment", "productcatalog-v1", "-n", "production")
    assert "Name:" in out and "productcatalog-v1" in out
    assert "Replicas:     2 desired | 2 updated | 2 total | 2 available | 0 unavailable" in out
    assert "RollingUpdateStrategy: 0 max unavailable, 1 max surge" in out
    assert "Readiness:" in out and "/ready" in out
    pod = examples.client.list(("", "pods"), "production", label_selector="version=v2")[0]
    text = run_ok(examples, "describe", f"pod/{pod['metadata']['name']}", "-n", "production")
    assert f"IP:           {pod['status']['podIP']}" in text
    assert "Status:       Running" in text
    assert "Controlled By:" in text and "ReplicaSet/productcatalog-v2-" in text
    assert "Events:" in text
    svc = run_ok(examples, "describe", "svc", "productcatalog", "-n", "production")
    assert re.search(r"Endpoints:\s+127\.\d+\.\d+\.\d+:8080", svc)
    missing = examples.cli("describe", "pod", "nope", "-n", "production")
    assert missing.exit_code == 1 and "NotFound" in missing.stderr


def test_logs(examples: Any) -> None:
    pod = examples.client.list(("", "pods"), "production", label_selector="version=v2")[0]
    name = pod["metadata"]["name"]
    out = run_ok(examples, "logs", name, "-n", "production")
    assert f"productcatalog v2 ({name}) listening on http://{pod['status']['podIP']}:8080" in out
    assert (
        run_ok(examples, "logs", name, "-n", "production", "-c", "productcatalog", "--tail", "1").count("\n")
        <= 1
    )
    via_deploy = run_ok(examples, "logs", "deployment/productcatalog-v2", "-n", "production")
    assert "listening on" in via_deploy
    wrong = examples.cli("logs", name, "-n", "production", "-c", "nope")
    assert wrong.exit_code == 1 and "nope" in wrong.stderr and wrong.stderr.count("\n") == 1


def test_logs_follow_streams_new_lines(examples: Any) -> None:
    """``logs -f`` keeps printing: the frontend writes a line when it is signalled to drain, but here
    we only need the existing line to arrive on a live stream, then stop the follower."""
    pod = examples.client.list(("", "pods"), "frontend")[0]["metadata"]["name"]
    env = dict(os.environ, **examples.env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshpilot", "logs", "-f", pod, "-n", "frontend"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "listening on" in first
        time.sleep(0.3)
        assert proc.poll() is None  # still following
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def test_logs_previous_shows_the_instance_before_a_restart(cluster: Any) -> None:
    """``logs`` shows the current instance of a restarted container, ``logs -p`` the one before
    (with ``-f`` too: a previous instance has ended, so there is nothing to follow)."""
    name = f"relogger-{os.getpid()}"
    script = "import os; print('instance', os.getpid(), flush=True); raise SystemExit(1)"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": "local", "command": ["python", "-c", script]}]},
    }
    run_ok(cluster, "apply", "-f", "-", input=json.dumps(pod))
    try:

        def restarted() -> bool:
            statuses = cluster.client.get(("", "pods"), name, "default")["status"].get("containerStatuses")
            return bool(statuses) and int(statuses[0].get("restartCount", 0)) >= 1

        wait_for(restarted, timeout=30)
        previous = run_ok(cluster, "logs", name, "-p")
        assert re.fullmatch(r"instance \d+\n", previous), previous
        assert run_ok(cluster, "logs", name, "-p", "-f") == previous
        current = wait_for(lambda: run_ok(cluster, "logs", name), timeout=30)
        assert re.fullmatch(r"instance \d+\n", current) and current != previous, current
    finally:
        run_ok(cluster, "delete", "pod", name, "--ignore-not-found")


def test_scale(examples: Any) -> None:
    def replicas() -> int:
        return int(
            examples.client.get(("apps", "deployments"), "productcatalog-v2", "production")["spec"][
                "replicas"
            ]
        )

    def pods() -> int:
        return len(examples.client.list(("", "pods"), "production", label_selector="version=v2"))

    try:
        out = run_ok(examples, "scale", "deployment/productcatalog-v2", "-n", "production", "--replicas", "2")
        assert out.strip() == "deployment.apps/productcatalog-v2 scaled"
        assert replicas() == 2
        wait_for(lambda: pods() == 2)
        refused = examples.cli(
            "scale",
            "deploy",
            "productcatalog-v2",
            "-n",
            "production",
            "--replicas",
            "3",
            "--current-replicas",
            "5",
        )
        assert refused.exit_code == 1 and "Expected replicas to be 5, was 2" in refused.stderr
        assert replicas() == 2
        not_scalable = examples.cli("scale", "svc/productcatalog", "-n", "production", "--replicas", "3")
        assert not_scalable.exit_code == 1
    finally:
        run_ok(examples, "scale", "deploy", "productcatalog-v2", "-n", "production", "--replicas", "1")
    assert replicas() == 1
    wait_for(lambda: pods() == 1)


def test_label(examples: Any) -> None:
    def labels() -> dict[str, str]:
        return dict(
            examples.client.get(("", "services"), "productcatalog", "production")["metadata"]["labels"]
        )

    out = run_ok(
        examples, "label", "svc", "productcatalog", "-n", "production", "tier=backend", "team=catalog"
    )
    assert out.strip() == "service/productcatalog labeled"
    assert labels()["tier"] == "backend" and labels()["team"] == "catalog"
    refused = examples.cli("label", "svc/productcatalog", "-n", "production", "tier=web")
    assert refused.exit_code == 1
    assert refused.stderr.strip() == "error: 'tier' already has a value (backend), and --overwrite is false"
    assert labels()["tier"] == "backend"
    run_ok(examples, "label", "svc/productcatalog", "-n", "production", "tier=web", "--overwrite")
    assert labels()["tier"] == "web"
    out = run_ok(examples, "label", "svc/productcatalog", "-n", "production", "tier-", "team-")
    assert out.strip() == "service/productcatalog unlabeled"
    assert "tier" not in labels() and "team" not in labels() and labels()["app"] == "productcatalog"
    bad = examples.cli("label", "svc/productcatalog", "-n", "production", "bad key=x")
    assert bad.exit_code == 1 and "invalid label" in bad.stderr


def test_rollout_restart_status_history_undo(examples: Any) -> None:
    deploy = "deployment/productcatalog-v2"

    def template_annotations() -> dict[str, str]:
        dep = examples.client.get(("apps", "deployments"), "productcatalog-v2", "production")
        return dict(dep["spec"]["template"]["metadata"].get("annotations") or {})

    before = run_ok(examples, "rollout", "history", deploy, "-n", "production").strip().splitlines()
    assert before[0] == "deployment.apps/productcatalog-v2 "  # kubectl's header ends with a space
    assert before[1].split() == ["REVISION", "CHANGE-CAUSE"]
    revisions_before = [int(line.split()[0]) for line in before[2:]]

    out = run_ok(examples, "rollout", "restart", deploy, "-n", "production")
    assert out.strip() == "deployment.apps/productcatalog-v2 restarted"
    assert "kubectl.kubernetes.io/restartedAt" in template_annotations()
    status = run_ok(examples, "rollout", "status", deploy, "-n", "production", "--timeout", "90s")
    assert status.strip().splitlines()[-1] == 'deployment "productcatalog-v2" successfully rolled out'

    after = run_ok(examples, "rollout", "history", deploy, "-n", "production").strip().splitlines()
    revisions_after = [int(line.split()[0]) for line in after[2:]]
    assert max(revisions_after) == max(revisions_before) + 1

    out = run_ok(examples, "rollout", "undo", deploy, "-n", "production")
    assert out.strip() == "deployment.apps/productcatalog-v2 rolled back"
    assert "kubectl.kubernetes.io/restartedAt" not in template_annotations()
    run_ok(examples, "rollout", "status", deploy, "-n", "production", "--timeout", "90s")
    missing = examples.cli("rollout", "undo", deploy, "-n", "production", "--to-revision", "999")
    assert missing.exit_code == 1 and "unable to find specified revision 999" in missing.stderr


def test_rollout_status_times_out_clearly(examples: Any) -> None:
    """A Deployment whose pods never become ready: status reports progress, then times out."""
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "never-ready", "namespace": "frontend"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "never-ready"}},
            "template": {
                "metadata": {"labels": {"app": "never-ready"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "python:3.11-slim",
                            "command": ["python", "-m", "meshpilot.samples.productcatalog"],
                            "readinessProbe": {
                                "httpGet": {"path": "/nope", "port": 8080},
                                "periodSeconds": 1,
                            },
                        }
                    ]
                },
            },
        },
    }
    run_ok(examples, "apply", "-f", "-", input=yaml.safe_dump(doc))
    try:
        result = examples.cli("rollout", "status", "deploy/never-ready", "-n", "frontend", "--timeout", "3s")
        assert result.exit_code == 1
        assert 'Waiting for deployment "never-ready" rollout to finish' in result.stdout
        assert result.stderr.strip() == "error: timed out waiting for the condition"
    finally:
        run_ok(examples, "delete", "deploy", "never-ready", "-n", "frontend")


def test_create_and_delete_namespace(cluster: Any) -> None:
    out = run_ok(cluster, "create", "namespace", "cli-created")
    assert out.strip() == "namespace/cli-created created"
    assert cluster.client.get(("", "namespaces"), "cli-created")["metadata"]["name"] == "cli-created"
    again = cluster.cli("create", "namespace", "cli-created")
    assert again.exit_code == 1 and "AlreadyExists" in again.stderr
    bad = cluster.cli("create", "namespace", "Not_Valid")
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1
    run_ok(cluster, "delete", "namespace", "cli-created")
    missing = cluster.cli("delete", "namespace", "cli-created")
    assert missing.exit_code == 1 and "NotFound" in missing.stderr


def test_top_pods(examples: Any) -> None:
    result = examples.cli("top", "pods", "-n", "production")
    if result.exit_code != 0:
        # The runtime measures usage; the API server serves it under metrics.k8s.io when wired.
        assert result.stderr.startswith("error: Metrics API not available"), result.stderr
        pytest.skip("this cluster does not serve metrics.k8s.io yet")
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    names = {p["metadata"]["name"] for p in examples.client.list(("", "pods"), "production")}
    assert {line.split()[0] for line in lines[1:]} <= names
    for line in lines[1:]:
        assert re.fullmatch(r"\S+\s+\d+m\s+\d+Mi", line)
    per_container = run_ok(examples, "top", "pods", "-n", "production", "--containers").splitlines()
    assert per_container[0].split() == ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]


def test_unknown_context_is_one_line(cluster: Any) -> None:
    result = cluster.cli("--context", "no-such-context", "get", "pods")
    assert result.exit_code == 1
    assert "no-such-context" in result.stderr and result.stderr.count("\n") == 1
    result = cluster.cli("get", "pods", "--context", "no-such-context")
    assert result.exit_code == 1 and "no-such-context" in result.stderr


# --- bad input: rejected with file:line and path, nothing changed ------------------------------------

BAD_NS = "cli-bad-input"

VALID_CM = f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: would-be-created
  namespace: {BAD_NS}
data:
  a: b
"""

# case -> (document, what the error says after "file:line: ", line of the error inside the document)
BAD_DOCUMENTS: dict[str, tuple[str, str, int | None]] = {
    "malformed": (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: {BAD_NS}\ndata:\n  k: [unclosed\n",
        r"expected ',' or '\]'",
        None,
    ),
    "unknown-kind": (
        f"apiVersion: v1\nkind: Frobnicator\nmetadata:\n  name: x\n  namespace: {BAD_NS}\n",
        r"kind Frobnicator .*not served",
        2,
    ),
    "unknown-field": (
        f"apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n  namespace: {BAD_NS}\nspec:\n  portz:\n  - port: 80\n",
        r'spec\.portz: unknown field "portz"',
        7,
    ),
    "wrong-type": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n"
        f"  namespace: {BAD_NS}\nspec:\n  replicas: ten\n  selector:\n    matchLabels: {{app: x}}\n"
        "  template:\n    metadata:\n      labels: {app: x}\n    spec:\n      containers:\n"
        "      - {name: c, image: i}\n",
        r'spec\.replicas: expected .*integer.*"ten"',
        7,
    ),
    "missing-field": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n"
        f"  namespace: {BAD_NS}\nspec:\n  selector:\n    matchLabels: {{app: x}}\n"
        "  template:\n    metadata:\n      labels: {app: x}\n    spec:\n      containers:\n"
        "      - {image: i}\n",
        r"spec\.template\.spec\.containers\[0\]\.name: required",
        14,
    ),
    "duplicate": (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: would-be-created\n  namespace: {BAD_NS}\n",
        r"metadata\.name: .*defined twice",
        4,
    ),
    "selector-mismatch": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n"
        f"  namespace: {BAD_NS}\nspec:\n  selector:\n    matchLabels: {{app: x}}\n"
        "  template:\n    metadata:\n      labels: {app: y}\n    spec:\n      containers:\n"
        "      - {name: c, image: i}\n",
        r"spec\.(template\.metadata\.labels|selector).*(selector|match)",
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCUMENTS))
def test_bad_input_is_rejected_and_nothing_changes(cluster: Any, tmp_path: Path, case: str) -> None:
    """A valid Namespace and ConfigMap come first, then the bad document: nothing may be applied."""
    bad, message, line_in_doc = BAD_DOCUMENTS[case]
    prefix = f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {BAD_NS}\n---\n" + VALID_CM + "---\n"
    path = tmp_path / f"{case}.yaml"
    path.write_text(prefix + bad)
    namespaces_before = {n["metadata"]["name"] for n in cluster.client.list(("", "namespaces"))}
    result = cluster.cli("apply", "-f", str(path))
    assert result.exit_code == 1, result.stdout
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines, "no error printed"
    for line in lines:
        assert re.match(rf"{re.escape(str(path))}:\d+: ", line), line
    assert re.search(message, result.stderr), result.stderr
    if line_in_doc is not None:
        expected = prefix.count("\n") + line_in_doc
        assert f"{path}:{expected}: " in result.stderr, result.stderr
    namespaces_after = {n["metadata"]["name"] for n in cluster.client.list(("", "namespaces"))}
    assert namespaces_after == namespaces_before
    assert BAD_NS not in namespaces_after


def test_errors_from_several_files_are_all_reported(cluster: Any, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BAD_DOCUMENTS["unknown-field"][0])
    (tmp_path / "b.yaml").write_text(BAD_DOCUMENTS["wrong-type"][0])
    (tmp_path / "c.yaml").write_text(VALID_CM.replace(BAD_NS, "default"))
    result = cluster.cli("apply", "-f", str(tmp_path))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(str(tmp_path / "a.yaml") + ":7: spec.portz")
    assert lines[1].startswith(str(tmp_path / "b.yaml") + ":7: spec.replicas")
    missing = cluster.cli("get", "configmap", "would-be-created", "-n", "default")
    assert missing.exit_code == 1


def test_duplicates_across_files_and_namespace_mismatch(cluster: Any, tmp_path: Path) -> None:
    cm = VALID_CM.replace(BAD_NS, "default")
    (tmp_path / "one.yaml").write_text(cm)
    (tmp_path / "two.yaml").write_text(cm)
    result = cluster.cli("apply", "-f", str(tmp_path / "one.yaml"), "-f", str(tmp_path / "two.yaml"))
    assert result.exit_code == 1
    assert str(tmp_path / "two.yaml") + ":" in result.stderr and "one.yaml" in result.stderr
    mismatch = cluster.cli("apply", "-f", str(tmp_path / "one.yaml"), "-n", "kube-system")
    assert mismatch.exit_code == 1
    assert 'the namespace from the provided object "default" does not match the namespace "kube-system"' in (
        mismatch.stderr
    )
    nothing = cluster.cli("apply", "-f", str(tmp_path / "nope.yaml"))
    assert nothing.exit_code == 1 and "does not exist" in nothing.stderr
    assert cluster.cli("get", "configmap", "would-be-created", "-n", "default").exit_code == 1


ISTIO_NS = "cli-istio"
ISTIO_DOCS = f"""apiVersion: v1
kind: Namespace
metadata:
  name: {ISTIO_NS}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: productcatalog
  namespace: {ISTIO_NS}
spec:
  host: productcatalog.production.svc.cluster.local
  subsets:
  - name: v1
    labels: {{version: v1}}
  - name: v2
    labels: {{version: v2}}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: productcatalog
  namespace: {ISTIO_NS}
spec:
  hosts: [productcatalog.production.svc.cluster.local]
  http:
  - route:
    - destination: {{host: productcatalog.production.svc.cluster.local, subset: v1}}
      weight: 90
    - destination: {{host: productcatalog.production.svc.cluster.local, subset: v2}}
      weight: 10
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: remote-service
  namespace: {ISTIO_NS}
spec:
  hosts: [productcatalog.prod.svc.cluster.local]
  location: MESH_EXTERNAL
  ports:
  - {{number: 80, name: http, protocol: HTTP}}
  resolution: DNS
"""


def test_istio_kinds(cluster: Any, tmp_path: Path) -> None:
    path = tmp_path / "istio.yaml"
    path.write_text(ISTIO_DOCS)
    dry = run_ok(cluster, "apply", "-f", str(path), "--dry-run", "client")
    assert "virtualservice.networking.istio.io/productcatalog created (dry run)" in dry
    with pytest.raises(Exception, match=r"not found"):
        cluster.client.get(("networking.istio.io", "virtualservices"), "productcatalog", ISTIO_NS)
    server_dry = run_ok(cluster, "apply", "-f", str(path), "--dry-run", "server")
    assert "destinationrule.networking.istio.io/productcatalog created (server dry run)" in server_dry
    assert ISTIO_NS not in {n["metadata"]["name"] for n in cluster.client.list(("", "namespaces"))}
    out = run_ok(cluster, "apply", "-f", str(path))
    assert "virtualservice.networking.istio.io/productcatalog created" in out
    try:
        vs = run_ok(cluster, "get", "vs", "-n", ISTIO_NS).splitlines()
        assert vs[0].split() == ["NAME", "GATEWAYS", "HOSTS", "AGE"]
        assert vs[1].split()[:2] == ["productcatalog", '["productcatalog.production.svc.cluster.local"]']
        both = run_ok(cluster, "get", "vs,dr", "-n", ISTIO_NS)
        assert "virtualservice.networking.istio.io/productcatalog" in both
        assert re.search(
            r"destinationrule\.networking\.istio\.io/productcatalog\s+productcatalog\.production", both
        )
        se = run_ok(cluster, "get", "serviceentries.networking.istio.io", "-n", ISTIO_NS).splitlines()
        assert se[0].split() == ["NAME", "HOSTS", "LOCATION", "RESOLUTION", "AGE"]
        assert se[1].split()[2:4] == ["MESH_EXTERNAL", "DNS"]
        weights = run_ok(
            cluster,
            "get",
            "vs",
            "productcatalog",
            "-n",
            ISTIO_NS,
            "-o",
            "jsonpath={.spec.http[0].route[*].weight}",
        )
        assert weights.strip() == "90 10"
        text = run_ok(cluster, "describe", "vs", "productcatalog", "-n", ISTIO_NS)
        assert "Kind:         VirtualService" in text and "Weight:  90" in text and "Subset:  v2" in text
        deleted = run_ok(cluster, "delete", "vs,dr", "--all", "-n", ISTIO_NS)
        assert 'virtualservice.networking.istio.io "productcatalog" deleted' in deleted
        assert 'destinationrule.networking.istio.io "productcatalog" deleted' in deleted
        assert cluster.client.list(("networking.istio.io", "virtualservices"), ISTIO_NS) == []
    finally:
        cluster.cli("delete", "-f", str(path), "--ignore-not-found")


def test_get_watch_prints_changes(cluster: Any) -> None:
    ns = "cli-watch"
    run_ok(cluster, "create", "namespace", ns)
    env = dict(os.environ, **cluster.env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshpilot", "get", "configmaps", "-n", ns, "-w"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        # The watch is established once the (empty) listing has been reported on stderr.
        assert proc.stderr is not None and proc.stdout is not None
        assert "No resources found" in proc.stderr.readline()
        run_ok(cluster, "create", "namespace", "cli-watch-unrelated")
        doc = (
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\n  namespace: {ns}\ndata:\n  a: b\n"
        )
        run_ok(cluster, "apply", "-f", "-", input=doc)
        line = proc.stdout.readline()
        assert line.split()[:2] == ["watched", "1"], line
        run_ok(cluster, "delete", "configmap", "watched", "-n", ns)
        line = proc.stdout.readline()
        assert line.split()[0] == "watched" and line.rstrip().endswith("DELETED"), line
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        cluster.cli("delete", "namespace", ns, "cli-watch-unrelated", "--ignore-not-found")


def test_reference_text_sidecar_image_one_liner(cluster: Any) -> None:
    """kubectl get pods -n production -o jsonpath='{.items[*].spec.containers[?(@.name=="istio-proxy")].image}'
    on a namespace labelled for injection lists the injected sidecar's image."""
    ns = "cli-injected"
    run_ok(cluster, "create", "namespace", ns)
    try:
        assert run_ok(cluster, "label", "namespace", ns, "istio-injection=enabled").strip() == (
            f"namespace/{ns} labeled"
        )
        doc = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "pc", "namespace": ns, "labels": {"app": "pc"}},
            "spec": {
                "containers": [
                    {
                        "name": "pc",
                        "image": "python:3.11-slim",
                        "command": ["python", "-m", "meshpilot.samples.productcatalog"],
                        "ports": [{"containerPort": 8080}],
                    }
                ]
            },
        }
        run_ok(cluster, "apply", "-f", "-", input=yaml.safe_dump(doc))
        template = '{.items[*].spec.containers[?(@.name=="istio-proxy")].image}'
        images = run_ok(cluster, "get", "pods", "-n", ns, "-o", f"jsonpath='{template}'").split()
        pod = cluster.client.get(("", "pods"), "pc", ns)
        expected = [c["image"] for c in pod["spec"]["containers"] if c["name"] == "istio-proxy"]
        assert expected and images == expected
        assert run_ok(cluster, "get", "pods", "-n", ns).splitlines()[1].split()[1].endswith("/2")
    finally:
        cluster.cli("delete", "namespace", ns, "--timeout", "60s")


def test_reference_text_shell_idioms(examples: Any) -> None:
    # for deploy in $(kubectl get deployments -n production -o name); do kubectl rollout ... $deploy; done
    for name in run_ok(examples, "get", "deployments", "-n", "production", "-o", "name").split():
        assert name.startswith("deployment.apps/")
        out = run_ok(examples, "rollout", "status", name, "-n", "production", "--timeout", "60s")
        assert out.strip().endswith("successfully rolled out")
    # kubectl get pods -n production --no-headers | wc -l
    rows = run_ok(examples, "get", "pods", "-n", "production", "--no-headers").strip().splitlines()
    assert len(rows) == len(examples.client.list(("", "pods"), "production"))
    assert not rows[0].startswith("NAME")
    # kubectl get peerauthentication,authorizationpolicy -A (none yet)
    none = examples.cli("get", "peerauthentication,authorizationpolicy", "-A")
    assert none.exit_code == 0 and none.stdout == "" and "No resources found" in none.stderr
    # kubectl get $secret -n $ns -o jsonpath=... with $secret from `-o name`
    sa = run_ok(examples, "get", "serviceaccount", "-n", "frontend", "-o", "name").split()
    assert "serviceaccount/frontend-service" in sa
    got = run_ok(
        examples,
        "get",
        "serviceaccount/frontend-service",
        "-n",
        "frontend",
        "-o",
        "jsonpath={.metadata.name}",
    )
    assert got.strip() == "frontend-service"


def _stubborn_pod(cluster: Any, name: str) -> None:
    """A pod whose process ignores SIGTERM and asks for 30 s to terminate."""
    ignore_term = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    cluster.client.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "terminationGracePeriodSeconds": 30,
                "containers": [
                    {"name": "main", "image": "local", "command": [sys.executable, "-c", ignore_term]}
                ],
            },
        }
    )


def test_delete_grace_period_and_force_like_kubectl(cluster: Any) -> None:
    pods = ("", "pods")
    _stubborn_pod(cluster, "grace-seven")
    _stubborn_pod(cluster, "grace-zero")
    _stubborn_pod(cluster, "forced")
    try:
        out = run_ok(cluster, "delete", "pod", "grace-seven", "--grace-period", "7", "--no-wait")
        assert out.strip() == 'pod "grace-seven" deleted'
        assert cluster.client.get(pods, "grace-seven")["metadata"]["deletionGracePeriodSeconds"] == 7
        # kubectl turns a bare --grace-period=0 into 1: only --force skips termination
        run_ok(cluster, "delete", "pod", "grace-zero", "--grace-period=0", "--no-wait")
        zero = cluster.client.get(pods, "grace-zero", "default") if _exists(cluster, "grace-zero") else None
        assert zero is None or zero["metadata"]["deletionGracePeriodSeconds"] == 1
        started = time.monotonic()
        forced = cluster.cli("delete", "pod", "forced", "--force", "--grace-period=0")
        assert forced.exit_code == 0, forced.stderr
        assert forced.stdout.strip() == 'pod "forced" deleted'
        assert forced.stderr.startswith(
            "Warning: Immediate deletion does not wait for confirmation that the running resource has been"
            " terminated."
        )
        assert not _exists(cluster, "forced") and time.monotonic() - started < 10
        bad = cluster.cli("delete", "pod", "grace-seven", "--grace-period", "-5")
        assert bad.exit_code == 1 and "--grace-period" in bad.stderr and bad.stderr.count("\n") == 1
    finally:
        for name in ("grace-seven", "grace-zero", "forced"):
            cluster.cli("delete", "pod", name, "--force", "--ignore-not-found", "--no-wait")


def _exists(cluster: Any, name: str) -> bool:
    from meshpilot.client import ApiError

    try:
        cluster.client.get(("", "pods"), name, "default")
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True
