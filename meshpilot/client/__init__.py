"""A client for Kubernetes-shaped REST APIs: the local cluster's, and a real cluster's.

Resources are named the way callers think of them: a ``ResourceKey`` (``("apps", "deployments")``),
a CLI name (``deploy``, ``vs``, ``virtualservices.networking.istio.io``) or a ``KindInfo``; objects
are plain dicts. ``Client`` is synchronous (CLI, tests), ``AsyncClient`` is for code that already
runs an event loop (controllers in pods, rollouts). Both raise ``ApiError`` with the server's
``Status`` reason.

Namespaces follow lightkube: ``namespace=None`` is the client's namespace (from the kubeconfig
context) and ``namespace="*"`` lists or watches across all namespaces.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import httpx

from meshpilot.api import registry
from meshpilot.api.errors import NotServed
from meshpilot.client.kubeconfig import Credentials, KubeconfigError, auto_credentials, credentials

__all__ = [
    "ALL_NAMESPACES",
    "ApiError",
    "AsyncClient",
    "Client",
    "KubeconfigError",
    "ObjectList",
    "Resource",
    "parse_warning",
]

Obj = dict[str, Any]
Resource = tuple[str, str] | str | registry.KindInfo
ALL_NAMESPACES = "*"
Results = list[Obj]


class ApiError(Exception):
    """The server refused: ``status`` is the HTTP code, ``reason`` Kubernetes' (``NotFound`` ...)."""

    def __init__(
        self, status: int, reason: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = dict(details or {})

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.reason!r}, {self.message!r})"

    @classmethod
    def from_status(cls, code: int, body: Any, fallback: str = "") -> ApiError:
        if isinstance(body, Mapping) and body.get("kind") == "Status":
            return cls(
                int(body.get("code") or code),
                str(body.get("reason") or "Unknown"),
                str(body.get("message") or fallback),
                body.get("details") or {},
            )
        return cls(code, _REASONS.get(code, "Unknown"), fallback or f"HTTP {code}")


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


class ObjectList(list[Obj]):
    """The items of a list response, with the list's ``resource_version`` (to start a watch)."""

    resource_version: str = ""


def kind_info(resource: Resource) -> registry.KindInfo:
    """Resolve a ResourceKey, CLI name or KindInfo; ``ApiError`` 404 when the kind is not served."""
    try:
        if isinstance(resource, registry.KindInfo):
            return resource
        if isinstance(resource, tuple):
            return registry.by_plural(resource[0], resource[1])
        return registry.resolve(resource)
    except NotServed as exc:
        raise ApiError(404, "NotFound", str(exc)) from None


def info_of(obj: Mapping[str, Any]) -> registry.KindInfo:
    try:
        return registry.lookup(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    except NotServed as exc:
        raise ApiError(404, "NotFound", str(exc)) from None


def resource_path(
    info: registry.KindInfo,
    namespace: str | None,
    name: str | None = None,
    subresource: str | None = None,
    version: str | None = None,
) -> str:
    """``/api/v1/namespaces/ns/pods/name/log`` or ``/apis/apps/v1/deployments`` (all namespaces)."""
    version = version or info.version
    base = f"/apis/{info.group}/{version}" if info.group else f"/api/{version}"
    if info.namespaced and namespace and namespace != ALL_NAMESPACES:
        base += f"/namespaces/{namespace}"
    base += f"/{info.plural}"
    if name is not None:
        base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
    return base


def _version_of(obj: Mapping[str, Any], info: registry.KindInfo) -> str:
    api_version = str(obj.get("apiVersion", ""))
    version = api_version.rpartition("/")[2]
    return version if version in info.versions else info.version


# --- the sans-IO half: what to send and what an answer means, shared by Client and AsyncClient ---

# watches and followed logs stay open as long as the server keeps them; only connecting is bounded
_STREAM_TIMEOUT = httpx.Timeout(30, read=None)
_APPLY_PATH = "/apis/meshpilot.io/v1alpha1/apply"


@dataclass(frozen=True)
class _Request:
    """One API call, described before it is sent: both clients build these the same way and differ
    only in how they send them."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.params:
            out["params"] = self.params
        if self.json is not None:
            out["json"] = self.json
        if self.content is not None:
            out["content"] = self.content
        if self.headers:
            out["headers"] = self.headers
        return out


_WARNING = re.compile(r'\s*(\d{3})\s+\S+\s+"((?:[^"\\]|\\.)*)"')
_log = logging.getLogger("meshpilot.client")


def parse_warning(value: str) -> str | None:
    """The text of one ``Warning`` header (RFC 7234: ``299 - "text"``); None when it is not code 299.

    Code 299 is what kube-apiserver uses for everything it warns about (deprecations, admission,
    and here: config stored but not enforced by the local mesh), and all kubectl shows.
    """
    match = _WARNING.match(value)
    if match is None or match.group(1) != "299":
        return None
    return re.sub(r"\\(.)", r"\1", match.group(2))


def _raise_for(response: httpx.Response) -> None:
    """An error status becomes ``ApiError`` with the server's ``Status`` (or the body's text)."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    text = response.text.strip() if body is None else ""
    raise ApiError.from_status(response.status_code, body, text)


