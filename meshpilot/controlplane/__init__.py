"""istiod for the local mesh: registry, translation of Istio config into per-proxy xDS, the push
stream, and its debug endpoints.

The translator (``registry`` + ``translate``) is pure; ``server`` and ``watcher`` are the asyncio
edges; ``python -m meshpilot.controlplane`` runs them as a pod of Deployment ``istiod``.
"""

from __future__ import annotations

from meshpilot.controlplane.mesh import MeshConfig, parse_mesh
from meshpilot.controlplane.registry import ProxyIdentity, Registry, Snapshot, proxy_from_pod
from meshpilot.controlplane.server import ControlPlane
from meshpilot.controlplane.translate import ProxyConfig, generate

__all__ = [
    "ControlPlane",
    "MeshConfig",
    "ProxyConfig",
    "ProxyIdentity",
    "Registry",
    "Snapshot",
    "generate",
    "parse_mesh",
    "proxy_from_pod",
]
