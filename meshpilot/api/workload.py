"""Which workload a pod belongs to, and its canonical service and revision, as Istio infers them.

The injector writes these into the sidecar's environment and labels, and the control plane puts
them in endpoint metadata for telemetry; both must agree, and a real-Kubernetes backend needs the
same answers, so the rules live here as pure functions over pod dicts and label maps.

Istio's rules: a pod of a ReplicaSet belongs to the Deployment named by the ReplicaSet's name
minus ``-<pod-template-hash>``; a pod of another controller to that controller; a bare pod to
itself. The canonical service is ``service.istio.io/canonical-name``, else
``app.kubernetes.io/name``, else ``app``, else the workload name; the canonical revision is
``service.istio.io/canonical-revision``, else ``app.kubernetes.io/version``, else ``version``,
else ``latest``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshpilot.api.rollout import HASH_LABEL

CANONICAL_NAME = "service.istio.io/canonical-name"
CANONICAL_REVISION = "service.istio.io/canonical-revision"


def workload_name(pod: Mapping[str, Any]) -> str:
    """The Deployment name for a pod of a ReplicaSet (``web-7d9f8-x2z`` -> ``web``), the
    controller's name for other controlled pods, else the pod's own name (at admission, before a
    name is generated, the ``generateName`` stem)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    for ref in meta.get("ownerReferences") or []:
        if not isinstance(ref, Mapping) or not ref.get("controller"):
            continue
        name = str(ref.get("name") or "")
        pod_hash = labels.get(HASH_LABEL)
        if ref.get("kind") == "ReplicaSet" and pod_hash and name.endswith("-" + pod_hash):
            return name[: -len(pod_hash) - 1]
        return name
    return str(meta.get("name") or str(meta.get("generateName") or "").rstrip("-"))


def canonical_service(labels: Mapping[str, str], workload: str) -> str:
    """Istio's canonical service name of a workload with these labels."""
    return labels.get(CANONICAL_NAME) or labels.get("app.kubernetes.io/name") or labels.get("app") or workload


def canonical_revision(labels: Mapping[str, str]) -> str:
    """Istio's canonical revision of a workload with these labels."""
    return (
        labels.get(CANONICAL_REVISION)
        or labels.get("app.kubernetes.io/version")
        or labels.get("version")
        or "latest"
    )
