"""List+watch the cluster API and keep the control plane's snapshot current.

One task per kind lists, then watches from the list's resourceVersion; a watch that ends or
fails (410 Gone, a dropped connection, an API server restart) is followed by a fresh list, and the
difference between the cache and the new list is reported as changes, so nothing is missed. The
control plane is first told about the cluster once every kind has been listed (istiod's "caches
synced"), which is when it starts answering proxies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from meshpilot.client import ALL_NAMESPACES, ApiError, AsyncClient
from meshpilot.controlplane._util import ConfigError, name_of, namespace_of
from meshpilot.controlplane.mesh import ROOT_NAMESPACE, MeshConfig, parse_mesh
from meshpilot.controlplane.registry import DEFAULT_CLUSTER_ID, Snapshot
from meshpilot.tasks import spawn

log = logging.getLogger("meshpilot.controlplane.watcher")


@dataclass(frozen=True)
class WatchedKind:
    kind: str
    resource: tuple[str, str]
    namespace: str = ALL_NAMESPACES
    cluster_scoped: bool = False


ISTIO = "networking.istio.io"
KINDS: tuple[WatchedKind, ...] = (
    WatchedKind("Service", ("", "services")),
    WatchedKind("Endpoints", ("", "endpoints")),
    WatchedKind("Pod", ("", "pods")),
    WatchedKind("Namespace", ("", "namespaces"), cluster_scoped=True),
    WatchedKind("ConfigMap", ("", "configmaps"), namespace=ROOT_NAMESPACE),
    WatchedKind("ServiceEntry", (ISTIO, "serviceentries")),
    WatchedKind("WorkloadEntry", (ISTIO, "workloadentries")),
    WatchedKind("VirtualService", (ISTIO, "virtualservices")),
    WatchedKind("DestinationRule", (ISTIO, "destinationrules")),
    WatchedKind("Sidecar", (ISTIO, "sidecars")),
)

Key = tuple[str, str]  # (namespace, name)


def _key(kind: WatchedKind, obj: Mapping[str, Any]) -> Key:
    return ("" if kind.cluster_scoped else namespace_of(obj), name_of(obj))


def _change_key(kind: str, key: Key) -> str:
    return f"{kind}/{key[0]}/{key[1]}"


def mesh_configmap_name(revision: str) -> str:
    """Istio's per-revision mesh config: ``istio`` for the default revision, ``istio-<rev>`` else."""
    return "istio" if revision in ("", "default") else f"istio-{revision}"


