"""Which stored config the local mesh does not act on (``meshpilot.api.enforcement``), pure."""

from __future__ import annotations

from typing import Any

import pytest

from meshpilot.api.enforcement import NOT_ENFORCED_KINDS, not_enforced


def obj(
    kind: str, spec: dict[str, Any] | None = None, name: str = "x", ns: str = "production"
) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec or {}}


def test_default_deny_authorization_policy_says_it_is_not_enforced() -> None:
    assert not_enforced(obj("AuthorizationPolicy", name="default-deny")) == [
        "AuthorizationPolicy production/default-deny is stored but not enforced: "
        "meshpilot's sidecars do not implement authorization yet"
    ]


@pytest.mark.parametrize("kind", sorted(NOT_ENFORCED_KINDS))
def test_every_listed_kind_warns_once(kind: str) -> None:
    (warning,) = not_enforced(obj(kind))
    assert warning.startswith(f"{kind} production/x is stored but not enforced: ")


@pytest.mark.parametrize("kind", ["VirtualService", "ServiceEntry", "WorkloadEntry", "Deployment", "Service"])
def test_kinds_that_work_do_not_warn(kind: str) -> None:
    assert not_enforced(obj(kind, {"hosts": ["a"]})) == []


def test_sidecar_warns_only_for_the_fields_it_ignores() -> None:
    egress_only = {"egress": [{"hosts": ["./*", "istio-system/*"], "port": {"number": 80}}]}
    assert not_enforced(obj("Sidecar", egress_only)) == []
    spec = {
        "ingress": [{"port": {"number": 9080, "protocol": "HTTP", "name": "http"}, "defaultEndpoint": "x"}],
        "egress": [{"hosts": ["./*"]}, {"hosts": ["./*"], "bind": "127.0.0.1"}],
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
    }
    warnings = not_enforced(obj("Sidecar", spec, name="default"))
    assert [w.split(" is stored")[0] for w in warnings] == [
        "Sidecar production/default: spec.ingress",
        "Sidecar production/default: spec.egress[1].bind",
    ]


def test_destination_rule_tls_is_reported_where_it_is_set() -> None:
    spec = {
        "host": "productcatalog",
        "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}},
        "subsets": [
            {"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}
        ],
    }
    (warning,) = not_enforced(obj("DestinationRule", spec, name="dr"))
    assert warning.startswith(
        "DestinationRule production/dr: spec.subsets[0].trafficPolicy.tls is stored but not"
    )


def mesh_configmap(mesh: str, name: str = "istio", ns: str = "istio-system") -> dict[str, Any]:
    return {"kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"mesh": mesh}}


def test_mesh_config_fields_that_are_ignored() -> None:
    mesh = """
accessLogFile: /dev/stdout
outboundTrafficPolicy: {mode: REGISTRY_ONLY}
enableTracing: true
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15010
  proxyStatsMatcher:
    inclusionRegexps: [".*circuit_breakers.*"]
"""
    warnings = not_enforced(mesh_configmap(mesh))
    assert warnings == [
        "ConfigMap istio-system/istio: mesh field enableTracing is stored but not enforced: "
        "meshpilot's control plane and sidecars ignore it",
        "ConfigMap istio-system/istio: mesh field defaultConfig.proxyStatsMatcher is stored but not enforced: "
        "meshpilot's sidecars export their fixed set of Istio metrics",
    ]
    # a revision's mesh config too; other ConfigMaps are just data
    assert len(not_enforced(mesh_configmap(mesh, name="istio-canary"))) == 2
    assert not_enforced(mesh_configmap(mesh, ns="production")) == []
    assert not_enforced(mesh_configmap(mesh, name="settings")) == []


def test_packaged_mesh_config_draws_no_warning() -> None:
    from meshpilot.controlplane.install import manifests

    configmaps = [m for m in manifests() if m["kind"] == "ConfigMap"]
    assert configmaps
    assert [w for m in configmaps for w in not_enforced(m)] == []
    assert not_enforced(mesh_configmap("trustDomain: example.org")) != []
