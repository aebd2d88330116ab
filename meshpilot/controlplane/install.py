"""The objects that install a control plane revision (``meshpilot install``, ``cluster up``).

The packaged YAML describes the default revision; another revision gets the same objects under
Istio's revision names (``istiod-<rev>`` Deployment/Service/ServiceAccount, ``istio-<rev>``
ConfigMap, label ``istio.io/rev=<rev>``), so two revisions run side by side for a canary upgrade.
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from typing import Any

import yaml

_REVISION = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class InstallError(ValueError):
    """A revision name Kubernetes would not accept in object names and labels."""


def _packaged() -> list[dict[str, Any]]:
    text = resources.files("meshpilot.controlplane").joinpath("manifests/istiod.yaml").read_text()
    return [d for d in yaml.safe_load_all(text) if d]


def manifests(revision: str | None = None, cluster_id: str | None = None) -> list[dict[str, Any]]:
    """The objects of one control plane revision, ready to apply (namespace first).

    ``cluster_id`` names the cluster in endpoint metadata (telemetry's ``*_cluster`` labels); it
    should match the ``ISTIO_META_CLUSTER_ID`` the injector gives sidecars.
    """
    rev = revision or "default"
    if not _REVISION.match(rev):
        raise InstallError(f"invalid revision {rev!r}: use lowercase letters, digits and '-'")
    objects = _packaged()
    if cluster_id:
        for obj in objects:
            if obj["kind"] == "Deployment":
                for container in obj["spec"]["template"]["spec"]["containers"]:
                    for env in container.get("env", []):
                        if env["name"] == "CLUSTER_ID":
                            env["value"] = cluster_id
    if rev == "default":
        return objects
    out: list[dict[str, Any]] = []
    for obj in objects:
        obj = copy.deepcopy(obj)
        kind = obj["kind"]
        meta = obj["metadata"]
        if kind == "Namespace":
            out.append(obj)
            continue
        meta["name"] = f"istio-{rev}" if kind == "ConfigMap" else f"istiod-{rev}"
        meta.setdefault("labels", {})["istio.io/rev"] = rev
        if kind == "ConfigMap":
            obj["data"]["mesh"] = obj["data"]["mesh"].replace(
                "istiod.istio-system.svc", f"istiod-{rev}.istio-system.svc"
            )
        elif kind == "Deployment":
            spec = obj["spec"]
            spec["selector"]["matchLabels"]["istio.io/rev"] = rev
            template = spec["template"]
            template["metadata"]["labels"]["istio.io/rev"] = rev
            template["spec"]["serviceAccountName"] = f"istiod-{rev}"
            for container in template["spec"]["containers"]:
                for env in container.get("env", []):
                    if env["name"] == "REVISION":
                        env["value"] = rev
        elif kind == "Service":
            obj["spec"]["selector"]["istio.io/rev"] = rev
        out.append(obj)
    return out
