"""The local cluster's HTTP API, shaped like Kubernetes' REST API.

The shape is the point: lightkube, kubectl-style tools and our own client speak to it unchanged,
so everything above the cluster (rollouts, diagnosis, the CLI) has one code path for the local
cluster and a real one. URLs, discovery documents, list and watch envelopes and ``Status`` error
objects follow Kubernetes; the served kinds come from ``meshpilot.api.registry``.

Objects are stored in their kind's storage version and answered in the version the URL names
(Istio serves the same schema under several versions, so this is a relabelling, not a
conversion).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hmac
import json
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import yaml
from aiohttp import web

from meshpilot.api import registry
from meshpilot.api.enforcement import not_enforced
from meshpilot.api.errors import InvalidObject, NotServed
from meshpilot.cluster import admission, apitables, eviction, namespaces
from meshpilot.cluster.objects import rfc3339 as rfc3339_now
from meshpilot.cluster.state import ClusterInfo
from meshpilot.store import (
    AlreadyExists,
    NotFound,
    SelectorError,
    Store,
    StoreError,
    merge_patch,
    parse_label_selector,
    resource_name,
)

log = logging.getLogger("meshpilot.cluster.apiserver")

KindInfo = registry.KindInfo
Obj = dict[str, Any]

KUBERNETES_VERSION = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0-meshpilot",
    "platform": "linux/amd64",
}
UNAUTHENTICATED_PATHS = frozenset({"/readyz", "/healthz", "/livez", "/version"})
MESHPILOT_GROUP = "meshpilot.io"
PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})
MESHPILOT_VERSION = "v1alpha1"

# Subresources each kind serves, in discovery and in routing.
SUBRESOURCES: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): ("status", "log", "eviction"),
    ("apps", "deployments"): ("status", "scale"),
    ("apps", "replicasets"): ("status", "scale"),
    ("apps", "statefulsets"): ("status", "scale"),
}
NO_STATUS = frozenset(
    {("", "configmaps"), ("", "secrets"), ("", "serviceaccounts"), ("", "endpoints"), ("", "events")}
)
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
MERGE_PATCH_TYPES = frozenset(
    {"application/merge-patch+json", "application/strategic-merge-patch+json", "application/json"}
)


class ApiFailure(Exception):
    """An error answered as a Kubernetes ``Status`` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details or {})

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def json_response(body: Any, status: int = 200) -> web.Response:
    """JSON with exactly ``Content-Type: application/json`` (no charset), as Kubernetes answers.

    Some clients (lightkube) compare the header verbatim before decoding a ``Status`` error.
    """
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        headers={"Content-Type": "application/json"},
    )


def warning_value(text: str) -> str:
    """A ``Warning`` header value as kube-apiserver writes it (code 299, agent ``-``, quoted text)."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return '299 - "' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'


def with_warnings(response: web.Response, *objects: Obj) -> web.Response:
    """Tell the client what it just stored that the local mesh does not act on (``meshpilot.api.enforcement``).

    kubectl, client-go and ``meshpilot.client`` print these headers, as they do for deprecations.
    """
    for obj in objects:
        for text in not_enforced(obj):
            response.headers.add("Warning", warning_value(text))
    return response


def status_response(failure: ApiFailure) -> web.Response:
    return json_response(failure.status(), status=failure.code)


def from_store_error(exc: StoreError) -> ApiFailure:
    return ApiFailure(exc.code, exc.reason, exc.message, details=exc.details)


def invalid(info: KindInfo, name: str, exc: InvalidObject) -> ApiFailure:
    """422 with one cause per field error, as Kubernetes reports validation failures."""
    causes = [{"reason": "FieldValueInvalid", "message": e.message, "field": e.field} for e in exc.errors]
    summary = "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in exc.errors)
    return ApiFailure(
        422,
        "Invalid",
        f'{info.kind}{"." + info.group if info.group else ""} "{name}" is invalid: {summary}',
        details={"name": name, "group": info.group, "kind": info.kind, "causes": causes},
    )


def bad_request(message: str) -> ApiFailure:
    return ApiFailure(400, "BadRequest", message)


def not_found_path(path: str) -> ApiFailure:
    return ApiFailure(404, "NotFound", f"the server could not find the requested resource ({path})")


def _api_version(info: KindInfo, version: str) -> str:
    return f"{info.group}/{version}" if info.group else version


def present(obj: Obj, info: KindInfo, version: str) -> Obj:
    """The object as the URL's version shows it."""
    obj["apiVersion"] = _api_version(info, version)
    obj["kind"] = info.kind
    return obj


def validate(obj: Obj) -> Obj:
    from meshpilot.api import validate as api_validate

    result: Obj = api_validate(obj)
    return result


@dataclass(frozen=True)
class Target:
    """What a resource URL addresses."""

    info: KindInfo
    version: str
    namespace: str | None
    name: str | None
    subresource: str | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.info.group, self.info.plural)


