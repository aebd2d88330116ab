"""The table of served kinds: Kubernetes' built-ins meshpilot runs and Istio's CRDs.

Names, short names and versions are those of Kubernetes and Istio 1.30, so ``kubectl``/``istioctl``
habits carry over.
"""

from __future__ import annotations

from pydantic import BaseModel

from meshpilot.api import apps, core, networking, security, telemetry
from meshpilot.api.registry import KindInfo, register

register(
    KindInfo(
        "", ("v1",), "Namespace", "namespaces", "namespace", False, ("ns",), "v1", core.Namespace, "label"
    )
)
register(KindInfo("", ("v1",), "Pod", "pods", "pod", True, ("po",), "v1", core.Pod))
register(
    KindInfo("", ("v1",), "Service", "services", "service", True, ("svc",), "v1", core.Service, "label1035")
)
register(KindInfo("", ("v1",), "Endpoints", "endpoints", "endpoints", True, ("ep",), "v1", core.Endpoints))
register(KindInfo("", ("v1",), "ConfigMap", "configmaps", "configmap", True, ("cm",), "v1", core.ConfigMap))
register(KindInfo("", ("v1",), "Secret", "secrets", "secret", True, (), "v1", core.Secret))
register(
    KindInfo(
        "",
        ("v1",),
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        True,
        ("sa",),
        "v1",
        core.ServiceAccount,
    )
)
register(
    KindInfo(
        "apps", ("v1",), "Deployment", "deployments", "deployment", True, ("deploy",), "v1", apps.Deployment
    )
)
register(
    KindInfo("apps", ("v1",), "ReplicaSet", "replicasets", "replicaset", True, ("rs",), "v1", apps.ReplicaSet)
)
register(
    KindInfo(
        "policy",
        ("v1",),
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        True,
        ("pdb",),
        "v1",
        apps.PodDisruptionBudget,
    )
)

_NET = ("v1", "v1alpha3", "v1beta1")
_model: type[BaseModel]
_sec_model: type[BaseModel]
_SEC = ("v1", "v1beta1")
for _kind, _plural, _short, _model in (
    ("VirtualService", "virtualservices", ("vs",), networking.VirtualService),
    ("DestinationRule", "destinationrules", ("dr",), networking.DestinationRule),
    ("ServiceEntry", "serviceentries", ("se",), networking.ServiceEntry),
    ("Gateway", "gateways", ("gw",), networking.Gateway),
    ("Sidecar", "sidecars", (), networking.Sidecar),
    ("WorkloadEntry", "workloadentries", ("we",), networking.WorkloadEntry),
    ("WorkloadGroup", "workloadgroups", ("wg",), networking.WorkloadGroup),
):
    register(
        KindInfo(
            "networking.istio.io",
            _NET,
            _kind,
            _plural,
            _kind.lower(),
            True,
            _short,
            "v1",
            _model,
            categories=("istio-io", "networking-istio-io"),
        )
    )
register(
    KindInfo(
        "networking.istio.io",
        ("v1alpha3",),
        "EnvoyFilter",
        "envoyfilters",
        "envoyfilter",
        True,
        (),
        "v1alpha3",
        networking.EnvoyFilter,
        categories=("istio-io", "networking-istio-io"),
    )
)
for _kind, _plural, _short, _sec_model in (
    ("AuthorizationPolicy", "authorizationpolicies", ("ap",), security.AuthorizationPolicy),
    ("PeerAuthentication", "peerauthentications", ("pa",), security.PeerAuthentication),
    ("RequestAuthentication", "requestauthentications", ("ra",), security.RequestAuthentication),
):
    register(
        KindInfo(
            "security.istio.io",
            _SEC,
            _kind,
            _plural,
            _kind.lower(),
            True,
            _short,
            "v1",
            _sec_model,
            categories=("istio-io", "security-istio-io"),
        )
    )
register(
    KindInfo(
        "telemetry.istio.io",
        ("v1", "v1alpha1"),
        "Telemetry",
        "telemetries",
        "telemetry",
        True,
        ("telemetry",),
        "v1alpha1",
        telemetry.Telemetry,
        categories=("istio-io", "telemetry-istio-io"),
    )
)
