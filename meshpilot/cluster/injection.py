"""Sidecar injection: add the ``istio-proxy`` container to a pod at creation (sans-IO).

When (Istio's rules): the namespace is labelled ``istio-injection=enabled``, or ``istio.io/rev=<rev>``
where control plane revision ``<rev>`` runs (a Deployment in istio-system labelled
``app=istiod, istio.io/rev=<rev>``); ``istio-injection=disabled`` wins over a revision label; a pod
labelled or annotated ``sidecar.istio.io/inject: "false"`` opts out, and a pod labelled
``sidecar.istio.io/inject: "true"`` opts in with the default revision.

How traffic is captured without iptables (DESIGN.md): the app's ``HTTP_PROXY``/``http_proxy`` point
at the sidecar's outbound listener ``$(POD_IP):15001``; the sidecar owns ``podIP:containerPort``
for every port the app declares and the app is moved to an internal port it learns from ``PORT``
(see ``internal_port``). The full environment of the proxy is documented in docs/internals.md.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from meshpilot import __version__
from meshpilot.api.workload import canonical_revision, canonical_service, workload_name
from meshpilot.cluster.objects import Obj, labels_of

PROXY_CONTAINER = "istio-proxy"
STATUS_ANNOTATION = "sidecar.istio.io/status"
INJECT_KEY = "sidecar.istio.io/inject"
REWRITE_PROBES = "sidecar.istio.io/rewriteAppHTTPProbers"
PROXY_PORTS = (15000, 15001, 15006, 15020, 15021, 15090)
INTERNAL_OFFSET = 20000
HASH_LABEL = "pod-template-hash"


def revision_wanted(namespace: Obj | None, pod: Obj, running_revisions: set[str]) -> str | None:
    """The control plane revision to inject, or None for no injection."""
    pod_labels = labels_of(pod)
    pod_annotations = dict(pod.get("metadata", {}).get("annotations") or {})
    opt = pod_labels.get(INJECT_KEY, pod_annotations.get(INJECT_KEY))
    if opt is not None and str(opt).lower() == "false":
        return None
    if pod.get("spec", {}).get("hostNetwork"):
        return None
    ns_labels = labels_of(namespace or {})
    if ns_labels.get("istio-injection") == "disabled":
        return None
    pod_rev = pod_labels.get("istio.io/rev")
    if pod_rev:
        return pod_rev if pod_rev in running_revisions or pod_rev == "default" else None
    if ns_labels.get("istio-injection") == "enabled":
        return "default"
    rev = ns_labels.get("istio.io/rev")
    if rev:
        return rev if rev in running_revisions or rev == "default" else None
    if opt is not None and str(opt).lower() == "true":
        return "default"
    return None


def discovery_address(revision: str) -> str:
    host = "istiod" if revision in ("", "default") else f"istiod-{revision}"
    return f"{host}.istio-system.svc:15010"


def internal_port(container_port: int, taken: set[int]) -> int:
    """Where the app listens once its sidecar owns ``containerPort``.

    ``containerPort + 20000`` (8080 -> 28080, 9080 -> 29080, 80 -> 20080) when that is a valid port
    that is neither one of the proxy's (15000-15090) nor another container port of the pod;
    otherwise the first free port counting down from 65000.
    """
    candidate = container_port + INTERNAL_OFFSET
    if candidate <= 65535 and candidate not in taken and candidate not in PROXY_PORTS:
        return candidate
    candidate = 65000
    while candidate in taken or candidate in PROXY_PORTS:
        candidate -= 1
    return candidate


def _rewrite_probes(container: Obj, internal: dict[int, int]) -> None:
    """Point the app's httpGet/tcpSocket probes at its internal port, so they check the app itself
    (Istio rewrites them to the agent for the same reason: a probe through the sidecar would test
    the proxy, and fail under STRICT mTLS)."""
    named = {
        str(p.get("name")): int(p["containerPort"]) for p in container.get("ports") or [] if p.get("name")
    }
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = container.get(kind) or {}
        for handler in ("httpGet", "tcpSocket"):
            action = probe.get(handler)
            if not action or action.get("host"):
                continue
            port = action.get("port")
            number = named.get(str(port)) if not str(port).isdigit() else int(str(port))
            if number in internal:
                action["port"] = internal[number]


def _field(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def _set_env(container: Obj, name: str, value: str) -> None:
    env: list[Obj] = container.setdefault("env", [])
    env[:] = [e for e in env if e.get("name") != name]
    env.append({"name": name, "value": value})


def inject(
    pod: Obj,
    *,
    revision: str,
    cluster_id: str,
    api_host: str,
    namespace: str,
    discovery: str | None = None,
) -> Obj:
    """Return a copy of ``pod`` with the sidecar added (idempotent: an injected pod is returned as is).

    ``discovery`` overrides the control plane's ``host:port``: the local cluster has no DNS, so the
    admission passes the istiod Service's ClusterIP (``discovery_address`` names would not resolve).
    """
    out = copy.deepcopy(pod)
    meta = out.setdefault("metadata", {})
    annotations: dict[str, Any] = meta.setdefault("annotations", {})
    spec = out.setdefault("spec", {})
    containers: list[Obj] = spec.setdefault("containers", [])
    if STATUS_ANNOTATION in annotations or any(c.get("name") == PROXY_CONTAINER for c in containers):
        return out
    labels: dict[str, Any] = meta.setdefault("labels", {})
    taken = {
        int(p["containerPort"]) for c in containers for p in c.get("ports") or [] if "containerPort" in p
    }
    app_ports: list[Obj] = []
    for container in containers:
        first_internal: int | None = None
        for port in container.get("ports") or []:
            number = int(port["containerPort"])
            internal = internal_port(number, taken)
            taken.add(internal)
            first_internal = first_internal or internal
            app_ports.append(
                {
                    "name": port.get("name", ""),
                    "containerPort": number,
                    "internalPort": internal,
                    "protocol": port.get("protocol", "TCP"),
                    "container": container.get("name"),
                }
            )
        if str(annotations.get(REWRITE_PROBES, "true")).lower() != "false":
            _rewrite_probes(
                container,
                {
                    p["containerPort"]: p["internalPort"]
                    for p in app_ports
                    if p["container"] == container.get("name")
                },
            )
        env: list[Obj] = container.setdefault("env", [])
        if not any(e.get("name") == "POD_IP" for e in env):
            env.insert(0, _field("POD_IP", "status.podIP"))
        if first_internal is not None:
            _set_env(container, "PORT", str(first_internal))
        proxy_url = "http://$(POD_IP):15001"
        _set_env(container, "HTTP_PROXY", proxy_url)
        _set_env(container, "http_proxy", proxy_url)
        no_proxy = f"localhost,127.0.0.1,$(POD_IP),{api_host}"
        _set_env(container, "NO_PROXY", no_proxy)
        _set_env(container, "no_proxy", no_proxy)
    workload = workload_name(out)
    app_containers = ",".join(str(c.get("name")) for c in containers)
    pod_ports = [
        {
            k: v
            for k, v in (
                ("name", p["name"]),
                ("containerPort", p["containerPort"]),
                ("protocol", p["protocol"]),
            )
            if v
        }
        for p in app_ports
    ]
    proxy_config = {"discoveryAddress": discovery or discovery_address(revision)}
    clean_labels = {k: v for k, v in labels.items() if k != HASH_LABEL}
    proxy: Obj = {
        "name": PROXY_CONTAINER,
        "image": f"meshpilot/proxy:{__version__}",  # the version, as istio/proxyv2:<tag> carries it
        "command": ["python", "-m", "meshpilot.proxy"],
        "ports": [
            {"name": "http-admin", "containerPort": 15000, "protocol": "TCP"},
            {"name": "http-outbound", "containerPort": 15001, "protocol": "TCP"},
            {"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"},
        ],
        "env": [
            _field("POD_NAME", "metadata.name"),
            _field("POD_NAMESPACE", "metadata.namespace"),
            _field("INSTANCE_IP", "status.podIP"),
            _field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
            {"name": "PROXY_CONFIG", "value": json.dumps(proxy_config, separators=(",", ":"))},
            {"name": "ISTIO_META_WORKLOAD_NAME", "value": workload},
            {
                "name": "ISTIO_META_OWNER",
                "value": f"kubernetes://apis/apps/v1/namespaces/{namespace}/deployments/{workload}",
            },
            {"name": "ISTIO_META_CLUSTER_ID", "value": cluster_id},
            {"name": "ISTIO_META_MESH_ID", "value": "cluster.local"},
            {"name": "TRUST_DOMAIN", "value": "cluster.local"},
            {"name": "ISTIO_META_ISTIO_REVISION", "value": revision},
            # istioctl proxy-status's VERSION column: the proxy reports it in its node metadata
            {"name": "ISTIO_META_ISTIO_VERSION", "value": __version__},
            {"name": "ISTIO_META_APP_CONTAINERS", "value": app_containers},
            {"name": "ISTIO_META_POD_PORTS", "value": json.dumps(pod_ports, separators=(",", ":"))},
            {"name": "ISTIO_META_APP_PORTS", "value": json.dumps(app_ports, separators=(",", ":"))},
            {
                "name": "ISTIO_META_LABELS",
                "value": json.dumps(clean_labels, separators=(",", ":"), sort_keys=True),
            },
            {"name": "CANONICAL_SERVICE", "value": canonical_service(labels_of(out), workload)},
            {"name": "CANONICAL_REVISION", "value": canonical_revision(labels_of(out))},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": 15000},
            "periodSeconds": 1,
            "timeoutSeconds": 1,
            "failureThreshold": 3,
            "successThreshold": 1,
        },
    }
    containers.append(proxy)
    annotations[STATUS_ANNOTATION] = json.dumps(
        {
            "initContainers": None,
            "containers": [PROXY_CONTAINER],
            "volumes": [],
            "imagePullSecrets": None,
            "revision": revision,
        },
        separators=(",", ":"),
    )
    labels["security.istio.io/tlsMode"] = "istio"
    labels.setdefault("service.istio.io/canonical-name", canonical_service(labels_of(out), workload))
    labels.setdefault("service.istio.io/canonical-revision", canonical_revision(labels_of(out)))
    return out
