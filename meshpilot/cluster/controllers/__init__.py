"""Controllers and the process runtime of the local cluster.

The daemon creates one ``ControllerManager`` after the store and before serving the API, and
stops it on shutdown. Every controller is level-triggered: a watch event only says "look again",
and each pass reads the store (which is consistent and in-process) and drives the world towards
the objects' specs, so a missed or duplicated event never matters. Each also runs once a second
without events, for time-based transitions (minReadySeconds, progress deadlines).

The decisions live in sans-IO modules (``deployment``, ``replicaset``, ``endpoints``,
``disruption``); this module only reads, calls them and writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from meshpilot import tasks
from meshpilot.cluster import admission, namespaces
from meshpilot.cluster import events as ev
from meshpilot.cluster.controllers import deployment as deployment_logic
from meshpilot.cluster.controllers import disruption
from meshpilot.cluster.controllers import endpoints as endpoints_logic
from meshpilot.cluster.controllers import replicaset as replicaset_logic
from meshpilot.cluster.informer import watch_forever
from meshpilot.cluster.objects import (
    DEPLOYMENTS,
    ENDPOINTS,
    NAMESPACES,
    PDBS,
    PODS,
    REPLICASETS,
    SERVICEACCOUNTS,
    SERVICES,
    Obj,
    annotations_of,
    controller_ref,
    is_terminating,
    name_of,
    namespace_of,
    rfc3339,
    uid_of,
)
from meshpilot.cluster.runtime import ProcessRuntime
from meshpilot.cluster.serviceproxy import ServiceProxy
from meshpilot.cluster.state import ClusterInfo
from meshpilot.store import AlreadyExists, Conflict, NotFound, ResourceKey, Store, StoreError

log = logging.getLogger("meshpilot.cluster.controllers")

RESYNC = 1.0  # seconds between two passes of a controller when nothing happens
# kinds whose objects may be owned (garbage collection looks at these)
GC_KEYS: tuple[ResourceKey, ...] = (
    REPLICASETS,
    PODS,
    ENDPOINTS,
    SERVICES,
    ("", "configmaps"),
    ("", "secrets"),
    DEPLOYMENTS,
)


class Loop:
    """One controller: watches ``keys`` and runs ``reconcile`` on every change and every RESYNC."""

    def __init__(
        self, name: str, store: Store, keys: tuple[ResourceKey, ...], reconcile: Callable[[], None]
    ) -> None:
        self.name = name
        self.store = store
        self.keys = keys
        self.reconcile = reconcile
        self.dirty = asyncio.Event()
        self.passes = 0
        self.stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"<Loop {self.name} [{self.passes} passes]>"

    def start(self) -> None:
        for key in self.keys:
            self._tasks.append(
                tasks.spawn(watch_forever(self.store, key, self._poke), name=f"{self.name}: watch {key[1]}")
            )
        self._tasks.append(tasks.spawn(self._run(), name=f"controller {self.name}"))

    def _poke(self, _type: str, _obj: Obj) -> None:
        self.dirty.set()

    async def _run(self) -> None:
        while not self.stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESYNC):
                    await self.dirty.wait()
            self.dirty.clear()
            await asyncio.sleep(0.01)  # let a burst of events coalesce into one pass
            try:
                self.reconcile()
            except Conflict:
                self.dirty.set()  # somebody wrote first; look again
            except Exception:
                log.exception("controller %s failed", self.name)
                await asyncio.sleep(0.5)
            self.passes += 1

    async def stop(self) -> None:
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.contextmanager
def _one_object_at_a_time(kind: str, obj: Obj) -> Iterator[None]:
    """One broken object must not stall its controller for every other object.

    A Conflict still ends the pass (the loop reads again at once); anything else is logged with the
    object's name and the pass goes on to the next object.
    """
    try:
        yield
    except Conflict:
        raise
    except Exception:
        log.exception("%s %s/%s: reconcile failed", kind, namespace_of(obj), name_of(obj))


def scale_index(store: Store, namespace: str | None = None) -> dict[str, tuple[str, int]]:
    """ReplicaSet uid -> (uid of its top controller, that controller's replicas), for PDBs."""
    deployments, _ = store.list(DEPLOYMENTS, namespace=namespace)
    by_uid = {uid_of(d): d for d in deployments}
    out: dict[str, tuple[str, int]] = {}
    rses, _ = store.list(REPLICASETS, namespace=namespace)
    for rs in rses:
        ref = controller_ref(rs)
        owner = by_uid.get((ref or {}).get("uid", "")) if ref else None
        if owner is not None:
            out[uid_of(rs)] = (uid_of(owner), int(owner.get("spec", {}).get("replicas", 1)))
        else:
            out[uid_of(rs)] = (uid_of(rs), int(rs.get("spec", {}).get("replicas", 1)))
    return out


class ControllerManager:
    def __init__(self, store: Store, info: ClusterInfo) -> None:
        self.store = store
        self.info = info
        self.events = ev.EventRecorder(store)
        self.runtime = ProcessRuntime(store, info)
        self.runtime.events = self.events
        self.proxy = ServiceProxy(store, info)
        self.loops = [
            Loop("deployment", store, (DEPLOYMENTS, REPLICASETS, PODS), self.reconcile_deployments),
            Loop("replicaset", store, (REPLICASETS, PODS), self.reconcile_replicasets),
            Loop("endpoints", store, (SERVICES, PODS, ENDPOINTS), self.reconcile_endpoints),
            Loop("disruption", store, (PDBS, PODS), self.reconcile_disruption_budgets),
            Loop("serviceaccount", store, (NAMESPACES, SERVICEACCOUNTS), self.reconcile_service_accounts),
            Loop("garbage-collector", store, (DEPLOYMENTS, REPLICASETS, SERVICES), self.collect_garbage),
            Loop("namespace", store, (NAMESPACES, PODS), self.reconcile_namespaces),
            Loop("event-ttl", store, (), self.expire_events),
        ]
        self._started = False

    def __repr__(self) -> str:
        return f"<ControllerManager {self.info.name} {self.runtime!r} {self.proxy!r}>"

    async def start(self) -> None:
        """Adopt or restart the pods recorded in the store, then run every controller."""
        self.runtime.set_serving_check(self._serving)
        await self.runtime.start()
        await self.proxy.start()
        for loop in self.loops:
            loop.start()
        self._started = True

    async def stop(self, *, stop_pods: bool) -> None:
        """Stop the controllers; with ``stop_pods`` also terminate every process the cluster started."""
        for loop in self.loops:
            await loop.stop()
        await self.proxy.stop()
        await self.runtime.stop(stop_pods=stop_pods)
        self._started = False

    def _serving(self, ip: str) -> bool:
        if self.proxy.serves(ip):
            return True
        endpoints, _ = self.store.list(ENDPOINTS)
        return endpoints_logic.serves(endpoints, ip)

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until every controller made a pass after now (tests use it to avoid sleeping)."""
        marks = {id(loop): loop.passes for loop in self.loops}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(loop.passes <= marks[id(loop)] + 1 for loop in self.loops):
            for loop in self.loops:
                loop.dirty.set()
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------ writes with admission

    def create_pod(self, pod: Obj) -> Obj:
        from meshpilot.api import InvalidObject, validate

        try:
            pod = validate(pod)
        except InvalidObject as exc:
            log.error("pod template of %s is invalid: %s", pod.get("metadata", {}).get("generateName"), exc)
            raise
        pod = admission.admit(self.store, self.info, PODS, pod, "CREATE")
        with self.store.transaction():
            ns = namespace_of(pod)
            try:
                terminating = is_terminating(self.store.get(NAMESPACES, None, ns))
            except NotFound:
                terminating = False  # in-process test clusters run pods without Namespace objects
            if terminating:
                raise admission.AdmissionError(
                    f'pods "{name_of(pod) or pod["metadata"].get("generateName", "")}" is forbidden: unable to '
                    f"create new content in namespace {ns} because it is being terminated",
                    code=403,
                )
            return self.store.create(PODS, pod)

    # ------------------------------------------------------------ deployments

    def reconcile_deployments(self) -> None:
        deployments, _ = self.store.list(DEPLOYMENTS)
        if not deployments:
            return
        rses, _ = self.store.list(REPLICASETS)
        pods, _ = self.store.list(PODS)
        for deployment in deployments:
            if is_terminating(deployment):
                continue
            ns = namespace_of(deployment)
            mine = deployment_logic.owned_replica_sets(deployment, [r for r in rses if namespace_of(r) == ns])
            rs_uids = {uid_of(r) for r in mine}
            my_pods = [p for p in pods if (controller_ref(p) or {}).get("uid") in rs_uids]
            with _one_object_at_a_time("deployment", deployment):
                self._execute_deployment(deployment, deployment_logic.plan(deployment, mine, my_pods))

    def _execute_deployment(self, deployment: Obj, plan: deployment_logic.Plan) -> None:
        ns = namespace_of(deployment)
        for rs in plan.create:
            try:
                self.store.create(REPLICASETS, rs)
            except AlreadyExists:
                # same name, different template: a hash collision; the next pass uses a new hash
                count = int(deployment.get("status", {}).get("collisionCount") or 0) + 1
                self.store.patch(
                    DEPLOYMENTS,
                    ns,
                    name_of(deployment),
                    {"status": {"collisionCount": count}},
                    subresource="status",
                )
                return
            log.info("deployment %s/%s: created replicaset %s", ns, name_of(deployment), name_of(rs))
            replicas = int((rs.get("spec") or {}).get("replicas") or 0)
            if replicas > 0:
                self.events.event(
                    deployment,
                    "Normal",
                    "ScalingReplicaSet",
                    f"Scaled up replica set {name_of(rs)} to {replicas}",
                    ev.DEPLOYMENT_CONTROLLER,
                )
        for name, wanted in plan.annotate.items():
            self.store.patch(REPLICASETS, ns, name, {"metadata": {"annotations": wanted}})
        for name, replicas in plan.scale.items():
            log.info("deployment %s/%s: scale replicaset %s to %d", ns, name_of(deployment), name, replicas)
            before = self.store.get(REPLICASETS, ns, name)
            self.store.patch(REPLICASETS, ns, name, {"spec": {"replicas": replicas}})
            was = int((before.get("spec") or {}).get("replicas") or 0)
            if was != replicas:
                self.events.event(
                    deployment,
                    "Normal",
                    "ScalingReplicaSet",
                    f"Scaled {'up' if replicas > was else 'down'} replica set {name} to {replicas} from {was}",
                    ev.DEPLOYMENT_CONTROLLER,
                )
        for name in plan.delete:
            with contextlib.suppress(NotFound):
                self.store.delete(REPLICASETS, ns, name)
        if plan.deployment_annotations:
            self.store.patch(
                DEPLOYMENTS,
                ns,
                name_of(deployment),
                {"metadata": {"annotations": plan.deployment_annotations}},
            )
        if plan.status != deployment.get("status"):
            self.store.patch(
                DEPLOYMENTS,
                ns,
                name_of(deployment),
                {"status": _replace_nulls(plan.status, deployment.get("status"))},
                subresource="status",
            )

    # ------------------------------------------------------------ replicasets

    def reconcile_replicasets(self) -> None:
        rses, _ = self.store.list(REPLICASETS)
        if not rses:
            return
        pods, _ = self.store.list(PODS)
        for rs in rses:
            with _one_object_at_a_time("replicaset", rs):
                self._reconcile_replicaset(rs, pods)

    def _reconcile_replicaset(self, rs: Obj, pods: list[Obj]) -> None:
        ns = namespace_of(rs)
        ns_pods = [p for p in pods if namespace_of(p) == ns]
        for orphan in replicaset_logic.orphans_to_adopt(rs, ns_pods):
            refs = [*(orphan.get("metadata", {}).get("ownerReferences") or []), _owner(rs)]
            with contextlib.suppress(StoreError):
                self.store.patch(PODS, ns, name_of(orphan), {"metadata": {"ownerReferences": refs}})
        plan = replicaset_logic.plan(rs, ns_pods)
        failure = ""
        for pod in plan.create:
            try:
                created = self.create_pod(pod)
            except Exception as exc:
                failure = str(exc) or repr(exc)
                log.warning("replicaset %s/%s: cannot create pod: %s", ns, name_of(rs), failure)
                self.events.event(
                    rs, "Warning", "FailedCreate", f"Error creating: {failure}", ev.REPLICASET_CONTROLLER
                )
                break
            self.events.event(
                rs,
                "Normal",
                "SuccessfulCreate",
                f"Created pod: {name_of(created)}",
                ev.REPLICASET_CONTROLLER,
            )
        for name in plan.delete:
            with contextlib.suppress(NotFound):
                self.store.delete(PODS, ns, name)
                self.events.event(
                    rs, "Normal", "SuccessfulDelete", f"Deleted pod: {name}", ev.REPLICASET_CONTROLLER
                )
        if plan.create or plan.delete:
            # status follows what now exists
            pods_now, _ = self.store.list(PODS, namespace=ns)
            plan.status = replicaset_logic.plan(rs, pods_now).status
        old_failure = next(
            (
                c
                for c in (rs.get("status") or {}).get("conditions") or []
                if c.get("type") == "ReplicaFailure"
            ),
            None,
        )
        if failure:
            # Kubernetes' ReplicaFailure condition: why the ReplicaSet has fewer pods than wanted
            plan.status["conditions"] = [
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": failure[:500],
                    "lastTransitionTime": (old_failure or {}).get("lastTransitionTime") or rfc3339(),
                }
            ]
        if plan.status != rs.get("status"):
            with contextlib.suppress(NotFound):
                self.store.patch(
                    REPLICASETS,
                    ns,
                    name_of(rs),
                    {"status": _replace_nulls(plan.status, rs.get("status"))},
                    subresource="status",
                )

    # ------------------------------------------------------------ endpoints

    def reconcile_endpoints(self) -> None:
        services, _ = self.store.list(SERVICES)
        pods, _ = self.store.list(PODS)
        existing, _ = self.store.list(ENDPOINTS)
        by_name = {(namespace_of(e), name_of(e)): e for e in existing}
        wanted_names = set()
        for svc in services:
            key = (namespace_of(svc), name_of(svc))
            wanted_names.add(key)
            if not svc.get("spec", {}).get("selector"):
                continue  # selector-less Services have user-managed Endpoints
            want = endpoints_logic.desired_endpoints(svc, pods)
            have = by_name.get(key)
            if have is None:
                with contextlib.suppress(AlreadyExists):
                    self.store.create(ENDPOINTS, want)
                continue
            if have.get("subsets") != want["subsets"] or labels_differ(have, want):
                update = dict(have)
                update["subsets"] = want["subsets"]
                update["metadata"] = dict(have["metadata"])
                update["metadata"]["labels"] = want["metadata"]["labels"]
                update["metadata"]["annotations"] = {
                    **annotations_of(have),
                    **want["metadata"]["annotations"],
                }
                with contextlib.suppress(NotFound, Conflict):
                    self.store.update(ENDPOINTS, update)
        for key, ep in by_name.items():
            managed = annotations_of(ep).get(endpoints_logic.MANAGED_BY) == endpoints_logic.CONTROLLER_NAME
            if key not in wanted_names and managed:
                with contextlib.suppress(NotFound):
                    self.store.delete(ENDPOINTS, key[0], key[1])

    # ------------------------------------------------------------ disruption budgets

    def reconcile_disruption_budgets(self) -> None:
        budgets, _ = self.store.list(PDBS)
        if not budgets:
            return
        pods, _ = self.store.list(PODS)
        index = scale_index(self.store)
        for budget in budgets:
            status = disruption.budget_status(budget, pods, index)
            old = budget.get("status") or {}
            old_cond = {c.get("type"): c for c in old.get("conditions") or []}
            for cond in status["conditions"]:
                previous = old_cond.get(cond["type"])
                if previous and previous.get("status") == cond["status"]:
                    cond["lastTransitionTime"] = previous.get("lastTransitionTime")
                else:
                    cond["lastTransitionTime"] = rfc3339()
            if status != old:
                with contextlib.suppress(NotFound):
                    self.store.patch(
                        PDBS, namespace_of(budget), name_of(budget), {"status": status}, subresource="status"
                    )
                if not disruption.matching_pods(budget, pods):
                    # Kubernetes reports this on every sync; once per status change is enough here
                    self.events.event(
                        budget, "Normal", "NoPods", "No matching pods found", ev.DISRUPTION_CONTROLLER
                    )

    # ------------------------------------------------------------ service accounts

    def reconcile_service_accounts(self) -> None:
        namespaces, _ = self.store.list(NAMESPACES)
        accounts, _ = self.store.list(SERVICEACCOUNTS)
        have = {(namespace_of(a), name_of(a)) for a in accounts}
        for namespace in namespaces:
            ns = name_of(namespace)
            if is_terminating(namespace) or (ns, "default") in have:
                continue
            with contextlib.suppress(AlreadyExists, NotFound):
                self.store.create(
                    SERVICEACCOUNTS,
                    {
                        "apiVersion": "v1",
                        "kind": "ServiceAccount",
                        "metadata": {"name": "default", "namespace": ns},
                    },
                )

    # ------------------------------------------------------------ namespaces and events

    def reconcile_namespaces(self) -> None:
        """Finish deleting terminating namespaces: their content first, then the namespace."""
        listed, _ = self.store.list(NAMESPACES)
        for namespace in listed:
            if is_terminating(namespace):
                with contextlib.suppress(NotFound):
                    namespaces.terminate(self.store, namespace, rfc3339())

    def expire_events(self) -> None:
        """Events older than the TTL go (the recorder sweeps at most every quarter TTL)."""
        self.events.expire()

    # ------------------------------------------------------------ garbage collection

    def collect_garbage(self) -> None:
        """Delete objects all of whose owners are gone (background propagation)."""
        from meshpilot.api import NotServed, lookup

        cache: dict[tuple[ResourceKey, str], set[str]] = {}

        def owner_uids(key: ResourceKey, namespace: str) -> set[str]:
            if (key, namespace) not in cache:
                items, _ = self.store.list(key, namespace=namespace)
                cache[(key, namespace)] = {uid_of(i) for i in items if not is_terminating(i)}
            return cache[(key, namespace)]

        for key in GC_KEYS:
            items, _ = self.store.list(key)
            for obj in items:
                refs = obj.get("metadata", {}).get("ownerReferences") or []
                if not refs or is_terminating(obj):
                    continue
                alive = False
                for ref in refs:
                    try:
                        info = lookup(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
                    except NotServed:
                        alive = True  # an owner of a kind we cannot see: never collect
                        break
                    scope = namespace_of(obj) if info.namespaced else ""
                    if ref.get("uid") in owner_uids(info.key, scope):
                        alive = True
                        break
                if not alive:
                    log.info("garbage-collecting %s %s/%s", key[1], namespace_of(obj), name_of(obj))
                    with contextlib.suppress(NotFound):
                        self.store.delete(key, namespace_of(obj), name_of(obj))


def labels_differ(a: Obj, b: Obj) -> bool:
    return (a.get("metadata", {}).get("labels") or {}) != (b.get("metadata", {}).get("labels") or {})


def _owner(owner: Obj) -> Obj:
    from meshpilot.cluster.objects import owner_reference

    return owner_reference(owner)


def _replace_nulls(new: Obj, old: Obj | None) -> Obj:
    """A merge patch that turns the old status into ``new`` (keys that disappeared become null)."""
    patch: Obj = dict(new)
    for key in old or {}:
        if key not in new:
            patch[key] = None
    return patch


__all__ = ["ControllerManager", "Loop", "scale_index"]
