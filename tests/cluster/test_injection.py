"""Sidecar injection and Service admission: when a pod gets ``istio-proxy``, what the proxy and the
app are told, and ClusterIP allocation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import meshpilot
from meshpilot.api import validate
from meshpilot.cluster import admission, injection
from meshpilot.cluster.admission import AdmissionError, admit
from meshpilot.cluster.state import ClusterInfo
from meshpilot.store import Store

PODS = ("", "pods")
SERVICES = ("", "services")
NAMESPACES = ("", "namespaces")
DEPLOYMENTS = ("apps", "deployments")


@pytest.fixture
def env(tmp_path: Path) -> Any:
    store = Store(None)
    info = ClusterInfo(name="inj", index=230, state_dir=tmp_path, token="t", mesh=False)
    yield store, info
    store.close()


def namespace(store: Store, name: str, labels: dict[str, str]) -> None:
    store.create(
        NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    )


def istiod(store: Store, revision: str | None) -> None:
    labels = {"app": "istiod"}
    name = "istiod"
    if revision:
        labels["istio.io/rev"] = revision
        name = f"istiod-{revision}"
    store.create(
        DEPLOYMENTS,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "istio-system", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "istiod"}},
                "template": {
                    "metadata": {"labels": {"app": "istiod"}},
                    "spec": {"containers": [{"name": "discovery", "image": "x"}]},
                },
            },
        },
    )


def pod(
    ns: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    ports: list[int] = (8080,),
) -> dict[str, Any]:  # type: ignore[assignment]
    meta: dict[str, Any] = {
        "generateName": "productcatalog-v1-7c9d5-",
        "namespace": ns,
        "labels": {"app": "productcatalog", "version": "v1", "pod-template-hash": "7c9d5", **(labels or {})},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "productcatalog-v1-7c9d5",
                "uid": "u",
                "controller": True,
            }
        ],
    }
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "containers": [
                {
                    "name": "productcatalog",
                    "image": "x",
                    "command": ["meshpilot", "sample", "productcatalog"],
                    "ports": [{"name": f"p{p}", "containerPort": p} for p in ports],
                }
            ]
        },
    }


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def test_injection_by_namespace_label(env: Any) -> None:
    store, info = env
    namespace(store, "production", {"istio-injection": "enabled"})
    out = admit(store, info, PODS, pod("production"), "CREATE")
    names = [c["name"] for c in out["spec"]["containers"]]
    assert names == ["productcatalog", "istio-proxy"]
    app, proxy = out["spec"]["containers"]
    assert proxy["command"] == ["python", "-m", "meshpilot.proxy"]
    assert proxy["image"] == f"meshpilot/proxy:{meshpilot.__version__}", "an upgrade check reads the tag"
    assert [p["containerPort"] for p in proxy["ports"]] == [15000, 15001, 15090]
    app_env = env_of(app)
    assert app_env["HTTP_PROXY"] == app_env["http_proxy"] == "http://$(POD_IP):15001"
    assert info.api_host in app_env["NO_PROXY"]
    assert app_env["PORT"] == "28080"
    assert app["ports"] == [{"name": "p8080", "containerPort": 8080, "protocol": "TCP"}], (
        "the declared port stays (the sidecar owns it)"
    )
    penv = env_of(proxy)
    assert penv["POD_NAME"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}
    assert penv["INSTANCE_IP"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert penv["SERVICE_ACCOUNT"]["fieldRef"]["fieldPath"] == "spec.serviceAccountName"
    assert penv["ISTIO_META_WORKLOAD_NAME"] == "productcatalog-v1"
    assert penv["ISTIO_META_CLUSTER_ID"] == "inj"
    assert penv["ISTIO_META_ISTIO_VERSION"] == meshpilot.__version__
    assert json.loads(penv["PROXY_CONFIG"]) == {"discoveryAddress": "istiod.istio-system.svc:15010"}
    assert json.loads(penv["ISTIO_META_APP_PORTS"]) == [
        {
            "name": "p8080",
            "containerPort": 8080,
            "internalPort": 28080,
            "protocol": "TCP",
            "container": "productcatalog",
        }
    ]
    assert penv["CANONICAL_SERVICE"] == "productcatalog" and penv["CANONICAL_REVISION"] == "v1"
    labels = out["metadata"]["labels"]
    assert labels["security.istio.io/tlsMode"] == "istio"
    assert labels["service.istio.io/canonical-name"] == "productcatalog"
    assert labels["service.istio.io/canonical-revision"] == "v1"
    status = json.loads(out["metadata"]["annotations"]["sidecar.istio.io/status"])
    assert status["containers"] == ["istio-proxy"] and status["revision"] == "default"
    # the result is still a valid Pod, and injecting twice changes nothing
    validate(out)
    assert (
        injection.inject(
            out, revision="default", cluster_id="inj", api_host=info.api_host, namespace="production"
        )
        == out
    )


def test_app_probes_are_pointed_at_the_internal_port(env: Any) -> None:
    store, info = env
    namespace(store, "probed", {"istio-injection": "enabled"})
    manifest = pod("probed", ports=[8080, 9090])
    app = manifest["spec"]["containers"][0]
    app["readinessProbe"] = {"httpGet": {"path": "/ready", "port": "p8080"}}
    app["livenessProbe"] = {"tcpSocket": {"port": 9090}}
    app["startupProbe"] = {"exec": {"command": ["true"]}}
    out = admit(store, info, PODS, manifest, "CREATE")
    app = out["spec"]["containers"][0]
    assert app["readinessProbe"]["httpGet"]["port"] == 28080
    assert app["livenessProbe"]["tcpSocket"]["port"] == 29090
    assert app["startupProbe"] == {"exec": {"command": ["true"]}}
    kept = pod("probed", annotations={"sidecar.istio.io/rewriteAppHTTPProbers": "false"})
    kept["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/", "port": 8080}}
    out = admit(store, info, PODS, kept, "CREATE")
    assert out["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] == 8080


def test_revision_label_needs_a_running_control_plane_revision(env: Any) -> None:
    store, info = env
    namespace(store, "canary", {"istio.io/rev": "1-30"})
    out = admit(store, info, PODS, pod("canary"), "CREATE")
    assert len(out["spec"]["containers"]) == 1, "no istiod-1-30 running: no injection"
    namespace(store, "istio-system", {})
    istiod(store, "1-30")
    out = admit(store, info, PODS, pod("canary"), "CREATE")
    proxy = out["spec"]["containers"][-1]
    assert (
        json.loads(env_of(proxy)["PROXY_CONFIG"])["discoveryAddress"] == "istiod-1-30.istio-system.svc:15010"
    )
    assert json.loads(out["metadata"]["annotations"]["sidecar.istio.io/status"])["revision"] == "1-30"


@pytest.mark.parametrize(
    ("ns_labels", "pod_labels", "pod_annotations", "injected"),
    [
        ({}, {}, {}, False),
        ({"istio-injection": "enabled"}, {"sidecar.istio.io/inject": "false"}, {}, False),
        ({"istio-injection": "enabled"}, {}, {"sidecar.istio.io/inject": "false"}, False),
        ({"istio-injection": "disabled", "istio.io/rev": "default"}, {}, {}, False),
        ({}, {"sidecar.istio.io/inject": "true"}, {}, True),
    ],
)
def test_opt_in_and_opt_out(
    env: Any,
    ns_labels: dict[str, str],
    pod_labels: dict[str, str],
    pod_annotations: dict[str, str],
    injected: bool,
) -> None:
    store, info = env
    namespace(store, "shop", ns_labels)
    out = admit(store, info, PODS, pod("shop", pod_labels, pod_annotations), "CREATE")
    assert (len(out["spec"]["containers"]) == 2) is injected


def test_internal_ports_avoid_proxy_ports_and_each_other() -> None:
    assert injection.internal_port(8080, set()) == 28080
    assert injection.internal_port(80, set()) == 20080
    assert injection.internal_port(50000, set()) == 65000  # 70000 is not a port
    assert injection.internal_port(50000, {65000}) == 64999
    assert injection.internal_port(8080, {28080}) == 65000


def test_pods_get_kubernetes_defaults(env: Any) -> None:
    store, info = env
    namespace(store, "plain", {})
    out = admit(store, info, PODS, pod("plain"), "CREATE")
    spec = out["spec"]
    assert spec["restartPolicy"] == "Always" and spec["serviceAccountName"] == "default"
    assert spec["terminationGracePeriodSeconds"] == 30


# ----------------------------------------------------------------- Services


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}], **spec},
    }


def test_cluster_ips_are_unique_in_the_service_range_and_immutable(env: Any) -> None:
    store, info = env
    ips = set()
    for i in range(5):
        out = admit(store, info, SERVICES, service(f"s{i}"), "CREATE")
        ip = out["spec"]["clusterIP"]
        assert ip.startswith("127.230.") and 128 <= int(ip.split(".")[2]) <= 255
        assert out["spec"]["clusterIPs"] == [ip]
        assert out["spec"]["ports"][0]["targetPort"] == 80 and out["spec"]["ports"][0]["protocol"] == "TCP"
        ips.add(ip)
        if i < 3:
            store.create(SERVICES, out)
    assert len(ips) == 5, "admitted but not yet stored services (an apply in progress) get distinct addresses"
    stored = store.get(SERVICES, "default", "s0")
    update = admit(store, info, SERVICES, service("s0"), "UPDATE", stored)
    assert update["spec"]["clusterIP"] == stored["spec"]["clusterIP"]
    with pytest.raises(AdmissionError, match="field is immutable"):
        admit(store, info, SERVICES, service("s0", clusterIP="127.230.200.1"), "UPDATE", stored)
    headless = admit(store, info, SERVICES, service("h", clusterIP="None"), "CREATE")
    assert headless["spec"]["clusterIP"] == "None"
    with pytest.raises(AdmissionError, match="not in the valid range"):
        admit(store, info, SERVICES, service("x", clusterIP="10.0.0.1"), "CREATE")
    with pytest.raises(AdmissionError, match="already allocated"):
        admit(store, info, SERVICES, service("y", clusterIP=stored["spec"]["clusterIP"]), "CREATE")
    two_ports = service("z")
    two_ports["spec"]["ports"] = [{"port": 80}, {"port": 81}]
    with pytest.raises(AdmissionError, match=r"spec.ports\[0\].name: Required value"):
        admit(store, info, SERVICES, two_ports, "CREATE")
    assert admission.running_revisions(store) == set()
