"""The reference text's commands, as a user of it types them against meshpilot (docs/seed-coverage.md).

Each test is one command line of the text (or its meshpilot equivalent) whose output a script or a
reader relies on: the shape `jq` walks, the filter istioctl offers, the way a load test reaches a
Service inside the cluster.
"""

from __future__ import annotations

import json

from e2e_mesh import CATALOG_HOST, Mesh


def test_proxy_config_bootstrap_json_is_istioctls_bootstrap_config_dump(mesh: Mesh) -> None:
    # 7.3: istioctl proxy-config bootstrap POD -o json | jq ...  -- istioctl prints the whole
    # BootstrapConfigDump, so scripts walk `.bootstrap.<field>`
    pod = mesh.frontend
    target = f"{pod['metadata']['name']}.frontend"
    result = mesh.cli("proxy-config", "bootstrap", target, "-o", "json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert "@type" not in doc
    assert doc["bootstrap"]["node"]["id"].startswith(f"sidecar~{pod['status']['podIP']}~")
    same = mesh.cli("proxy-config", "bootstrap", pod["metadata"]["name"], "-n", "frontend")
    assert same.exit_code == 0 and json.loads(same.stdout)["bootstrap"]["node"] == doc["bootstrap"]["node"]


def test_proxy_config_endpoint_cluster_and_route_name_filters(mesh: Mesh) -> None:
    target = f"{mesh.frontend['metadata']['name']}.frontend"
    cluster = f"outbound|80||{CATALOG_HOST}"
    result = mesh.cli("proxy-config", "endpoint", target, "--cluster", cluster)
    assert result.exit_code == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    catalog_ips = {p["status"]["podIP"] for p in mesh.pods("production", "app=productcatalog")}
    assert {r[0].rsplit(":", 1)[0] for r in rows} == catalog_ips
    assert all(r[-1] == cluster for r in rows), rows

    result = mesh.cli("proxy-config", "route", target, "--name", "80", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert [r["name"] for r in json.loads(result.stdout)] == ["80"]
    result = mesh.cli("proxy-config", "route", target, "--name", "no-such-route")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 1  # the header only


def test_bench_load_reaches_a_service_by_short_name_through_a_sidecar(mesh: Mesh) -> None:
    # 4.2: fortio load -c 50 -t 60s -qps 1000 http://productcatalog/products, run from a pod in
    # `production`: through that namespace's sidecar the short name resolves as in-cluster DNS would
    pod = mesh.pods("production", "app=productcatalog")[0]
    result = mesh.cli_subprocess(
        "bench", "load", "-c", "2", "-n", "20", "-qps", "0", "-json", "-",
        "--proxy", f"{pod['status']['podIP']}:15001", "http://productcatalog/products",
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["RetCodes"] == {"200": 20}, result.stderr


def test_exec_runs_with_the_containers_environment_through_its_sidecar(mesh: Mesh) -> None:
    # 5.1 step 2: kubectl exec -it client-pod -- curl http://service-name:8080/health
    pod = mesh.frontend
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    script = (
        "import os, urllib.request as u; r = u.urlopen('http://productcatalog.production/health');"
        " print(os.environ['POD_NAME'], os.environ['HTTP_PROXY'], r.status, r.headers['x-envoy-upstream-service-time'] is not None)"
    )
    result = mesh.cli_subprocess(
        "exec", "-it", name, "-n", "frontend", "--", "python", "-c", script, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [name, f"http://{ip}:15001", "200", "True"]  # through the sidecar
    assert result.stderr == 'Defaulted container "frontend" out of: frontend, istio-proxy\n'

    same = mesh.cli_subprocess("exec", f"{name}", "-n", "frontend", "-c", "istio-proxy", "--", "python", "-c",
                               "import os; print(os.environ['INSTANCE_IP'])")  # fmt: skip
    assert same.returncode == 0 and same.stdout.strip() == ip and same.stderr == "", same.stderr


def test_exec_reports_the_commands_exit_code_and_bad_targets_in_one_line(mesh: Mesh) -> None:
    name = mesh.frontend["metadata"]["name"]
    failed = mesh.cli_subprocess(
        "exec", name, "-n", "frontend", "-c", "frontend", "--", "python", "-c", "raise SystemExit(3)"
    )
    assert failed.returncode == 3
    assert failed.stderr == "command terminated with exit code 3\n"
    for args, message in (
        (["-c", "nosuch", "--", "true"], f"error: container nosuch is not valid for pod {name}; choose one of: [frontend istio-proxy]"),
        (["-c", "frontend", "--", "no-such-binary-here"], 'error: exec: "no-such-binary-here": executable file not found in $PATH'),
    ):  # fmt: skip
        result = mesh.cli_subprocess("exec", name, "-n", "frontend", *args)
        assert result.returncode == 1 and result.stderr == message + "\n", result.stderr
    missing = mesh.cli_subprocess("exec", "no-such-pod", "-n", "frontend", "--", "true")
    assert missing.returncode == 1
    assert missing.stderr == 'Error from server (NotFound): pods "no-such-pod" not found\n'