class RegistryWatcher:
    """Keeps a cache of every watched kind and reports changes with the keys that changed.

    ``on_change(build, changed)`` gets ``build``, a function returning a ``Snapshot`` of the cache
    as it is when called (``ControlPlane.update`` accepts it): copying every list on each watch
    event would be wasted on the many events one debounced push coalesces.
    """

    def __init__(
        self,
        client: AsyncClient,
        on_change: Callable[[Callable[[], Snapshot], set[str] | None], None],
        *,
        revision: str = "default",
        cluster_id: str = DEFAULT_CLUSTER_ID,
        backoff: tuple[float, float] = (0.2, 5.0),
        kinds: tuple[WatchedKind, ...] = KINDS,
    ) -> None:
        self.client = client
        self.on_change = on_change
        self.revision = revision
        self.cluster_id = cluster_id
        self.backoff = backoff
        self.kinds = kinds
        self.cache: dict[str, dict[Key, dict[str, Any]]] = {k.kind: {} for k in kinds}
        self._listed: set[str] = set()
        self.synced = asyncio.Event()
        self.mesh = MeshConfig()
        self._mesh_text: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.errors = 0

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}: {len(v)}" for k, v in self.cache.items())
        return f"<RegistryWatcher [{'synced' if self.synced.is_set() else 'syncing'} | {counts}]>"

    # --- the snapshot -------------------------------------------------------------------------

    def _mesh(self) -> MeshConfig:
        cm = self.cache.get("ConfigMap", {}).get((ROOT_NAMESPACE, mesh_configmap_name(self.revision)))
        if cm is None and self.revision not in ("", "default"):
            cm = self.cache.get("ConfigMap", {}).get((ROOT_NAMESPACE, "istio"))
        text = ((cm or {}).get("data") or {}).get("mesh")
        if text == self._mesh_text:
            return self.mesh  # parsed once per change, not once per pod event
        self._mesh_text = text
        try:
            self.mesh = parse_mesh(text)
        except ConfigError as exc:
            log.error("mesh config ignored, keeping the previous one: %s", exc)
        return self.mesh

    def snapshot(self) -> Snapshot:
        def items(kind: str) -> list[dict[str, Any]]:
            return list(self.cache.get(kind, {}).values())

        return Snapshot(
            services=items("Service"),
            endpoints=items("Endpoints"),
            pods=items("Pod"),
            namespaces=items("Namespace"),
            service_entries=items("ServiceEntry"),
            workload_entries=items("WorkloadEntry"),
            virtual_services=items("VirtualService"),
            destination_rules=items("DestinationRule"),
            sidecars=items("Sidecar"),
            mesh=self._mesh(),
            cluster_id=self.cluster_id,
        )

    def _notify(self, changed: set[str] | None) -> None:
        if not self.synced.is_set():
            return
        if changed is not None and not changed:
            return
        self.on_change(self.snapshot, changed)

    # --- applying list results and events (sans-IO, tested directly) --------------------------

    def apply_list(self, kind: WatchedKind, items: list[dict[str, Any]]) -> set[str]:
        """Replace the cache of ``kind``; the keys that were added, changed or removed."""
        old = self.cache[kind.kind]
        new = {_key(kind, o): o for o in items}
        changed = {
            _change_key(kind.kind, k)
            for k in old.keys() | new.keys()
            if (old.get(k) or {}).get("metadata", {}).get("resourceVersion")
            != (new.get(k) or {}).get("metadata", {}).get("resourceVersion")
            or (k in old) != (k in new)
        }
        self.cache[kind.kind] = new
        first = kind.kind not in self._listed
        self._listed.add(kind.kind)
        if first and self._listed >= {k.kind for k in self.kinds} and not self.synced.is_set():
            self.synced.set()
            self.on_change(self.snapshot, None)
            return changed
        if kind.kind == "ConfigMap" and changed:
            self._notify(None)  # the mesh config touches every proxy
        else:
            self._notify(changed)
        return changed

    def apply_event(self, kind: WatchedKind, event_type: str, obj: dict[str, Any]) -> None:
        key = _key(kind, obj)
        cache = self.cache[kind.kind]
        if event_type == "DELETED":
            if cache.pop(key, None) is None:
                return
        elif event_type in ("ADDED", "MODIFIED"):
            cache[key] = obj
        else:
            return  # BOOKMARK and the like
        if kind.kind == "ConfigMap":
            if key[1] in (mesh_configmap_name(self.revision), "istio"):
                self._notify(None)
            return
        self._notify({_change_key(kind.kind, key)})

    # --- I/O ------------------------------------------------------------------------------------

    async def _run_kind(self, kind: WatchedKind) -> None:
        delay = self.backoff[0]
        while True:
            try:
                listed = await self.client.list(kind.resource, kind.namespace)
                self.apply_list(kind, list(listed))
                delay = self.backoff[0]
                async for event_type, obj in self.client.watch(
                    kind.resource, kind.namespace, resource_version=listed.resource_version or None
                ):
                    self.apply_event(kind, event_type, obj)
                log.debug("watch of %s ended; listing again", kind.kind)
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                self.errors += 1
                if exc.status != 410:
                    log.warning("watch of %s failed (%s); listing again in %.1fs", kind.kind, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.backoff[1])
            except Exception as exc:  # keep watching whatever the API did; the next list resyncs
                self.errors += 1
                log.warning("watch of %s failed (%r); listing again in %.1fs", kind.kind, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])

    def start(self) -> None:
        for kind in self.kinds:
            self._tasks.append(spawn(self._run_kind(kind), name=f"controlplane-watch-{kind.kind}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks.clear()
