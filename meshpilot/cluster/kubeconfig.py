"""The cluster's view of the kubeconfig; the format lives in ``meshpilot.client.kubeconfig``.

The client reads kubeconfigs and sits below the cluster in the layering, so the code lives there
and the cluster lifecycle imports it from here.
"""

from __future__ import annotations

from meshpilot.client.kubeconfig import (
    Credentials,
    KubeconfigError,
    add_cluster,
    credentials,
    load,
    remove_cluster,
)

__all__ = ["Credentials", "KubeconfigError", "add_cluster", "credentials", "load", "remove_cluster"]
