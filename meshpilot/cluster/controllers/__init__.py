"""Controllers and the process runtime of the local cluster.

SEAM (owned by the controllers/runtime work): the daemon creates one ``ControllerManager`` after
the store and before serving the API, and stops it on shutdown.
"""

from __future__ import annotations

from meshpilot.cluster.state import ClusterInfo
from meshpilot.store import Store


class ControllerManager:
    def __init__(self, store: Store, info: ClusterInfo) -> None:
        self.store = store
        self.info = info

    async def start(self) -> None:
        """Adopt or restart the pods recorded in the store, then run every controller."""

    async def stop(self, *, stop_pods: bool) -> None:
        """Stop the controllers; with ``stop_pods`` also terminate every process the cluster started."""
