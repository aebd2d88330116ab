"""Voluntary disruption: the pods/eviction subresource honours PodDisruptionBudgets.

SEAM (owned by the controllers/runtime work).
"""

from __future__ import annotations

from meshpilot.cluster.state import ClusterInfo
from meshpilot.store import Store


class EvictionRefused(Exception):
    """The eviction would violate a PodDisruptionBudget; the API server answers 429."""


def evict(store: Store, info: ClusterInfo, namespace: str, name: str) -> None:
    """Delete the pod gracefully if every matching PodDisruptionBudget allows it, else raise."""
    raise NotImplementedError
