"""The versioned object store: SQLite underneath, Kubernetes' object semantics on top.

Every change gets the next value of one global revision counter, which becomes the object's
``metadata.resourceVersion`` and the key of a row in an event log. The log is what lets a watcher
resume after a restart or a dropped connection ("everything after resourceVersion 812"), exactly
like a Kubernetes watch; it is compacted beyond a bound, and asking for compacted history is
``Gone`` (HTTP 410), which tells the client to list again.

Concurrency model: one SQLite connection behind a re-entrant lock. Writers may be the daemon's
asyncio loop or worker threads; watchers live on an asyncio loop and get events through
``call_soon_threadsafe`` when the writer is another thread. Events are handed to watchers only
after the transaction that produced them commits, so a watcher never sees a change that was
rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import random
import sqlite3
import threading
import uuid
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from meshpilot.store.errors import AlreadyExists, Conflict, Gone, Invalid, NotFound
from meshpilot.store.selectors import (
    FieldSelector,
    LabelSelector,
    parse_field_selector,
    parse_label_selector,
)

ResourceKey = tuple[str, str]  # (group, plural), e.g. ("apps", "deployments")
EventType = Literal["ADDED", "MODIFIED", "DELETED"]
Obj = dict[str, Any]

PODS: ResourceKey = ("", "pods")
NAMESPACES: ResourceKey = ("", "namespaces")
DEFAULT_POD_GRACE_SECONDS = 30


def _finalizers(key: ResourceKey, obj: Mapping[str, Any]) -> list[str]:
    """What holds a deleted object back: ``metadata.finalizers``, and for a Namespace also
    ``spec.finalizers`` (``kubernetes``: the namespace controller empties it first)."""
    found = list((obj.get("metadata") or {}).get("finalizers") or [])
    if key == NAMESPACES:
        found += list((obj.get("spec") or {}).get("finalizers") or [])
    return found


DEFAULT_HISTORY = 10_000
# Events queued for one watcher that is not reading them. Past this the watcher is cut off with
# Gone (410), as kube-apiserver's cacher drops slow watchers: the client lists again, and a stuck
# client cannot grow the daemon's memory without bound.
DEFAULT_WATCH_BACKLOG = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    grp TEXT NOT NULL, plural TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    rv INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (grp, plural, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    rv INTEGER PRIMARY KEY, grp TEXT NOT NULL, plural TEXT NOT NULL, namespace TEXT NOT NULL,
    type TEXT NOT NULL, data TEXT NOT NULL, old TEXT
);
CREATE INDEX IF NOT EXISTS events_by_kind ON events (grp, plural, rv);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet: no vowels


def now_rfc3339(delta_seconds: float = 0) -> str:
    """Kubernetes' timestamp format (second precision, UTC, ``Z``)."""
    moment = datetime.now(UTC) + timedelta(seconds=delta_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def resource_name(key: ResourceKey) -> str:
    """``pods`` / ``deployments.apps``: how Kubernetes names a resource in error messages."""
    group, plural = key
    return f"{plural}.{group}" if group else plural


@dataclass(frozen=True)
class _Event:
    rv: int
    key: ResourceKey
    namespace: str
    type: EventType
    data: str
    old: str | None


@dataclass
class _Watcher:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[_Event | None]
    key: ResourceKey
    namespace: str | None
    closed: bool = field(default=False)
    fell_behind: bool = field(default=False)

    def wants(self, event: _Event) -> bool:
        return event.key == self.key and (self.namespace is None or event.namespace == self.namespace)


def _to_obj(text: str) -> Obj:
    obj: Obj = json.loads(text)
    return obj


def _without_rv(obj: Mapping[str, Any]) -> Obj:
    clone = dict(obj)
    metadata = dict(clone.get("metadata") or {})
    metadata.pop("resourceVersion", None)
    clone["metadata"] = metadata
    return clone


class Store:
    """Objects keyed by (group, plural, namespace, name); see docs/internals.md for the contract."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        history: int = DEFAULT_HISTORY,
        watch_backlog: int = DEFAULT_WATCH_BACKLOG,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self._history = max(1, history)
        self._watch_backlog = max(1, watch_backlog)
        self._lock = threading.RLock()
        if self.path is None:
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        self._db = db
        self._rev = max(int(self._meta("revision", "0")), self._max_event_rv())
        self._compacted = int(self._meta("compacted", "0"))
        self._depth = 0
        self._pending: list[_Event] = []
        self._watchers: list[_Watcher] = []
        self._closed = False

    # ---------------------------------------------------------------- plumbing

    def _meta(self, key: str, default: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else default

    def _max_event_rv(self) -> int:
        row = self._db.execute("SELECT MAX(rv) FROM events").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "memory"
        return f"<Store {where} revision={self._rev} watchers={len(self._watchers)}>"

    @property
    def revision(self) -> int:
        """The resourceVersion of the latest change (0 for an empty store)."""
        return self._rev

    def close(self) -> None:
        """End every watch and close the database."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for watcher in list(self._watchers):
                self._deliver(watcher, None)
            self._watchers.clear()
            self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Store]:
        """Everything inside commits together or not at all; nested uses become savepoints.

        Other threads wait for the lock, so keep transactions short and never ``await`` inside one.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("store is closed")
            depth = self._depth
            saved_rev, saved_pending = self._rev, len(self._pending)
            savepoint = f"sp{depth}"
            self._db.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {savepoint}")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                self._rev = saved_rev
                del self._pending[saved_pending:]
                if depth == 0:
                    self._db.execute("ROLLBACK")
                else:
                    self._db.execute(f"ROLLBACK TO {savepoint}")
                    self._db.execute(f"RELEASE {savepoint}")
                raise
            self._depth -= 1
            if depth > 0:
                self._db.execute(f"RELEASE {savepoint}")
                return
            try:
                if self._rev != saved_rev:
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('revision', ?)", (str(self._rev),)
                    )
                    self._compact()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._rev = saved_rev
                self._pending.clear()
                raise
            events, self._pending = self._pending, []
            for event in events:
                for watcher in list(self._watchers):
                    if watcher.wants(event):
                        self._deliver(watcher, event)

    def _compact(self) -> None:
        if self._rev - self._compacted <= self._history + self._history // 10:
            return
        self._compacted = self._rev - self._history
        self._db.execute("DELETE FROM events WHERE rv <= ?", (self._compacted,))
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('compacted', ?)", (str(self._compacted),)
        )

    def _deliver(self, watcher: _Watcher, event: _Event | None) -> None:
        if watcher.closed:
            return
        if event is not None and watcher.queue.qsize() >= self._watch_backlog:
            # Not reading: end its queue here; the watch raises Gone once it drains this far.
            watcher.fell_behind = True
            event = None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        try:
            if running is watcher.loop:
                watcher.queue.put_nowait(event)
            else:
                watcher.loop.call_soon_threadsafe(watcher.queue.put_nowait, event)
        except RuntimeError:  # the watcher's loop is closed: nobody is listening any more
            event = None
        if event is None:
            watcher.closed = True
            with contextlib.suppress(ValueError):
                self._watchers.remove(watcher)

    def _load(self, key: ResourceKey, namespace: str, name: str) -> Obj | None:
        row = self._db.execute(
            "SELECT data FROM objects WHERE grp = ? AND plural = ? AND namespace = ? AND name = ?",
            (key[0], key[1], namespace, name),
        ).fetchone()
        return _to_obj(row[0]) if row else None

    def _write(self, key: ResourceKey, obj: Obj, type_: EventType, old: Obj | None) -> Obj:
        self._rev += 1
        metadata = obj["metadata"]
        metadata["resourceVersion"] = str(self._rev)
        namespace = metadata.get("namespace") or ""
        data = json.dumps(obj, separators=(",", ":"))
        if type_ == "DELETED":
            self._db.execute(
                "DELETE FROM objects WHERE grp = ? AND plural = ? AND namespace = ? AND name = ?",
                (key[0], key[1], namespace, metadata["name"]),
            )
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO objects (grp, plural, namespace, name, rv, data) VALUES (?,?,?,?,?,?)",
                (key[0], key[1], namespace, metadata["name"], self._rev, data),
            )
        old_data = json.dumps(old, separators=(",", ":")) if old is not None else None
        self._db.execute(
            "INSERT INTO events (rv, grp, plural, namespace, type, data, old) VALUES (?,?,?,?,?,?,?)",
            (self._rev, key[0], key[1], namespace, type_, data, old_data),
        )
        self._pending.append(_Event(self._rev, key, namespace, type_, data, old_data))
        return obj

    @staticmethod
    def _not_found(key: ResourceKey, name: str) -> NotFound:
        return NotFound(
            f'{resource_name(key)} "{name}" not found',
            details={"name": name, "group": key[0], "kind": key[1]},
        )

    # ---------------------------------------------------------------- reads

    def get(self, key: ResourceKey, namespace: str | None, name: str) -> Obj:
        """The stored object (a fresh dict the caller may mutate); ``NotFound``."""
        with self._lock:
            obj = self._load(key, namespace or "", name)
        if obj is None:
            raise self._not_found(key, name)
        return obj

    def list(
        self,
        key: ResourceKey,
        namespace: str | None = None,
        label_selector: str | LabelSelector | None = None,
        field_selector: str | FieldSelector | None = None,
    ) -> tuple[list[Obj], str]:
        """Matching objects ordered by namespace and name, and the revision they were read at."""
        labels = _labels(label_selector)
        fields = _fields(field_selector)
        with self._lock:
            if namespace is None:
                rows = self._db.execute(
                    "SELECT data FROM objects WHERE grp = ? AND plural = ? ORDER BY namespace, name", key
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT data FROM objects WHERE grp = ? AND plural = ? AND namespace = ? ORDER BY name",
                    (key[0], key[1], namespace),
                ).fetchall()
            revision = str(self._rev)
        items = []
        for (data,) in rows:
            obj = _to_obj(data)
            if labels.matches_object(obj) and fields.matches(obj):
                items.append(obj)
        return items, revision

    # ---------------------------------------------------------------- writes

    def create(self, key: ResourceKey, obj: Mapping[str, Any]) -> Obj:
        """Store a new object with uid, resourceVersion, generation 1 and creationTimestamp."""
        new: Obj = copy.deepcopy(dict(obj))
        metadata = new.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise Invalid("metadata: must be an object")
        with self.transaction():
            name = metadata.get("name")
            if not name and metadata.get("generateName"):
                for _ in range(20):
                    candidate = str(metadata["generateName"]) + "".join(
                        random.choices(_NAME_SUFFIX_ALPHABET, k=5)
                    )
                    if self._load(key, metadata.get("namespace") or "", candidate) is None:
                        name = candidate
                        break
            if not name or not isinstance(name, str):
                raise Invalid("metadata.name: Required value: name or generateName is required")
            metadata["name"] = name
            namespace = metadata.get("namespace") or ""
            if self._load(key, namespace, name) is not None:
                raise AlreadyExists(
                    f'{resource_name(key)} "{name}" already exists',
                    details={"name": name, "group": key[0], "kind": key[1]},
                )
            metadata.pop("resourceVersion", None)
            metadata.pop("deletionTimestamp", None)
            metadata.pop("deletionGracePeriodSeconds", None)
            metadata["uid"] = str(uuid.uuid4())
            metadata["generation"] = 1
            metadata["creationTimestamp"] = now_rfc3339()
            return copy.deepcopy(self._write(key, new, "ADDED", None))

    def update(self, key: ResourceKey, obj: Mapping[str, Any], subresource: str | None = None) -> Obj:
        """Replace an object (or only its status with ``subresource="status"``).

        A ``metadata.resourceVersion`` in ``obj`` must equal the stored one (``Conflict``). The main
        resource never changes status and the status subresource changes nothing else, as in
        Kubernetes. An update that changes nothing writes nothing and keeps the resourceVersion.
        """
        metadata = obj.get("metadata") or {}
        name = metadata.get("name")
        if not name:
            raise Invalid("metadata.name: Required value")
        namespace = metadata.get("namespace") or ""
        with self.transaction():
            old = self._load(key, namespace, name)
            if old is None:
                raise self._not_found(key, name)
            return self._update(key, old, obj, subresource)

    def _update(self, key: ResourceKey, old: Obj, obj: Mapping[str, Any], subresource: str | None) -> Obj:
        old_meta = old["metadata"]
        wanted_rv = (obj.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and str(wanted_rv) != old_meta["resourceVersion"]:
            raise Conflict(
                f'Operation cannot be fulfilled on {resource_name(key)} "{old_meta["name"]}": the object '
                "has been modified; please apply your changes to the latest version and try again",
                details={"name": old_meta["name"], "group": key[0], "kind": key[1]},
            )
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in obj:
                new["status"] = copy.deepcopy(obj["status"])
            else:
                new.pop("status", None)
        elif subresource is None:
            new = copy.deepcopy(dict(obj))
            new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            if not isinstance(new.get("metadata"), dict):
                raise Invalid("metadata: must be an object")
            meta = new["metadata"]
            for kept in ("name", "namespace", "uid", "creationTimestamp", "generation"):
                if kept in old_meta:
                    meta[kept] = old_meta[kept]
            for kept in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                if kept in old_meta:
                    meta[kept] = old_meta[kept]
                else:
                    meta.pop(kept, None)
            if new.get("spec") != old.get("spec"):
                meta["generation"] = int(old_meta.get("generation", 1)) + 1
        else:
            raise Invalid(f"unknown subresource {subresource!r}")
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        if _without_rv(new) == _without_rv(old):
            return old
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not _finalizers(key, new):
            if key != PODS or int(meta.get("deletionGracePeriodSeconds") or 0) == 0:
                return copy.deepcopy(self._write(key, new, "DELETED", None))
        return copy.deepcopy(self._write(key, new, "MODIFIED", old))

    def patch(
        self,
        key: ResourceKey,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        subresource: str | None = None,
    ) -> Obj:
        """Apply an RFC 7386 merge patch to the stored object (or its status)."""
        if not isinstance(patch, Mapping):
            raise Invalid("a merge patch must be a JSON object")
        with self.transaction():
            old = self._load(key, namespace or "", name)
            if old is None:
                raise self._not_found(key, name)
            patched = merge_patch(old, patch)
            if not isinstance(patched.get("metadata"), dict):
                raise Invalid("metadata: must be an object")
            patched["metadata"]["name"] = name
            if namespace:
                patched["metadata"]["namespace"] = namespace
            if "resourceVersion" not in (patch.get("metadata") or {}):
                patched["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            return self._update(key, old, patched, subresource)

    def delete(
        self,
        key: ResourceKey,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        resource_version: str | None = None,
        uid: str | None = None,
    ) -> Obj:
        """Delete now, or mark for deletion and return the marked object.

        Pods are deleted gracefully: they get ``deletionTimestamp`` (now + grace) and
        ``deletionGracePeriodSeconds`` and stay until someone deletes them with grace 0 (the
        runtime, once the processes have stopped). Objects with ``metadata.finalizers`` (and
        Namespaces with ``spec.finalizers``, which also turn ``status.phase: Terminating``) stay
        until the last finalizer is removed. Returns the object's last state either way.
        """
        with self.transaction():
            old = self._load(key, namespace or "", name)
            if old is None:
                raise self._not_found(key, name)
            meta = old["metadata"]
            if resource_version and resource_version != meta["resourceVersion"]:
                raise Conflict(
                    f'Operation cannot be fulfilled on {resource_name(key)} "{name}": the '
                    "ResourceVersion in the precondition does not match",
                )
            if uid and uid != meta.get("uid"):
                raise Conflict(
                    f'Operation cannot be fulfilled on {resource_name(key)} "{name}": the UID in the '
                    "precondition does not match",
                )
            finalizers = _finalizers(key, old)
            grace = 0
            if key == PODS:
                if grace_period_seconds is not None:
                    grace = max(0, int(grace_period_seconds))
                else:
                    spec_grace = (old.get("spec") or {}).get("terminationGracePeriodSeconds")
                    grace = int(spec_grace) if spec_grace is not None else DEFAULT_POD_GRACE_SECONDS
                if (old.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    grace = 0
            if grace == 0 and not finalizers:
                new = copy.deepcopy(old)
                return copy.deepcopy(self._write(key, new, "DELETED", None))
            current = meta.get("deletionGracePeriodSeconds")
            if meta.get("deletionTimestamp") and (current is None or grace >= int(current)):
                return old  # already terminating, and not asked to hurry up
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = now_rfc3339(grace)
            new["metadata"]["deletionGracePeriodSeconds"] = grace
            if key == NAMESPACES:
                new.setdefault("status", {})["phase"] = "Terminating"
            return copy.deepcopy(self._write(key, new, "MODIFIED", old))

    # ---------------------------------------------------------------- watch

    async def watch(
        self,
        key: ResourceKey,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | LabelSelector | None = None,
        field_selector: str | FieldSelector | None = None,
    ) -> AsyncGenerator[tuple[EventType, Obj], None]:
        """Changes as ``(type, object)``: history after ``resource_version``, then live.

        Without a resourceVersion (or with "0") the watch starts with a synthetic ``ADDED`` for
        every existing object, as Kubernetes does. With a selector, an object that stops matching
        arrives as ``DELETED`` and one that starts matching as ``ADDED``.
        """
        labels = _labels(label_selector)
        fields = _fields(field_selector)
        loop = asyncio.get_running_loop()
        watcher = _Watcher(loop, asyncio.Queue(), key, namespace)
        backlog: list[_Event] = []
        with self._lock:
            if self._closed:
                return
            if resource_version in (None, "", "0"):
                start = self._rev
                items, _ = self.list(key, namespace)
                for item in items:
                    rv = int(item["metadata"]["resourceVersion"])
                    backlog.append(
                        _Event(
                            rv, key, namespace or "", "ADDED", json.dumps(item, separators=(",", ":")), None
                        )
                    )
            else:
                try:
                    start = int(str(resource_version))
                except ValueError:
                    raise Invalid(f"resourceVersion: invalid value {resource_version!r}") from None
                if start < self._compacted:
                    raise Gone(f"too old resource version: {start} ({self._compacted + 1})")
                query = "SELECT rv, namespace, type, data, old FROM events WHERE grp = ? AND plural = ? AND rv > ?"
                params: tuple[Any, ...] = (key[0], key[1], start)
                if namespace is not None:
                    query += " AND namespace = ?"
                    params += (namespace,)
                for rv, ns, type_, data, old in self._db.execute(query + " ORDER BY rv", params):
                    backlog.append(_Event(int(rv), key, ns, type_, data, old))
                start = max(start, self._rev)
            self._watchers.append(watcher)
        try:
            for event in backlog:
                out = _filter(event, labels, fields)
                if out is not None:
                    yield out
            while True:
                pending = await watcher.queue.get()
                if pending is None:
                    if watcher.fell_behind:
                        raise Gone(
                            f"watch of {key[1]} fell {self._watch_backlog} events behind and was closed; list again"
                        )
                    return
                if pending.rv <= start:
                    continue
                out = _filter(pending, labels, fields)
                if out is not None:
                    yield out
        finally:
            watcher.closed = True
            with self._lock, contextlib.suppress(ValueError):
                self._watchers.remove(watcher)


def _labels(selector: str | LabelSelector | None) -> LabelSelector:
    return selector if isinstance(selector, LabelSelector) else parse_label_selector(selector)


def _fields(selector: str | FieldSelector | None) -> FieldSelector:
    return selector if isinstance(selector, FieldSelector) else parse_field_selector(selector)


def _filter(event: _Event, labels: LabelSelector, fields: FieldSelector) -> tuple[EventType, Obj] | None:
    """Apply a watch's selectors, turning matches that start or stop into ADDED / DELETED."""
    obj = _to_obj(event.data)
    if not labels and not fields:
        return event.type, obj

    def matches(candidate: Obj) -> bool:
        return labels.matches_object(candidate) and fields.matches(candidate)

    now = matches(obj)
    if event.type != "MODIFIED":
        return (event.type, obj) if now else None
    before = event.old is not None and matches(_to_obj(event.old))
    if now and before:
        return "MODIFIED", obj
    if now:
        return "ADDED", obj
    if before:
        return "DELETED", obj
    return None
