"""The table of served kinds: Kubernetes' built-ins meshpilot runs and Istio's CRDs.

Names, short names and versions are those of Kubernetes and Istio 1.30, so ``kubectl``/``istioctl``
habits carry over.
"""

from __future__ import annotations

from meshpilot.api import apps, core
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
