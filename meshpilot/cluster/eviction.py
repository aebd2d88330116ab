"""Voluntary disruption: the pods/eviction subresource honours PodDisruptionBudgets.

The budget is computed from the store at the moment of the request (not from a possibly stale
PDB status), and the pod's graceful deletion happens in the same store transaction, so two
evictions racing for the last allowed disruption cannot both succeed.
"""

from __future__ import annotations

from meshpilot.cluster.controllers.disruption import budget_status, matching_pods
from meshpilot.cluster.objects import PDBS, PODS, is_terminating, name_of, pod_is_ready
from meshpilot.cluster.state import ClusterInfo
from meshpilot.store import Store


class EvictionRefused(Exception):
    """The eviction would violate a PodDisruptionBudget; the API server answers 429."""


def evict(store: Store, info: ClusterInfo, namespace: str, name: str) -> None:
    """Delete the pod gracefully if every matching PodDisruptionBudget allows it, else raise."""
    from meshpilot.cluster.controllers import scale_index

    with store.transaction():
        pod = store.get(PODS, namespace, name)  # NotFound propagates: the API answers 404
        if is_terminating(pod):
            return
        budgets, _ = store.list(PDBS, namespace=namespace)
        pods, _ = store.list(PODS, namespace=namespace)
        covering = [b for b in budgets if any(name_of(p) == name for p in matching_pods(b, [pod]))]
        if len(covering) > 1:
            raise EvictionRefused(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
            )
        if covering:
            budget = covering[0]
            status = budget_status(budget, pods, scale_index(store, namespace))
            healthy_now = pod_is_ready(pod)
            if healthy_now and status["disruptionsAllowed"] <= 0:
                raise EvictionRefused(
                    "Cannot evict pod as it would violate the pod's disruption budget. "
                    f"The disruption budget {name_of(budget)} needs {status['desiredHealthy']} healthy pods "
                    f"and has {status['currentHealthy']} currently"
                )
            if not healthy_now and status["currentHealthy"] < status["desiredHealthy"]:
                raise EvictionRefused(
                    "Cannot evict pod as it would violate the pod's disruption budget. "
                    f"The disruption budget {name_of(budget)} needs {status['desiredHealthy']} healthy pods "
                    f"and has {status['currentHealthy']} currently"
                )
        store.delete(PODS, namespace, name)
