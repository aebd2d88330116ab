"""kubectl's output formats from fixed objects: tables, ages, names, describe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from meshpilot.cli import printers

NOW = datetime(2026, 1, 21, 10, 30, 0, tzinfo=UTC)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "<invalid>"),
        (0, "0s"),
        (45, "45s"),
        (119, "119s"),
        (150, "2m30s"),
        (180, "3m"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600 + 10 * 60, "3h10m"),
        (5 * 3600, "5h"),
        (30 * 3600, "30h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (400 * 86400, "400d"),
        (3 * 365 * 86400 + 10 * 86400, "3y10d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_human_duration_matches_kubectl(seconds: float, expected: str) -> None:
    assert printers.human_duration(seconds) == expected


def pod(
    name: str, *, ready: bool = True, restarts: int = 0, phase: str = "Running", ip: str = "127.1.1.2"
) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "production", "creationTimestamp": ts(300)},
        "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}], "nodeName": "meshpilot"},
        "status": {
            "phase": phase,
            "podIP": ip,
            "containerStatuses": [
                {"name": "app", "ready": ready, "restartCount": restarts, "state": {"running": {}}},
                {"name": "istio-proxy", "ready": True, "restartCount": 0, "state": {"running": {}}},
            ],
        },
    }


def test_pod_table_and_wide() -> None:
    text = printers.table("Pod", [pod("a-1"), pod("b-22", ready=False, restarts=3)], NOW)
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert lines[1].split() == ["a-1", "2/2", "Running", "0", "5m"]
    assert lines[2].split() == ["b-22", "1/2", "Running", "3", "5m"]
    # Columns line up: every row's READY starts where the header's does.
    col = lines[0].index("READY")
    assert all(line[col : col + 3] in ("REA", "2/2", "1/2") for line in lines)
    wide = printers.table("Pod", [pod("a-1")], NOW, wide=True, with_namespace=True).splitlines()
    assert wide[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert wide[1].split() == ["production", "a-1", "2/2", "Running", "0", "5m", "127.1.1.2", "meshpilot"]


def test_pod_status_reasons() -> None:
    waiting = pod("w")
    waiting["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
    assert "CrashLoopBackOff" in printers.table("Pod", [waiting], NOW)
    terminating = pod("t")
    terminating["metadata"]["deletionTimestamp"] = ts(1)
    assert "Terminating" in printers.table("Pod", [terminating], NOW)


def test_restarts_show_when_last_restart_happened() -> None:
    p = pod("r", restarts=2)
    p["status"]["containerStatuses"][0]["lastState"] = {"terminated": {"finishedAt": ts(65)}}
    assert "2 (65s ago)" in printers.table("Pod", [p], NOW)


def test_deployment_service_endpoints_tables() -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "productcatalog-v1", "creationTimestamp": ts(7200)},
        "spec": {"replicas": 3},
        "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1},
    }
    assert printers.table("Deployment", [dep], NOW).splitlines()[1].split() == [
        "productcatalog-v1",
        "1/3",
        "2",
        "1",
        "120m",
    ]
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "productcatalog", "creationTimestamp": ts(10)},
        "spec": {"type": "ClusterIP", "clusterIP": "127.1.128.2", "ports": [{"port": 80, "protocol": "TCP"}]},
    }
    assert printers.table("Service", [svc], NOW).splitlines()[1].split() == [
        "productcatalog",
        "ClusterIP",
        "127.1.128.2",
        "<none>",
        "80/TCP",
        "10s",
    ]
    ep = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "productcatalog", "creationTimestamp": ts(10)},
        "subsets": [{"addresses": [{"ip": f"127.1.1.{i}"} for i in range(1, 6)], "ports": [{"port": 8080}]}],
    }
    row = printers.table("Endpoints", [ep], NOW).splitlines()[1]
    assert "127.1.1.1:8080,127.1.1.2:8080,127.1.1.3:8080 + 2 more..." in row
    assert printers.endpoints_text({"subsets": []}) == "<none>"


def test_several_kinds_prefix_names() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {}}
    text = printers.table("Service", [svc], NOW, with_kind_prefix=True)
    assert text.splitlines()[1].startswith("service/x")


def test_istio_columns_follow_the_crds() -> None:
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "productcatalog", "creationTimestamp": ts(30)},
        "spec": {"hosts": ["productcatalog"], "gateways": ["mesh", "gw"]},
    }
    lines = printers.table("VirtualService", [vs], NOW).splitlines()
    assert lines[0].split() == ["NAME", "GATEWAYS", "HOSTS", "AGE"]
    assert lines[1].split() == ["productcatalog", '["mesh","gw"]', '["productcatalog"]', "30s"]
    se = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "remote", "creationTimestamp": ts(30)},
        "spec": {"hosts": ["a.example"], "location": "MESH_EXTERNAL", "resolution": "DNS"},
    }
    assert printers.table("ServiceEntry", [se], NOW).splitlines()[1].split() == [
        "remote",
        '["a.example"]',
        "MESH_EXTERNAL",
        "DNS",
        "30s",
    ]
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "p"},
        "spec": {"minAvailable": 1},
    }
    header, row = printers.table("PodDisruptionBudget", [pdb], NOW).splitlines()
    assert header.startswith("NAME   MIN AVAILABLE   MAX UNAVAILABLE   ALLOWED DISRUPTIONS   AGE")
    assert row.split()[:4] == ["p", "1", "N/A", "0"]


@pytest.mark.parametrize(
    ("obj", "name"),
    [
        ({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}, "deployment.apps/x"),
        ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}, "pod/p"),
        (
            {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "vs"}},
            "virtualservice.networking.istio.io/vs",
        ),
    ],
)
def test_resource_names(obj: dict, name: str) -> None:
    assert printers.resource_name(obj) == name


def test_describe_pod_has_header_containers_and_events() -> None:
    p = pod("a-1")
    p["metadata"]["labels"] = {"app": "productcatalog", "version": "v1"}
    p["metadata"]["annotations"] = {printers.LAST_APPLIED: "{}", "note": "x"}
    events = [
        {
            "type": "Normal",
            "reason": "Started",
            "message": "Started container app",
            "lastTimestamp": ts(20),
            "source": {"component": "kubelet"},
        }
    ]
    text = printers.describe(p, events, NOW)
    assert "Name:         a-1" in text
    assert "Namespace:    production" in text
    assert "Labels:       app=productcatalog\n              version=v1" in text
    assert printers.LAST_APPLIED not in text
    assert "IP:           127.1.1.2" in text
    assert "  istio-proxy:" in text
    assert "Events:" in text and "Started container app" in text and "20s" in text
    assert printers.describe(p, [], NOW).endswith("Events:        <none>")


def test_describe_custom_resource_renders_spec_tree() -> None:
    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "pc", "namespace": "production"},
        "spec": {
            "hosts": ["productcatalog"],
            "http": [{"route": [{"destination": {"host": "pc", "subset": "v1"}, "weight": 90}]}],
        },
    }
    text = printers.describe(vs, [], NOW)
    assert "Kind:         VirtualService" in text
    assert "Spec:" in text and "Hosts:" in text and "Subset:  v1" in text and "Weight:  90" in text


def test_table_alignment_uses_three_spaces() -> None:
    assert printers.format_table(["A", "BB"], [["xxxx", "y"]]) == "A      BB\nxxxx   y"