def three_way_patch(last: Any, desired: Any) -> Any:
    """The merge patch that takes what was applied last time to what is applied now.

    Fields the user stops applying are removed; fields set by the server or by controllers (a
    Service's clusterIP, a Deployment's revision annotation) are left alone, as kubectl's
    client-side apply does with its last-applied annotation. Lists are replaced whole.
    """
    if not isinstance(desired, Mapping):
        return copy.deepcopy(desired)
    patch: Obj = {}
    last_map = last if isinstance(last, Mapping) else {}
    for key, value in desired.items():
        if isinstance(value, Mapping) and isinstance(last_map.get(key), Mapping):
            patch[key] = three_way_patch(last_map[key], value)
        else:
            patch[key] = copy.deepcopy(value)
    for key in last_map:
        if key not in desired:
            patch[key] = None
    return patch


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class ApiServer:
    """Routes Kubernetes-shaped requests to the store; one instance per daemon."""

    def __init__(self, store: Store, info: ClusterInfo) -> None:
        self.store = store
        self.info = info
        self.ready = False
        self._streams: set[asyncio.Task[Any]] = set()
        self.app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(
        self,
        host: str,
        port: int,
        *,
        sock: socket.socket | None = None,
        secure: tuple[socket.socket, ssl.SSLContext] | None = None,
    ) -> int:
        """Listen on host:port (port 0 picks one), or on an already bound ``sock``; returns the port.

        ``secure`` adds an HTTPS listener (a bound socket and its TLS context) serving the same API.
        """
        # handler_cancellation: a watch or log stream whose client went away must end (and stop
        # holding a store watcher) even when no event arrives to fail a write.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2, handler_cancellation=True)
        await self._runner.setup()
        site: web.BaseSite
        if sock is not None:
            site = web.SockSite(self._runner, sock)
        else:
            site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        if secure is not None:
            await web.SockSite(self._runner, secure[0], ssl_context=secure[1]).start()
        addresses = self._runner.addresses
        bound = int(addresses[0][1]) if addresses else port
        self.ready = True
        return bound

    async def stop(self) -> None:
        """Stop listening and end every open watch and log stream."""
        self.ready = False
        for task in list(self._streams):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _pod_metrics(self, rest: list[str], request: web.Request, path: str) -> web.Response:
        """metrics.k8s.io/v1beta1 PodMetricsList, measured by the process runtime (``top pods``)."""
        from meshpilot.cluster.runtime import pod_metrics

        if rest == ["pods"]:
            namespace = None
        elif len(rest) == 3 and rest[0] == "namespaces":
            namespace = rest[1]
        else:
            raise not_found_path(path)
        items = pod_metrics(
            self.store, self.info, namespace=namespace, label_selector=request.query.get("labelSelector")
        )
        return json_response(
            {"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items}
        )

    # ------------------------------------------------------------ plumbing

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in UNAUTHENTICATED_PATHS:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), self.info.token):
                return status_response(ApiFailure(401, "Unauthorized", "Unauthorized"))
        try:
            return await handler(request)
        except ApiFailure as exc:
            return status_response(exc)
        except StoreError as exc:
            return status_response(from_store_error(exc))
        except SelectorError as exc:
            return status_response(bad_request(str(exc)))
        except admission.AdmissionError as exc:
            reason = "Forbidden" if exc.code == 403 else "Invalid"
            return status_response(ApiFailure(exc.code, reason, str(exc)))
        except web.HTTPException:
            raise
        except Exception as exc:
            log.exception("internal error serving %s %s", request.method, request.path)
            return status_response(ApiFailure(500, "InternalError", f"internal error: {exc!r}"))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in ("/readyz", "/healthz", "/livez"):
            if not self.ready:
                return web.Response(status=503, text="not ready")
            return web.Response(text="ok")
        if path == "/version":
            return json_response(KUBERNETES_VERSION)
        parts = [p for p in path.split("/") if p]
        method = request.method
        if parts[:3] == ["apis", "metrics.k8s.io", "v1beta1"] and method == "GET" and parts[-1:] == ["pods"]:
            return self._pod_metrics(parts[3:], request, path)
        if parts == ["api"]:
            return json_response(self._api_versions(request))
        if parts == ["apis"]:
            return json_response(self._group_list())
        if parts == ["api", "v1"]:
            return json_response(self._resource_list("", "v1"))
        if len(parts) == 2 and parts[0] == "apis":
            return json_response(self._group(parts[1]))
        if len(parts) == 3 and parts[0] == "apis":
            return json_response(self._resource_list(parts[1], parts[2]))
        if parts == ["apis", MESHPILOT_GROUP, MESHPILOT_VERSION, "apply"] and method == "POST":
            return await self._apply(request)
        if parts[:1] == ["api"] and len(parts) >= 3 and parts[1] == "v1":
            target = self._target("", "v1", parts[2:], path)
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            target = self._target(parts[1], parts[2], parts[3:], path)
        else:
            raise not_found_path(path)
        return await self._serve(request, target)

    def _target(self, group: str, version: str, rest: list[str], path: str) -> Target:
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if not 1 <= len(rest) <= 3:
            raise not_found_path(path)
        try:
            info = registry.by_plural(group, rest[0])
        except NotServed:
            raise not_found_path(path) from None
        if version not in info.versions:
            raise not_found_path(path)
        if namespace is not None and not info.namespaced:
            raise not_found_path(path)
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) == 3 else None
        if sub is not None:
            allowed = SUBRESOURCES.get(info.key, ("status",) if info.key not in NO_STATUS else ())
            if sub not in allowed:
                raise not_found_path(path)
        return Target(info, version, namespace, name, sub)

    # ------------------------------------------------------------ discovery

    def _served(self) -> list[KindInfo]:
        return list(registry.kinds())

    def _api_versions(self, request: web.Request) -> Obj:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.info.api_host}:{self.info.api_port}"}
            ],
        }

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for info in self._served():
            if not info.group:
                continue
            versions = groups.setdefault(info.group, [])
            preferred = info.version
            if preferred not in versions:
                versions.insert(0, preferred)
            for v in info.versions:
                if v not in versions:
                    versions.append(v)
        return groups

    def _group_doc(self, group: str, versions: list[str]) -> Obj:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def _group_list(self) -> Obj:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [self._group_doc(g, v) for g, v in self._groups().items()],
        }

    def _group(self, group: str) -> Obj:
        versions = self._groups().get(group)
        if versions is None:
            raise not_found_path(f"/apis/{group}")
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group_doc(group, versions)}

    def _resource_list(self, group: str, version: str) -> Obj:
        resources: list[Obj] = []
        for info in self._served():
            if info.group != group or version not in info.versions:
                continue
            resources.append(
                {
                    "name": info.plural,
                    "singularName": info.singular,
                    "namespaced": info.namespaced,
                    "kind": info.kind,
                    "verbs": VERBS,
                    "shortNames": list(info.short_names),
                    **({"categories": list(info.categories)} if info.categories else {}),
                }
            )
            subs = SUBRESOURCES.get(info.key, ("status",) if info.key not in NO_STATUS else ())
            for sub in subs:
                kind, verbs = info.kind, ["get", "patch", "update"]
                if sub == "scale":
                    kind = "Scale"
                elif sub == "log":
                    kind, verbs = "Pod", ["get"]
                elif sub == "eviction":
                    kind, verbs = "Eviction", ["create"]
                resources.append(
                    {
                        "name": f"{info.plural}/{sub}",
                        "singularName": "",
                        "namespaced": info.namespaced,
                        "kind": kind,
                        "verbs": verbs,
                    }
                )
        if not resources:
            raise not_found_path(f"/apis/{group}/{version}" if group else f"/api/{version}")
        group_version = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }

    # ------------------------------------------------------------ resources

    async def _serve(self, request: web.Request, target: Target) -> web.StreamResponse:
        method = request.method
        if target.subresource == "log" and method == "GET":
            return await self._log(request, target)
        if target.subresource == "eviction" and method == "POST":
            return await self._evict(request, target)
        if target.subresource == "scale":
            return await self._scale(request, target)
        if target.name is None:
            if method == "GET":
                if request.query.get("watch") in ("true", "1"):
                    return await self._watch(request, target)
                listed = self._list(request, target)
                if apitables.wants_table(request.headers.get("Accept", "")):
                    return json_response(self._as_table(request, target, listed["items"], listed["metadata"]))
                return json_response(listed)
            if method == "POST":
                return await self._create(request, target)
            if method == "DELETE":
                return await self._delete_collection(request, target)
            raise ApiFailure(405, "MethodNotAllowed", f"method {method} is not supported on a collection")
        if method == "GET":
            obj = self.store.get(target.key, target.namespace, target.name)
            if target.subresource is None and apitables.wants_table(request.headers.get("Accept", "")):
                meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
                return json_response(self._as_table(request, target, [obj], meta))
            return json_response(present(obj, target.info, target.version))
        if method == "PUT":
            return await self._replace(request, target)
        if method == "PATCH":
            return await self._patch(request, target)
        if method == "DELETE" and target.subresource is None:
            return await self._delete(request, target)
        raise ApiFailure(405, "MethodNotAllowed", f"method {method} is not supported here")

    def _as_table(self, request: web.Request, target: Target, items: list[Obj], metadata: Obj) -> Obj:
        shown = [present(i, target.info, target.version) for i in items]
        result = apitables.table(
            target.key, shown, str(metadata.get("resourceVersion", "")), request.query.get("includeObject")
        )
        if metadata.get("continue"):
            result["metadata"]["continue"] = metadata["continue"]
        return result

    def _list(self, request: web.Request, target: Target) -> Obj:
        items, rv = self.store.list(
            target.key,
            target.namespace,
            request.query.get("labelSelector"),
            request.query.get("fieldSelector"),
        )
        metadata: Obj = {"resourceVersion": rv}
        offset = 0
        token = request.query.get("continue")
        if token:
            try:
                offset = int(token)
            except ValueError:
                raise bad_request(f"invalid continue token {token!r}") from None
        limit_text = request.query.get("limit")
        if offset:
            items = items[offset:]
        if limit_text:
            try:
                limit = int(limit_text)
            except ValueError:
                raise bad_request(f"invalid limit {limit_text!r}") from None
            if 0 < limit < len(items):
                metadata["continue"] = str(offset + limit)
                metadata["remainingItemCount"] = len(items) - limit
                items = items[:limit]
        return {
            "kind": f"{target.info.kind}List",
            "apiVersion": _api_version(target.info, target.version),
            "metadata": metadata,
            "items": [present(i, target.info, target.version) for i in items],
        }

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        label_selector = parse_label_selector(request.query.get("labelSelector"))
        field_selector = request.query.get("fieldSelector")
        timeout_text = request.query.get("timeoutSeconds")
        timeout = float(timeout_text) if timeout_text else None
        as_table = apitables.wants_table(request.headers.get("Accept", ""))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        watch = self.store.watch(
            target.key,
            target.namespace,
            request.query.get("resourceVersion") or None,
            label_selector,
            field_selector,
        )
        try:
            async with asyncio.timeout(timeout):
                async for type_, obj in watch:
                    shown = present(obj, target.info, target.version)
                    if as_table:
                        rv = str(obj["metadata"].get("resourceVersion", ""))
                        shown = apitables.table(target.key, [shown], rv, request.query.get("includeObject"))
                    event: Obj = {"type": type_, "object": shown}
                    await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
        except StoreError as exc:
            event = {"type": "ERROR", "object": from_store_error(exc).status()}
            with contextlib.suppress(ConnectionError):
                await response.write(json.dumps(event).encode() + b"\n")
        except (TimeoutError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            await watch.aclose()
            if task is not None:
                self._streams.discard(task)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        content_type = request.content_type
        try:
            if "yaml" in content_type:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(
                f"request body is not valid {'YAML' if 'yaml' in content_type else 'JSON'}: {exc}"
            ) from None

    def _check_body(self, body: Any, target: Target, *, name: str | None = None) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        info = target.info
        kind = body.get("kind")
        api_version = body.get("apiVersion")
        if kind is not None and kind != info.kind:
            raise bad_request(f"the body's kind {kind!r} does not match the URL's resource ({info.kind})")
        if api_version is not None:
            group, _, version = str(api_version).rpartition("/")
            if group != info.group or version not in info.versions:
                raise bad_request(f"apiVersion {api_version!r} is not served for {info.kind}")
        obj = copy.deepcopy(body)
        obj["apiVersion"] = info.api_version
        obj["kind"] = info.kind
        metadata = obj.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise bad_request("metadata must be an object")
        if info.namespaced:
            body_ns = metadata.get("namespace")
            if target.namespace is not None and body_ns and body_ns != target.namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            metadata["namespace"] = body_ns or target.namespace or "default"
        else:
            metadata.pop("namespace", None)
        if name is not None:
            if metadata.get("name") and metadata["name"] != name:
                raise bad_request(
                    f"the name of the object ({metadata['name']}) does not match the name on the URL ({name})"
                )
            metadata["name"] = name
        return obj

    def _validate(self, info: KindInfo, obj: Obj) -> Obj:
        name = str(
            (obj.get("metadata") or {}).get("name") or (obj.get("metadata") or {}).get("generateName") or ""
        )
        status = obj.get("status")
        try:
            normalized = validate(obj)
        except InvalidObject as exc:
            raise invalid(info, name, exc) from None
        except NotServed as exc:
            raise bad_request(str(exc)) from None
        if status is not None and "status" not in normalized:
            normalized["status"] = status
        return normalized

    def _require_namespace(self, info: KindInfo, obj: Obj) -> None:
        if not info.namespaced:
            return
        namespace = obj["metadata"]["namespace"]
        try:
            ns = self.store.get(("", "namespaces"), None, namespace)
        except NotFound:
            raise ApiFailure(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                details={"name": namespace, "kind": "namespaces"},
            ) from None
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiFailure(
                403,
                "Forbidden",
                f'{resource_name(info.key)} "{obj["metadata"].get("name", "")}" is forbidden: unable to create '
                f"new content in namespace {namespace} because it is being terminated",
            )

    def _do_create(self, info: KindInfo, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Validate, admit and store a new object (inside the caller's transaction, if any)."""
        normalized = self._validate(info, obj)
        with self.store.transaction():
            self._require_namespace(info, normalized)
            admitted = admission.admit(self.store, self.info, info.key, normalized, "CREATE")
            if dry_run:
                return admitted
            return self.store.create(info.key, admitted)

    def _do_update(
        self, info: KindInfo, obj: Obj, subresource: str | None, old: Obj, *, dry_run: bool = False
    ) -> Obj:
        merged = copy.deepcopy(obj)
        if subresource == "status":
            merged = copy.deepcopy(old)
            merged["status"] = copy.deepcopy(obj.get("status"))
            merged["metadata"]["resourceVersion"] = (obj.get("metadata") or {}).get("resourceVersion") or old[
                "metadata"
            ]["resourceVersion"]
        normalized = self._validate(info, merged)
        admitted = admission.admit(self.store, self.info, info.key, normalized, "UPDATE", old)
        if dry_run:
            return admitted
        return self.store.update(info.key, admitted, subresource)

    async def _create(self, request: web.Request, target: Target) -> web.StreamResponse:
        obj = self._check_body(await self._body(request), target)
        created = self._do_create(target.info, obj, dry_run=bool(request.query.get("dryRun")))
        return with_warnings(
            json_response(present(created, target.info, target.version), status=201), created
        )

    async def _replace(self, request: web.Request, target: Target) -> web.StreamResponse:
        assert target.name is not None
        obj = self._check_body(await self._body(request), target, name=target.name)
        with self.store.transaction():
            old = self.store.get(target.key, target.namespace, target.name)
            updated = self._do_update(
                target.info, obj, target.subresource, old, dry_run=bool(request.query.get("dryRun"))
            )
        return self._updated(target, updated)

    async def _patch(self, request: web.Request, target: Target) -> web.StreamResponse:
        assert target.name is not None
        content_type = request.content_type
        body = await self._body(request)
        dry_run = bool(request.query.get("dryRun"))
        if content_type == "application/apply-patch+yaml":
            return await self._server_side_apply(body, target, dry_run=dry_run)
        with self.store.transaction():
            old = self.store.get(target.key, target.namespace, target.name)
            if content_type == "application/json-patch+json":
                patched = json_patch(old, body)
            elif content_type in MERGE_PATCH_TYPES:
                if not isinstance(body, dict):
                    raise bad_request("a merge patch must be a JSON object")
                patched = merge_patch(old, body)
            else:
                raise ApiFailure(
                    415, "UnsupportedMediaType", f"the patch content type {content_type!r} is not supported"
                )
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
                raise bad_request("the patched object has no metadata")
            patched["metadata"]["name"] = target.name
            if target.namespace:
                patched["metadata"]["namespace"] = target.namespace
            wanted_rv = (
                ((body or {}).get("metadata") or {}).get("resourceVersion")
                if isinstance(body, dict)
                else None
            )
            patched["metadata"]["resourceVersion"] = wanted_rv or old["metadata"]["resourceVersion"]
            updated = self._do_update(target.info, patched, target.subresource, old, dry_run=dry_run)
        return self._updated(target, updated)

    def _updated(self, target: Target, updated: Obj) -> web.Response:
        """The answer to an update; a status-only write draws no warnings (controllers write status)."""
        response = json_response(present(updated, target.info, target.version))
        return response if target.subresource else with_warnings(response, updated)

    async def _server_side_apply(self, body: Any, target: Target, *, dry_run: bool) -> web.StreamResponse:
        """``application/apply-patch+yaml``: create when absent, else merge the applied fields in."""
        assert target.name is not None
        obj = self._check_body(body, target, name=target.name)
        with self.store.transaction():
            try:
                old = self.store.get(target.key, target.namespace, target.name)
            except NotFound:
                created = self._do_create(target.info, obj, dry_run=dry_run)
                return with_warnings(
                    json_response(present(created, target.info, target.version), status=201), created
                )
            applied = copy.deepcopy(obj)
            applied.get("metadata", {}).pop("resourceVersion", None)
            if target.subresource == "status":
                patched = merge_patch(old, {"status": applied.get("status")})
            else:
                applied.pop("status", None)
                patched = merge_patch(old, applied)
            updated = self._do_update(target.info, patched, target.subresource, old, dry_run=dry_run)
        return self._updated(target, updated)

    def _delete_options(self, request: web.Request, body: Any) -> tuple[int | None, str | None, str | None]:
        options = body if isinstance(body, dict) else {}
        grace: Any = request.query.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
        policy = request.query.get("propagationPolicy", options.get("propagationPolicy"))
        if policy is not None and policy not in ("Foreground", "Background", "Orphan"):
            raise bad_request(
                f"invalid propagationPolicy {policy!r}: expected Foreground, Background or Orphan"
            )
        preconditions = options.get("preconditions") or {}
        try:
            grace_value = int(grace) if grace is not None else None
        except (TypeError, ValueError):
            raise bad_request(f"invalid gracePeriodSeconds {grace!r}") from None
        return grace_value, preconditions.get("resourceVersion"), preconditions.get("uid")

    async def _delete(self, request: web.Request, target: Target) -> web.StreamResponse:
        assert target.name is not None
        body = await self._body(request)
        grace, rv, uid = self._delete_options(request, body)
        options = body if isinstance(body, dict) else {}
        orphan = request.query.get("propagationPolicy", options.get("propagationPolicy")) == "Orphan"
        orphan = (
            orphan
            or str(request.query.get("orphanDependents", options.get("orphanDependents"))).lower() == "true"
        )
        if request.query.get("dryRun"):
            obj = self.store.get(target.key, target.namespace, target.name)
            return json_response(present(obj, target.info, target.version))
        if target.key == ("", "namespaces") and target.name in PROTECTED_NAMESPACES:
            raise ApiFailure(
                403,
                "Forbidden",
                f'namespaces "{target.name}" is forbidden: this namespace may not be deleted',
                details={"name": target.name, "kind": "namespaces"},
            )
        with self.store.transaction():
            if orphan:
                owner = self.store.get(target.key, target.namespace, target.name)
                self._orphan_dependents(owner)
            if target.key == ("", "namespaces"):
                return json_response(self._delete_namespace(target, rv, uid))
            obj = self.store.delete(
                target.key,
                target.namespace,
                target.name,
                grace_period_seconds=grace,
                resource_version=rv,
                uid=uid,
            )
        return json_response(present(obj, target.info, target.version))

    def _delete_namespace(self, target: Target, rv: str | None, uid: str | None) -> Obj:
        """Deleting a namespace deletes everything in it; pods terminate gracefully, as usual.

        As in Kubernetes, the namespace stays (``status.phase: Terminating``, new content refused)
        until its last object is gone; without pods that is at once, else the namespace
        controller finishes the job (``meshpilot.cluster.namespaces``).
        """
        assert target.name is not None
        current = self.store.get(target.key, None, target.name)
        meta = current["metadata"]
        if (rv and rv != meta.get("resourceVersion")) or (uid and uid != meta.get("uid")):
            raise ApiFailure(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on namespaces "{target.name}": the precondition does not match',
            )
        namespaces.terminate(self.store, current, rfc3339_now())
        try:
            obj = self.store.get(target.key, None, target.name)
        except NotFound:
            obj = current
        return present(obj, target.info, target.version)

    def _orphan_dependents(self, owner: Obj) -> None:
        """``propagationPolicy: Orphan``: dependents lose their reference to the owner and so survive it.

        Background (the default) and Foreground both leave dependents to the garbage collector.
        """
        owner_uid = owner["metadata"].get("uid")
        namespace = owner["metadata"].get("namespace")
        for info in self._served():
            if not info.namespaced and namespace:
                continue
            items, _ = self.store.list(info.key, namespace if info.namespaced else None)
            for item in items:
                refs = item["metadata"].get("ownerReferences") or []
                kept = [r for r in refs if r.get("uid") != owner_uid]
                if len(kept) != len(refs):
                    self.store.patch(
                        info.key,
                        item["metadata"].get("namespace"),
                        item["metadata"]["name"],
                        {"metadata": {"ownerReferences": kept or None}},
                    )

    async def _delete_collection(self, request: web.Request, target: Target) -> web.StreamResponse:
        grace, _, _ = self._delete_options(request, await self._body(request))
        items, _ = self.store.list(
            target.key,
            target.namespace,
            request.query.get("labelSelector"),
            request.query.get("fieldSelector"),
        )
        deleted = []
        for item in items:
            meta = item["metadata"]
            if target.key == ("", "namespaces"):
                # namespaces terminate as they do one by one; the protected ones stay
                if meta["name"] not in PROTECTED_NAMESPACES:
                    with contextlib.suppress(NotFound), self.store.transaction():
                        namespaces.terminate(self.store, item, rfc3339_now())
                        deleted.append(item)
                continue
            with contextlib.suppress(NotFound):
                deleted.append(
                    self.store.delete(
                        target.key, meta.get("namespace"), meta["name"], grace_period_seconds=grace
                    )
                )
        return json_response(
            {
                "kind": f"{target.info.kind}List",
                "apiVersion": _api_version(target.info, target.version),
                "metadata": {"resourceVersion": str(self.store.revision)},
                "items": [present(i, target.info, target.version) for i in deleted],
            }
        )

    # ------------------------------------------------------------ subresources

    def _scale_of(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        selector = (obj.get("spec") or {}).get("selector") or {}
        from meshpilot.store import selector_from_match

        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", 1))},
            "status": {
                "replicas": int((obj.get("status") or {}).get("replicas", 0)),
                "selector": str(selector_from_match(selector)),
            },
        }

    async def _scale(self, request: web.Request, target: Target) -> web.StreamResponse:
        assert target.name is not None
        if request.method == "GET":
            return json_response(self._scale_of(self.store.get(target.key, target.namespace, target.name)))
        if request.method not in ("PUT", "PATCH"):
            raise ApiFailure(405, "MethodNotAllowed", f"method {request.method} is not supported on scale")
        body = await self._body(request)
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        with self.store.transaction():
            old = self.store.get(target.key, target.namespace, target.name)
            scale = self._scale_of(old)
            wanted = merge_patch(scale, body) if request.method == "PATCH" else body
            replicas = (wanted.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise ApiFailure(
                    422,
                    "Invalid",
                    f'Scale.autoscaling "{target.name}" is invalid: spec.replicas: Invalid value: {replicas!r}: '
                    "must be a non-negative integer",
                    details={"causes": [{"reason": "FieldValueInvalid", "field": "spec.replicas"}]},
                )
            rv = (wanted.get("metadata") or {}).get("resourceVersion") or old["metadata"]["resourceVersion"]
            patched = merge_patch(old, {"spec": {"replicas": replicas}, "metadata": {"resourceVersion": rv}})
            updated = self._do_update(target.info, patched, None, old)
        return json_response(self._scale_of(updated))

    async def _evict(self, request: web.Request, target: Target) -> web.StreamResponse:
        assert target.name is not None and target.namespace is not None
        self.store.get(target.key, target.namespace, target.name)
        try:
            eviction.evict(self.store, self.info, target.namespace, target.name)
        except eviction.EvictionRefused as exc:
            raise ApiFailure(
                429,
                "TooManyRequests",
                str(exc) or "Cannot evict pod as it would violate the pod's disruption budget.",
                details={"causes": [{"reason": "DisruptionBudget", "message": str(exc)}]},
            ) from None
        return json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
            status=201,
        )

    def _log_path(self, pod: Obj, container: str | None) -> Path:
        spec = pod.get("spec") or {}
        names = [c.get("name") for c in spec.get("containers") or []]
        init_names = [c.get("name") for c in spec.get("initContainers") or []]
        if container is None:
            default = (pod["metadata"].get("annotations") or {}).get(
                "kubectl.kubernetes.io/default-container"
            )
            container = default if default in names else (names[0] if names else None)
        if container is None or container not in names + init_names:
            choices = " ".join(str(n) for n in names)
            raise bad_request(
                f"container {container} is not valid for pod {pod['metadata']['name']}; choose one of: [{choices}]"
            )
        pod_dir = self.info.pods_dir / str(pod["metadata"]["namespace"]) / str(pod["metadata"]["name"])
        return pod_dir / f"{container}.log"

    async def _log(self, request: web.Request, target: Target) -> web.StreamResponse:
        assert target.name is not None and target.namespace is not None
        pod = self.store.get(target.key, target.namespace, target.name)
        path = self._log_path(pod, request.query.get("container") or None)
        if request.query.get("previous") in ("true", "1"):
            from meshpilot.cluster.runtime import previous_log_path

            path = previous_log_path(path)
            if not path.exists():
                raise bad_request(f"previous terminated container in pod {target.name!r} not found")
        follow = request.query.get("follow") in ("true", "1")
        tail = _log_query_int(request, "tailLines", minimum=0)
        limit = _log_query_int(request, "limitBytes", minimum=1)
        if not follow:
            return await self._send_log(request, path, tail, limit)
        # what is there now and what follows come through one handle: nothing falls in between
        follower = LogFollower(path, tail_lines=tail)
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        task = asyncio.current_task()
        uid = pod["metadata"].get("uid")
        try:
            await response.prepare(request)
            if task is not None:
                self._streams.add(task)
            remaining = limit
            while remaining is None or remaining > 0:
                chunk = follower.read(_LOG_CHUNK if remaining is None else min(_LOG_CHUNK, remaining))
                if chunk:
                    await response.write(chunk)
                    if remaining is not None:
                        remaining -= len(chunk)
                    continue
                await asyncio.sleep(0.2)
                try:
                    current = self.store.get(target.key, target.namespace, target.name)
                except NotFound:
                    break
                if current["metadata"].get("uid") != uid:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            follower.close()
            if task is not None:
                self._streams.discard(task)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    async def _send_log(
        self, request: web.Request, path: Path, tail: int | None, limit: int | None
    ) -> web.StreamResponse:
        """A finished read of a log: its last ``tail`` lines, at most ``limit`` bytes, in chunks.

        Container logs grow without bound, so the file is never read whole: the start of the last
        lines is found by reading blocks backwards from the end, and from there the bytes go out
        one chunk at a time up to the size the file had when the request came.
        """
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            response.content_length = 0
            await response.prepare(request)
            await response.write_eof()
            return response
        with handle:
            size = os.fstat(handle.fileno()).st_size
            start = 0 if tail is None else _tail_offset(handle, tail, size)
            remaining = size - start if limit is None else min(size - start, limit)
            handle.seek(start)
            response.enable_chunked_encoding()
            await response.prepare(request)
            while remaining > 0:
                chunk = handle.read(min(_LOG_CHUNK, remaining))
                if not chunk:
                    break  # truncated while we read
                remaining -= len(chunk)
                await response.write(chunk)
        await response.write_eof()
        return response

    # ------------------------------------------------------------ meshpilot apply

    async def _apply(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise bad_request('the body must be an object with a list "items"')
        default_ns = request.query.get("namespace") or "default"
        dry_run = bool(request.query.get("dryRun"))
        prepared: list[tuple[KindInfo, Obj]] = []
        causes: list[Obj] = []
        messages: list[str] = []
        for index, item in enumerate(body["items"]):
            if not isinstance(item, dict):
                raise bad_request(f"items[{index}] is not an object")
            try:
                info = registry.lookup(str(item.get("apiVersion", "")), str(item.get("kind", "")))
            except NotServed as exc:
                causes.append(
                    {"reason": "FieldValueNotSupported", "message": str(exc), "field": f"items[{index}].kind"}
                )
                messages.append(f"items[{index}]: {exc}")
                continue
            obj = copy.deepcopy(item)
            metadata = obj.setdefault("metadata", {})
            if not isinstance(metadata, dict):
                raise bad_request(f"items[{index}].metadata is not an object")
            if info.namespaced:
                metadata["namespace"] = metadata.get("namespace") or default_ns
            else:
                metadata.pop("namespace", None)
            try:
                normalized = validate(obj)
            except InvalidObject as exc:
                name = metadata.get("name", "")
                for err in exc.errors:
                    causes.append(
                        {
                            "reason": "FieldValueInvalid",
                            "message": err.message,
                            "field": f"items[{index}].{err.field}".rstrip("."),
                        }
                    )
                    messages.append(
                        f'{info.kind} "{name}": {err.field + ": " if err.field else ""}{err.message}'
                    )
                continue
            normalized["apiVersion"] = info.api_version
            prepared.append((info, normalized))
        if causes:
            raise ApiFailure(422, "Invalid", "; ".join(messages), details={"kind": "apply", "causes": causes})
        results: list[Obj] = []
        try:
            with self.store.transaction():
                for info, obj in prepared:
                    results.append(self._apply_one(info, obj))
                if dry_run:
                    raise _DryRunDone
        except _DryRunDone:
            pass
        return with_warnings(
            json_response(
                {
                    "kind": "ApplyResult",
                    "apiVersion": f"{MESHPILOT_GROUP}/{MESHPILOT_VERSION}",
                    "items": results,
                }
            ),
            *(result["object"] for result in results),
        )

    def _apply_one(self, info: KindInfo, obj: Obj) -> Obj:
        meta = obj["metadata"]
        name = meta.get("name")
        if not name:
            raise ApiFailure(422, "Invalid", f"{info.kind}: metadata.name: Required value")
        applied = copy.deepcopy(obj)
        applied["metadata"].pop("resourceVersion", None)
        last_applied = json.dumps(applied, sort_keys=True, separators=(",", ":"))
        result: Literal["created", "configured", "unchanged"]
        try:
            old = self.store.get(info.key, meta.get("namespace"), name)
        except NotFound:
            old = None
        try:
            if old is None:
                new = copy.deepcopy(applied)
                new["metadata"].setdefault("annotations", {})[LAST_APPLIED] = last_applied
                stored = self._do_create(info, new)
                result = "created"
            else:
                previous_text = (old["metadata"].get("annotations") or {}).get(LAST_APPLIED)
                try:
                    previous = json.loads(previous_text) if previous_text else {}
                except ValueError:
                    previous = {}
                desired = copy.deepcopy(applied)
                desired.pop("status", None)
                desired["metadata"].setdefault("annotations", {})[LAST_APPLIED] = last_applied
                previous.pop("status", None)
                if previous:
                    previous.setdefault("metadata", {}).setdefault("annotations", {})[LAST_APPLIED] = (
                        previous_text
                    )
                patch = three_way_patch(previous, desired)
                for fixed in ("apiVersion", "kind"):
                    patch.pop(fixed, None)
                merged = merge_patch(old, patch)
                merged["apiVersion"] = info.api_version
                merged["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
                stored = self._do_update(info, merged, None, old)
                result = (
                    "unchanged"
                    if stored["metadata"]["resourceVersion"] == old["metadata"]["resourceVersion"]
                    else "configured"
                )
        except ApiFailure as exc:
            raise ApiFailure(
                exc.code, exc.reason, f'{info.kind} "{name}": {exc.message}', details=exc.details
            ) from None
        except AlreadyExists as exc:
            raise ApiFailure(exc.code, exc.reason, f"{info.kind}: {exc.message}") from None
        except StoreError as exc:
            raise ApiFailure(
                exc.code, exc.reason, f'{info.kind} "{name}": {exc.message}', details=exc.details
            ) from None
        except admission.AdmissionError as exc:
            raise ApiFailure(
                exc.code, "Invalid" if exc.code != 403 else "Forbidden", f'{info.kind} "{name}": {exc}'
            ) from None
        return {
            "apiVersion": info.api_version,
            "kind": info.kind,
            "namespace": stored["metadata"].get("namespace"),
            "name": stored["metadata"]["name"],
            "result": result,
            "object": present(stored, info, info.version),
        }


_LOG_CHUNK = 64 * 1024
"""Bytes read from a log file at a time, so serving a large log never holds it in memory."""


def _log_query_int(request: web.Request, name: str, *, minimum: int) -> int | None:
    """An integer query parameter of ``pods/log`` (None when absent), refused below ``minimum``."""
    text = request.query.get(name)
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"invalid {name} {text!r}: expected an integer") from None
    if value < minimum:
        raise bad_request(f"invalid {name} {value}: must be at least {minimum}")
    return value


def _tail_offset(handle: BinaryIO, lines: int, size: int) -> int:
    """Where the last ``lines`` lines of the open file (``size`` bytes) start, as ``tailLines`` asks.

    Blocks are read backwards from the end until enough newlines are seen, so the cost follows
    the tail asked for, not the length of the log. A newline that ends the file closes the last
    line rather than starting an empty one.
    """
    if lines <= 0:
        return size
    pos = size
    if size > 0:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            pos = size - 1
    seen = 0
    while pos > 0:
        start = max(0, pos - _LOG_CHUNK)
        handle.seek(start)
        block = handle.read(pos - start)
        index = len(block)
        while (index := block.rfind(b"\n", 0, index)) >= 0:
            seen += 1
            if seen == lines:
                return start + index + 1
        pos = start
    return 0


class LogFollower:
    """``tail -F`` over a container log that the runtime replaces on every restart.

    The open handle keeps reading the instance it started on, so what that instance wrote last is
    not lost when its file is renamed to ``.previous.log``; then the new file is read from its
    start. Reading by offset into whatever file has the name would skip the head of the new one.
    """

    def __init__(self, path: Path, *, tail_lines: int | None = None) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        self._tail_lines = tail_lines  # applies to the instance open first only

    def read(self, size: int = -1) -> bytes:
        """What was written since the last call, at most ``size`` bytes (empty when nothing was)."""
        if self._file is None:
            try:
                self._file = open(self.path, "rb")
            except FileNotFoundError:
                return b""
            if self._tail_lines is not None:
                end = os.fstat(self._file.fileno()).st_size
                self._file.seek(_tail_offset(self._file, self._tail_lines, end))
            self._tail_lines = None
        chunk = self._file.read(size)
        if chunk:
            return chunk
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return b""  # between the rename and the new instance's first write
        if named.st_ino != os.fstat(self._file.fileno()).st_ino:
            self._file.close()
            self._file = None
            return self.read(size)
        if named.st_size < self._file.tell():
            self._file.seek(0)  # truncated in place: start over
            return self._file.read(size)
        return b""

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _DryRunDone(Exception):
    """Raised inside the apply transaction to roll a dry run back."""


def json_patch(target: Obj, operations: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, test, move, copy)."""
    if not isinstance(operations, list):
        raise bad_request("a JSON patch must be a list of operations")
    doc: Any = copy.deepcopy(target)

    def parse(pointer: str) -> list[str]:
        if pointer == "":
            return []
        if not pointer.startswith("/"):
            raise bad_request(f"invalid JSON pointer {pointer!r}")
        return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]

    def parent(parts: list[str]) -> tuple[Any, str]:
        node = doc
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node, parts[-1]

    def get(pointer: str) -> Any:
        node = doc
        for part in parse(pointer):
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    try:
        for op in operations:
            kind, path = op.get("op"), str(op.get("path", ""))
            parts = parse(path)
            if kind == "test":
                if get(path) != op.get("value"):
                    raise ApiFailure(422, "Invalid", f"JSON patch test failed at {path}")
                continue
            if kind in ("move", "copy"):
                value = copy.deepcopy(get(str(op.get("from", ""))))
                if kind == "move":
                    node, last = parent(parse(str(op.get("from", ""))))
                    node.pop(int(last)) if isinstance(node, list) else node.pop(last)
                kind, op = "add", {"value": value}
            if not parts:
                if kind in ("add", "replace"):
                    doc = copy.deepcopy(op.get("value"))
                    continue
                raise bad_request("cannot remove the whole document")
            node, last = parent(parts)
            if kind == "add":
                if isinstance(node, list):
                    node.insert(len(node) if last == "-" else int(last), copy.deepcopy(op.get("value")))
                else:
                    node[last] = copy.deepcopy(op.get("value"))
            elif kind == "replace":
                if isinstance(node, list):
                    node[int(last)] = copy.deepcopy(op.get("value"))
                else:
                    if last not in node:
                        raise KeyError(last)
                    node[last] = copy.deepcopy(op.get("value"))
            elif kind == "remove":
                node.pop(int(last)) if isinstance(node, list) else node.pop(last)
            else:
                raise bad_request(f"unknown JSON patch operation {kind!r}")
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        raise ApiFailure(422, "Invalid", f"JSON patch could not be applied: {exc!r}") from None
    return doc


def token_from_env() -> str | None:
    """Inside a pod, the API token is in the file ``$MESHPILOT_TOKEN_FILE`` names."""
    path = os.environ.get("MESHPILOT_TOKEN_FILE")
    if path and os.path.exists(path):
        return Path(path).read_text().strip()
    return None
