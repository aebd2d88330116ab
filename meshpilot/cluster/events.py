"""Events: what the controllers and the runtime did to an object, and why (``kubectl describe``).

An Event is a report, never state anybody acts on, so recording one must not slow or break its
caller: every failure is swallowed (and logged at debug level), the work per call is one or two
store writes, and a noisy object is throttled. Repeated events aggregate as Kubernetes' event
correlator does: the same object, reason, message, type and source make one Event whose ``count``
grows and whose ``lastTimestamp`` moves. The API server keeps events for a TTL only (kube-apiserver's
``--event-ttl``, 1 h by default); ``EventRecorder.expire`` deletes the older ones, so the store does
not grow for ever.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Literal

from meshpilot.store import AlreadyExists, NotFound, ResourceKey, Store

log = logging.getLogger("meshpilot.cluster.events")

Obj = dict[str, Any]
EventType = Literal["Normal", "Warning"]

EVENTS: ResourceKey = ("", "events")
NAMESPACES: ResourceKey = ("", "namespaces")
TTL_ENV = "MESHPILOT_EVENT_TTL_SECONDS"
DEFAULT_TTL = 3600.0  # kube-apiserver's --event-ttl default
NODE_NAME = "meshpilot"  # the one "node": what spec.nodeName fieldRefs resolve to as well

# Source components, as Kubernetes names them.
DEPLOYMENT_CONTROLLER = "deployment-controller"
REPLICASET_CONTROLLER = "replicaset-controller"
DISRUPTION_CONTROLLER = "controllermanager"
SCHEDULER = "default-scheduler"
KUBELET = "kubelet"

# client-go's spam filter: a burst of 25 events per source and object, then one per 5 minutes.
SPAM_BURST = 25
SPAM_REFILL_SECONDS = 300.0
CACHE_SIZE = 4096  # remembered aggregation keys (client-go's LRU holds as many)
# client-go's aggregator: the 10th distinct message of one reason about one object within 10
# minutes turns them into one Event whose message says so and whose count keeps growing.
SIMILAR_MAX = 10
SIMILAR_WINDOW = 600.0
COMBINED = "(combined from similar events): "


def event_ttl() -> float:
    """The TTL from ``$MESHPILOT_EVENT_TTL_SECONDS`` (tests shorten it), else one hour."""
    try:
        return max(0.1, float(os.environ.get(TTL_ENV, DEFAULT_TTL)))
    except ValueError:
        return DEFAULT_TTL


def _stamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: Any) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def involved_object(obj: Obj, field_path: str | None = None) -> Obj:
    """The ObjectReference an Event carries for ``obj``."""
    meta = obj.get("metadata") or {}
    ref: Obj = {
        "apiVersion": obj.get("apiVersion") or "v1",
        "kind": obj.get("kind") or "",
        "name": meta.get("name") or "",
        "uid": meta.get("uid") or "",
    }
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    if meta.get("resourceVersion"):
        ref["resourceVersion"] = meta["resourceVersion"]
    if field_path:
        ref["fieldPath"] = field_path
    return ref


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class EventRecorder:
    """Writes Events to the store, aggregating repeats, throttling floods, expiring old ones."""

    def __init__(
        self,
        store: Store,
        *,
        host: str = NODE_NAME,
        ttl: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.host = host
        self.ttl = event_ttl() if ttl is None else ttl
        self.clock = clock
        self.recorded = 0
        self.dropped = 0
        self._names: collections.OrderedDict[tuple[str, ...], tuple[str, str]] = collections.OrderedDict()
        self._buckets: collections.OrderedDict[tuple[str, ...], _Bucket] = collections.OrderedDict()
        self._similar: collections.OrderedDict[tuple[str, ...], tuple[set[str], float]] = (
            collections.OrderedDict()
        )
        self._seq = 0
        self._last_sweep = 0.0

    def __repr__(self) -> str:
        return f"<EventRecorder [{self.recorded} recorded, {self.dropped} dropped, ttl {self.ttl:g}s]>"

    def event(
        self,
        obj: Obj,
        type_: EventType,
        reason: str,
        message: str,
        component: str,
        *,
        field_path: str | None = None,
    ) -> Obj | None:
        """Record (or count again) an Event about ``obj``; best effort, never raises."""
        try:
            return self._event(obj, type_, reason, message, component, field_path)
        except Exception as exc:  # an Event must never break the controller that reports it
            self.dropped += 1
            log.debug("event %s about %s dropped: %r", reason, (obj.get("metadata") or {}).get("name"), exc)
            return None

    def _combine(self, similar: tuple[str, ...], message: str, now: float) -> bool:
        """Has this object had SIMILAR_MAX distinct messages for one reason lately?"""
        messages, last = self._similar.get(similar, (set(), now))
        if now - last > SIMILAR_WINDOW:
            messages = set()
        if len(messages) < SIMILAR_MAX:
            messages.add(message)
        self._similar[similar] = (messages, now)
        self._similar.move_to_end(similar)
        if len(self._similar) > CACHE_SIZE:
            self._similar.popitem(last=False)
        return len(messages) >= SIMILAR_MAX

    def _allowed(self, key: tuple[str, ...], now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(SPAM_BURST), now)
            if len(self._buckets) > CACHE_SIZE:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(SPAM_BURST), bucket.tokens + (now - bucket.stamp) / SPAM_REFILL_SECONDS)
            bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _event(
        self, obj: Obj, type_: EventType, reason: str, message: str, component: str, field_path: str | None
    ) -> Obj | None:
        ref = involved_object(obj, field_path)
        namespace = str(ref.get("namespace") or "default")
        now = self.clock()
        spam_key = (component, ref["kind"], namespace, ref["name"], ref["uid"], reason)
        if not self._allowed(spam_key, now):
            self.dropped += 1
            return None
        # Kubernetes refuses new content in a namespace that is gone or being terminated; so do we.
        try:
            ns = self.store.get(NAMESPACES, None, namespace)
        except NotFound:
            self.dropped += 1
            return None
        if (ns.get("metadata") or {}).get("deletionTimestamp"):
            self.dropped += 1
            return None
        message = message[:1024]  # Kubernetes caps an Event's message at 1 kB
        similar: tuple[str, ...] = (component, self.host, ref["kind"], namespace, ref["name"], ref["uid"])
        similar += (field_path or "", type_, reason)
        key = (*similar, message)
        if self._combine(similar, message, now):
            key = (*similar, COMBINED)
            message = (COMBINED + message)[:1024]
        stamp = _stamp(now)
        known = self._names.get(key)
        if known is not None:
            self._names.move_to_end(key)
            try:
                current = self.store.get(EVENTS, known[0], known[1])
            except NotFound:
                current = None  # expired or deleted: start a new one
            if current is not None:
                count = int(current.get("count") or 1) + 1
                change: Obj = {"count": count, "lastTimestamp": stamp}
                if current.get("message") != message:
                    change["message"] = message  # a combined event shows the latest message
                updated = self.store.patch(EVENTS, known[0], known[1], change)
                self.recorded += 1
                return updated
        self._seq += 1
        name = f"{ref['name']}.{time.time_ns() + self._seq:x}"
        event: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "source": {"component": component, "host": self.host},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": type_,
            "reportingComponent": component,
            "reportingInstance": self.host,
        }
        try:
            created = self.store.create(EVENTS, event)
        except AlreadyExists:
            return None
        self._names[key] = (namespace, name)
        if len(self._names) > CACHE_SIZE:
            self._names.popitem(last=False)
        self.recorded += 1
        return created

    def expire(self, *, force: bool = False) -> int:
        """Delete Events not seen again within the TTL; returns how many went.

        Listing every Event costs, so without ``force`` this sweeps at most every quarter TTL
        (and at least every 30 s); callers may call it as often as they like.
        """
        now = self.clock()
        interval = min(30.0, self.ttl / 4)
        if not force and now - self._last_sweep < interval:
            return 0
        self._last_sweep = now
        items, _ = self.store.list(EVENTS)
        gone = 0
        for item in items:
            seen = _parse(item.get("lastTimestamp")) or _parse(item.get("eventTime"))
            seen = seen or _parse((item.get("metadata") or {}).get("creationTimestamp"))
            if seen is not None and now - seen < self.ttl:
                continue
            meta = item.get("metadata") or {}
            try:
                self.store.delete(EVENTS, meta.get("namespace"), str(meta.get("name")))
            except NotFound:
                continue
            gone += 1
        return gone


__all__ = [
    "DEFAULT_TTL",
    "DEPLOYMENT_CONTROLLER",
    "DISRUPTION_CONTROLLER",
    "EVENTS",
    "KUBELET",
    "NODE_NAME",
    "REPLICASET_CONTROLLER",
    "SCHEDULER",
    "TTL_ENV",
    "EventRecorder",
    "event_ttl",
    "involved_object",
]
