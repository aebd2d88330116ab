"""Namespace termination, as Kubernetes' namespace controller does it.

Deleting a Namespace deletes everything in it, but pods terminate gracefully and may take their
``terminationGracePeriodSeconds``; until the last object is gone the Namespace stays, with
``deletionTimestamp``, ``status.phase: Terminating`` and the ``kubernetes`` entry in
``spec.finalizers``, and the API server refuses new content in it (403). When it is empty the
finalizer is removed, and the store deletes the Namespace. The API server runs one pass at
DELETE time (so a namespace without pods goes at once) and the ``namespace`` controller loop
repeats it until the namespace is empty.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from meshpilot.store import NotFound, ResourceKey, Store

log = logging.getLogger("meshpilot.cluster.namespaces")

Obj = dict[str, Any]
NAMESPACES: ResourceKey = ("", "namespaces")
FINALIZER = "kubernetes"


def namespaced_keys() -> list[ResourceKey]:
    """Every namespaced kind the cluster serves (Events included)."""
    from meshpilot.api import kinds

    return [info.key for info in kinds() if info.namespaced]


def delete_contents(store: Store, namespace: str) -> dict[ResourceKey, int]:
    """Delete (or start deleting) every object in ``namespace``; returns what is still there.

    Pods are only marked (graceful deletion): they count as remaining until the runtime has
    stopped their processes and removed them.
    """
    remaining: dict[ResourceKey, int] = {}
    for key in namespaced_keys():
        items, _ = store.list(key, namespace)
        left = 0
        for item in items:
            meta = item.get("metadata") or {}
            if not meta.get("deletionTimestamp"):
                with contextlib.suppress(NotFound):
                    item = store.delete(key, namespace, str(meta.get("name")))
                    if not (item.get("metadata") or {}).get("deletionTimestamp"):
                        continue  # deleted for good
            left += 1
        if left:
            remaining[key] = left
    return remaining


def remaining_message(remaining: dict[ResourceKey, int]) -> str:
    """Kubernetes' NamespaceContentRemaining wording: ``pods. has 2 resource instances``."""
    parts = [
        f"{plural}.{group} has {count} resource instances" for (group, plural), count in remaining.items()
    ]
    return "Some resources are remaining: " + ", ".join(sorted(parts))


def _conditions(old: list[Obj], remaining: dict[ResourceKey, int], stamp: str) -> list[Obj]:
    wanted: Obj = {
        "type": "NamespaceContentRemaining",
        "status": "True" if remaining else "False",
        "reason": "SomeResourcesRemain" if remaining else "ContentRemoved",
        "message": remaining_message(remaining) if remaining else "All content successfully removed",
    }
    previous = next((c for c in old if c.get("type") == wanted["type"]), None)
    same = previous is not None and previous.get("status") == wanted["status"]
    wanted["lastTransitionTime"] = (previous or {}).get("lastTransitionTime") if same else stamp
    return [*(c for c in old if c.get("type") != wanted["type"]), wanted]


def terminate(store: Store, namespace: Obj, stamp: str) -> bool:
    """One pass over a namespace being deleted; True when it is gone.

    Call inside ``store.transaction()`` or not: each write stands alone and the pass is
    idempotent, so a crash half-way is finished by the next pass.
    """
    name = str((namespace.get("metadata") or {}).get("name"))
    remaining = delete_contents(store, name)
    finalizers = list((namespace.get("spec") or {}).get("finalizers") or [])
    if not remaining:
        if FINALIZER in finalizers or not namespace["metadata"].get("deletionTimestamp"):
            kept = [f for f in finalizers if f != FINALIZER]
            try:
                if FINALIZER in finalizers:
                    store.patch(NAMESPACES, None, name, {"spec": {"finalizers": kept or None}})
                if not namespace["metadata"].get("deletionTimestamp"):
                    store.delete(NAMESPACES, None, name)
            except NotFound:
                return True
        try:
            store.get(NAMESPACES, None, name)
        except NotFound:
            log.info("namespace %s: all content removed, namespace deleted", name)
            return True
        return False
    if FINALIZER not in finalizers:
        store.patch(NAMESPACES, None, name, {"spec": {"finalizers": [*finalizers, FINALIZER]}})
    if not namespace["metadata"].get("deletionTimestamp"):
        store.delete(NAMESPACES, None, name)  # marks it: deletionTimestamp + phase Terminating
    current = store.get(NAMESPACES, None, name)
    old_status = current.get("status") or {}
    status = {
        **old_status,
        "phase": "Terminating",
        "conditions": _conditions(list(old_status.get("conditions") or []), remaining, stamp),
    }
    if status != old_status:
        store.patch(NAMESPACES, None, name, {"status": status}, subresource="status")
    return False


__all__ = ["FINALIZER", "delete_contents", "namespaced_keys", "remaining_message", "terminate"]