def _unreachable(server: str, exc: Exception) -> ApiError:
    return ApiError(503, "ServiceUnavailable", f"cannot reach the API server at {server}: {exc}")


def _interrupted(exc: Exception) -> ApiError:
    return ApiError(503, "ServiceUnavailable", f"watch interrupted: {exc}")


def _object(response: httpx.Response) -> Obj:
    result: Obj = response.json()
    return result


def _object_list(response: httpx.Response) -> ObjectList:
    body = response.json()
    out = ObjectList(body.get("items") or [])
    out.resource_version = str((body.get("metadata") or {}).get("resourceVersion", ""))
    return out


def _results(response: httpx.Response) -> Results:
    results: Results = response.json().get("items") or []
    return results


def _event(line: str) -> tuple[str, Obj] | None:
    """One line of a watch stream as ``(type, object)``; None for a blank keep-alive line; an ERROR
    event raises its ``Status`` as ``ApiError``."""
    if not line.strip():
        return None
    event = json.loads(line)
    if event.get("type") == "ERROR":
        raise ApiError.from_status(int((event.get("object") or {}).get("code") or 500), event.get("object"))
    return str(event["type"]), event["object"]


def _selector_params(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


def _log_params(
    container: str | None, tail_lines: int | None, previous: bool, *, follow: bool
) -> dict[str, str]:
    params: dict[str, str] = {}
    if container:
        params["container"] = container
    if tail_lines is not None:
        params["tailLines"] = str(tail_lines)
    if previous:
        params["previous"] = "true"
    if follow:
        params["follow"] = "true"
    return params


def _headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _verify(ca_data: str | None) -> ssl.SSLContext | bool:
    """Trust exactly the cluster's CA when the kubeconfig names one; else the system's."""
    if ca_data:
        return ssl.create_default_context(cadata=ca_data)
    return True


class _Base:
    """What both clients share: the namespace rules and the requests each method sends."""

    def __init__(self, server: str, token: str | None = None, namespace: str = "default") -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.namespace = namespace
        #: Called with each warning the server sends (kubectl prints them as ``Warning: <text>``);
        #: None logs them on the ``meshpilot.client`` logger, as client-go's default handler does.
        self.on_warning: Callable[[str], None] | None = None

    def _warn(self, response: httpx.Response) -> None:
        for value in response.headers.get_list("warning"):
            text = parse_warning(value)
            if text is None:
                continue
            if self.on_warning is None:
                _log.warning("%s", text)
            else:
                self.on_warning(text)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.server} namespace={self.namespace}>"

    def _ns(self, info: registry.KindInfo, namespace: str | None) -> str | None:
        if not info.namespaced:
            return None
        return self.namespace if namespace is None else namespace

    def _obj_ns(self, info: registry.KindInfo, obj: Mapping[str, Any], namespace: str | None) -> str | None:
        if not info.namespaced:
            return None
        return namespace or (obj.get("metadata") or {}).get("namespace") or self.namespace

    def _get_request(
        self, resource: Resource, name: str, namespace: str | None, subresource: str | None
    ) -> _Request:
        info = kind_info(resource)
        return _Request("GET", resource_path(info, self._ns(info, namespace), name, subresource))

    def _list_request(
        self,
        resource: Resource,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        limit: int | None,
    ) -> _Request:
        info = kind_info(resource)
        params = _selector_params(label_selector, field_selector)
        if limit:
            params["limit"] = str(limit)
        return _Request("GET", resource_path(info, self._ns(info, namespace)), params)

    def _create_request(self, obj: Mapping[str, Any], namespace: str | None) -> _Request:
        info = info_of(obj)
        path = resource_path(info, self._obj_ns(info, obj, namespace), version=_version_of(obj, info))
        return _Request("POST", path, json=dict(obj))

    def _replace_request(
        self, obj: Mapping[str, Any], namespace: str | None, subresource: str | None
    ) -> _Request:
        info = info_of(obj)
        name = str((obj.get("metadata") or {}).get("name"))
        path = resource_path(
            info, self._obj_ns(info, obj, namespace), name, subresource, _version_of(obj, info)
        )
        return _Request("PUT", path, json=dict(obj))

    def _patch_request(
        self,
        resource: Resource,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None,
        subresource: str | None,
    ) -> _Request:
        info = kind_info(resource)
        return _Request(
            "PATCH",
            resource_path(info, self._ns(info, namespace), name, subresource),
            content=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        )

    def _delete_request(
        self,
        resource: Resource,
        name: str,
        namespace: str | None,
        grace_period_seconds: int | None,
        propagation_policy: str | None,
    ) -> _Request:
        info = kind_info(resource)
        params: dict[str, str] = {}
        if grace_period_seconds is not None:
            params["gracePeriodSeconds"] = str(grace_period_seconds)
        if propagation_policy:
            params["propagationPolicy"] = propagation_policy
        return _Request("DELETE", resource_path(info, self._ns(info, namespace), name), params)

    def _scale_request(self, resource: Resource, name: str, replicas: int, namespace: str | None) -> _Request:
        return self._patch_request(resource, name, {"spec": {"replicas": replicas}}, namespace, "scale")

    def _watch_request(
        self,
        resource: Resource,
        namespace: str | None,
        resource_version: str | None,
        label_selector: str | None,
        field_selector: str | None,
        timeout_seconds: float | None,
    ) -> _Request:
        info = kind_info(resource)
        params = {"watch": "true"}
        if resource_version:
            params["resourceVersion"] = resource_version
        params.update(_selector_params(label_selector, field_selector))
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(int(timeout_seconds))
        return _Request("GET", resource_path(info, self._ns(info, namespace)), params)

    def _apply_request(
        self, items: Iterable[Mapping[str, Any]], namespace: str | None, dry_run: bool
    ) -> _Request:
        params = {"namespace": namespace or self.namespace}
        if dry_run:
            params["dryRun"] = "All"
        return _Request("POST", _APPLY_PATH, params, json={"items": [dict(i) for i in items]})

    def _logs_request(
        self,
        pod: str,
        namespace: str | None,
        container: str | None,
        tail_lines: int | None,
        previous: bool,
        follow: bool,
    ) -> _Request:
        info = kind_info(("", "pods"))
        params = _log_params(container, tail_lines, previous, follow=follow)
        return _Request("GET", resource_path(info, self._ns(info, namespace), pod, "log"), params)

    def _evict_request(self, pod: str, namespace: str | None) -> _Request:
        info = kind_info(("", "pods"))
        ns = self._ns(info, namespace)
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": ns}}
        return _Request("POST", resource_path(info, ns, pod, "eviction"), json=body)


