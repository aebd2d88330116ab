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
register(KindInfo("", ("v1",), "Event", "events", "event", True, ("ev",), "v1", core.Event))
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


def _istio(
    group: str,
    versions: tuple[str, ...],
    kind: str,
    plural: str,
    short: tuple[str, ...],
    model: type[BaseModel],
    storage: str = "v1",
) -> None:
    """An Istio CRD: namespaced, singular = lower-case kind, and the categories Istio gives it
    (``istio-io`` and the group's, so ``kubectl get istio-io`` works)."""
    categories = ("istio-io", group.replace(".", "-"))
    register(
        KindInfo(
            group, versions, kind, plural, kind.lower(), True, short, storage, model, categories=categories
        )
    )


_NET = ("v1", "v1alpha3", "v1beta1")
_SEC = ("v1", "v1beta1")
_istio("networking.istio.io", _NET, "VirtualService", "virtualservices", ("vs",), networking.VirtualService)
_istio(
    "networking.istio.io", _NET, "DestinationRule", "destinationrules", ("dr",), networking.DestinationRule
)
_istio("networking.istio.io", _NET, "ServiceEntry", "serviceentries", ("se",), networking.ServiceEntry)
_istio("networking.istio.io", _NET, "Gateway", "gateways", ("gw",), networking.Gateway)
_istio("networking.istio.io", _NET, "Sidecar", "sidecars", (), networking.Sidecar)
_istio("networking.istio.io", _NET, "WorkloadEntry", "workloadentries", ("we",), networking.WorkloadEntry)
_istio("networking.istio.io", _NET, "WorkloadGroup", "workloadgroups", ("wg",), networking.WorkloadGroup)
_istio(
    "networking.istio.io",
    ("v1alpha3",),
    "EnvoyFilter",
    "envoyfilters",
    (),
    networking.EnvoyFilter,
    "v1alpha3",
)
_istio(
    "security.istio.io",
    _SEC,
    "AuthorizationPolicy",
    "authorizationpolicies",
    ("ap",),
    security.AuthorizationPolicy,
)
_istio(
    "security.istio.io",
    _SEC,
    "PeerAuthentication",
    "peerauthentications",
    ("pa",),
    security.PeerAuthentication,
)
_istio(
    "security.istio.io",
    _SEC,
    "RequestAuthentication",
    "requestauthentications",
    ("ra",),
    security.RequestAuthentication,
)
_istio(
    "telemetry.istio.io",
    ("v1", "v1alpha1"),
    "Telemetry",
    "telemetries",
    ("telemetry",),
    telemetry.Telemetry,
    "v1alpha1",
)