class Client(_Base):
    """Synchronous client (httpx)."""

    def __init__(
        self,
        server: str,
        token: str | None = None,
        namespace: str = "default",
        *,
        timeout: float = 30.0,
        ca_data: str | None = None,
    ) -> None:
        super().__init__(server, token, namespace)
        self._http = httpx.Client(
            base_url=self.server, headers=_headers(token), timeout=timeout, verify=_verify(ca_data)
        )

    @classmethod
    def from_kubeconfig(cls, context: str | None = None, *, timeout: float = 30.0) -> Client:
        creds: Credentials = credentials(context)
        return cls(creds.server, creds.token, creds.namespace, timeout=timeout, ca_data=creds.ca_data)

    @classmethod
    def auto(cls, context: str | None = None, *, timeout: float = 30.0) -> Client:
        """In a pod: the cluster the pod runs in; elsewhere (or with ``context``): the kubeconfig's."""
        creds = auto_credentials(context)
        return cls(creds.server, creds.token, creds.namespace, timeout=timeout, ca_data=creds.ca_data)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A raw request; raises ``ApiError`` for an error status."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise _unreachable(self.server, exc) from None
        self._warn(response)
        _raise_for(response)
        return response

    def _send(self, call: _Request) -> httpx.Response:
        return self.request(call.method, call.path, **call.kwargs())

    @contextlib.contextmanager
    def _stream(self, call: _Request) -> Iterator[httpx.Response]:
        """A response whose body is read as it arrives (watches, followed logs); error statuses raise."""
        with self._http.stream(call.method, call.path, timeout=_STREAM_TIMEOUT, **call.kwargs()) as response:
            if response.status_code >= 400:
                response.read()
                _raise_for(response)
            yield response

    def get(
        self, resource: Resource, name: str, namespace: str | None = None, *, subresource: str | None = None
    ) -> Obj:
        return _object(self._send(self._get_request(resource, name, namespace, subresource)))

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
    ) -> ObjectList:
        call = self._list_request(resource, namespace, label_selector, field_selector, limit)
        return _object_list(self._send(call))

    def create(self, obj: Mapping[str, Any], namespace: str | None = None) -> Obj:
        return _object(self._send(self._create_request(obj, namespace)))

    def replace(
        self, obj: Mapping[str, Any], namespace: str | None = None, *, subresource: str | None = None
    ) -> Obj:
        return _object(self._send(self._replace_request(obj, namespace, subresource)))

    def patch(
        self,
        resource: Resource,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> Obj:
        """JSON merge patch (RFC 7386)."""
        return _object(self._send(self._patch_request(resource, name, patch, namespace, subresource)))

    def delete(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
    ) -> Obj:
        call = self._delete_request(resource, name, namespace, grace_period_seconds, propagation_policy)
        return _object(self._send(call))

    def scale(self, resource: Resource, name: str, replicas: int, namespace: str | None = None) -> Obj:
        return _object(self._send(self._scale_request(resource, name, replicas, namespace)))

    def watch(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[tuple[str, Obj]]:
        """``(type, object)`` events until the server ends the watch (``timeout_seconds``) or the caller stops."""
        call = self._watch_request(
            resource, namespace, resource_version, label_selector, field_selector, timeout_seconds
        )
        try:
            with self._stream(call) as response:
                for line in response.iter_lines():
                    event = _event(line)
                    if event is not None:
                        yield event
        except httpx.TransportError as exc:
            raise _interrupted(exc) from None

    def apply(
        self, items: Iterable[Mapping[str, Any]], namespace: str | None = None, *, dry_run: bool = False
    ) -> Results:
        """Apply every object atomically; one result per item: ``created|configured|unchanged``."""
        return _results(self._send(self._apply_request(items, namespace, dry_run)))

    @overload
    def logs(
        self,
        pod: str,
        namespace: str | None = None,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
        previous: bool = False,
        follow: Literal[False] = False,
    ) -> str: ...

    @overload
    def logs(
        self,
        pod: str,
        namespace: str | None = None,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
        previous: bool = False,
        follow: Literal[True],
    ) -> Iterator[str]: ...

    def logs(
        self,
        pod: str,
        namespace: str | None = None,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
        previous: bool = False,
        follow: bool = False,
    ) -> str | Iterator[str]:
        """The container's log; with ``follow=True`` an iterator of lines (see ``follow_logs``)."""
        if follow:
            return self.follow_logs(pod, namespace, container=container, tail_lines=tail_lines)
        return self._send(self._logs_request(pod, namespace, container, tail_lines, previous, False)).text

    def follow_logs(
        self,
        pod: str,
        namespace: str | None = None,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
    ) -> Iterator[str]:
        """Log lines as they are written, until the pod goes away or the caller stops."""
        with self._stream(self._logs_request(pod, namespace, container, tail_lines, False, True)) as response:
            yield from response.iter_lines()

    def evict(self, pod: str, namespace: str | None = None) -> None:
        """Evict through the eviction subresource; ``ApiError`` 429 when a PodDisruptionBudget forbids it."""
        self._send(self._evict_request(pod, namespace))


class AsyncClient(_Base):
    """Asynchronous client (httpx.AsyncClient) with the same methods as ``Client``."""

    def __init__(
        self,
        server: str,
        token: str | None = None,
        namespace: str = "default",
        *,
        timeout: float = 30.0,
        ca_data: str | None = None,
    ) -> None:
        super().__init__(server, token, namespace)
        self._http = httpx.AsyncClient(
            base_url=self.server, headers=_headers(token), timeout=timeout, verify=_verify(ca_data)
        )

    @classmethod
    def from_kubeconfig(cls, context: str | None = None, *, timeout: float = 30.0) -> AsyncClient:
        creds = credentials(context)
        return cls(creds.server, creds.token, creds.namespace, timeout=timeout, ca_data=creds.ca_data)

    @classmethod
    def auto(cls, context: str | None = None, *, timeout: float = 30.0) -> AsyncClient:
        """In a pod: the cluster the pod runs in; elsewhere (or with ``context``): the kubeconfig's."""
        creds = auto_credentials(context)
        return cls(creds.server, creds.token, creds.namespace, timeout=timeout, ca_data=creds.ca_data)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A raw request; raises ``ApiError`` for an error status."""
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise _unreachable(self.server, exc) from None
        self._warn(response)
        _raise_for(response)
        return response

    async def _send(self, call: _Request) -> httpx.Response:
        return await self.request(call.method, call.path, **call.kwargs())

    @contextlib.asynccontextmanager
    async def _stream(self, call: _Request) -> AsyncIterator[httpx.Response]:
        """A response whose body is read as it arrives (watches, followed logs); error statuses raise."""
        async with self._http.stream(
            call.method, call.path, timeout=_STREAM_TIMEOUT, **call.kwargs()
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                _raise_for(response)
            yield response

    async def get(
        self, resource: Resource, name: str, namespace: str | None = None, *, subresource: str | None = None
    ) -> Obj:
        return _object(await self._send(self._get_request(resource, name, namespace, subresource)))

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
    ) -> ObjectList:
        call = self._list_request(resource, namespace, label_selector, field_selector, limit)
        return _object_list(await self._send(call))

    async def create(self, obj: Mapping[str, Any], namespace: str | None = None) -> Obj:
        return _object(await self._send(self._create_request(obj, namespace)))

    async def replace(
        self, obj: Mapping[str, Any], namespace: str | None = None, *, subresource: str | None = None
    ) -> Obj:
        return _object(await self._send(self._replace_request(obj, namespace, subresource)))

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> Obj:
        """JSON merge patch (RFC 7386)."""
        return _object(await self._send(self._patch_request(resource, name, patch, namespace, subresource)))

    async def delete(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
    ) -> Obj:
        call = self._delete_request(resource, name, namespace, grace_period_seconds, propagation_policy)
        return _object(await self._send(call))

    async def scale(self, resource: Resource, name: str, replicas: int, namespace: str | None = None) -> Obj:
        return _object(await self._send(self._scale_request(resource, name, replicas, namespace)))

    async def watch(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[tuple[str, Obj]]:
        """``(type, object)`` events until the server ends the watch (``timeout_seconds``) or the caller stops."""
        call = self._watch_request(
            resource, namespace, resource_version, label_selector, field_selector, timeout_seconds
        )
        try:
            async with self._stream(call) as response:
                async for line in response.aiter_lines():
                    event = _event(line)
                    if event is not None:
                        yield event
        except httpx.TransportError as exc:
            raise _interrupted(exc) from None

    async def apply(
        self, items: Iterable[Mapping[str, Any]], namespace: str | None = None, *, dry_run: bool = False
    ) -> Results:
        """Apply every object atomically; one result per item: ``created|configured|unchanged``."""
        return _results(await self._send(self._apply_request(items, namespace, dry_run)))

    async def logs(
        self,
        pod: str,
        namespace: str | None = None,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
        previous: bool = False,
    ) -> str:
        """The container's log (see ``follow_logs`` to keep reading)."""
        call = self._logs_request(pod, namespace, container, tail_lines, previous, False)
        return (await self._send(call)).text

    async def follow_logs(
        self,
        pod: str,
        namespace: str | None = None,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
    ) -> AsyncIterator[str]:
        """Log lines as they are written, until the pod goes away or the caller stops."""
        async with self._stream(
            self._logs_request(pod, namespace, container, tail_lines, False, True)
        ) as response:
            async for line in response.aiter_lines():
                yield line

    async def evict(self, pod: str, namespace: str | None = None) -> None:
        """Evict through the eviction subresource; ``ApiError`` 429 when a PodDisruptionBudget forbids it."""
        await self._send(self._evict_request(pod, namespace))
