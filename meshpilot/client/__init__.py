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

import json
import ssl
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
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


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    text = response.text.strip() if body is None else ""
    raise ApiError.from_status(response.status_code, body, text)


def _watch_params(
    resource_version: str | None,
    label_selector: str | None,
    field_selector: str | None,
    timeout_seconds: float | None,
) -> dict[str, str]:
    params = {"watch": "true"}
    if resource_version:
        params["resourceVersion"] = resource_version
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    if timeout_seconds is not None:
        params["timeoutSeconds"] = str(int(timeout_seconds))
    return params


def _list_params(label_selector: str | None, field_selector: str | None, limit: int | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    if limit:
        params["limit"] = str(limit)
    return params


def _event(line: bytes) -> tuple[str, Obj]:
    event = json.loads(line)
    if event.get("type") == "ERROR":
        raise ApiError.from_status(int((event.get("object") or {}).get("code") or 500), event.get("object"))
    return str(event["type"]), event["object"]


def _delete_params(grace_period_seconds: int | None, propagation_policy: str | None) -> dict[str, str]:
    params: dict[str, str] = {}
    if grace_period_seconds is not None:
        params["gracePeriodSeconds"] = str(grace_period_seconds)
    if propagation_policy:
        params["propagationPolicy"] = propagation_policy
    return params


def _headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


class _Base:
    def __init__(self, server: str, token: str | None = None, namespace: str = "default") -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.namespace = namespace

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


def _verify(ca_data: str | None) -> ssl.SSLContext | bool:
    """Trust exactly the cluster's CA when the kubeconfig names one; else the system's."""
    if ca_data:
        return ssl.create_default_context(cadata=ca_data)
    return True


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
            raise ApiError(
                503, "ServiceUnavailable", f"cannot reach the API server at {self.server}: {exc}"
            ) from None
        _raise_for(response)
        return response

    def get(
        self, resource: Resource, name: str, namespace: str | None = None, *, subresource: str | None = None
    ) -> Obj:
        info = kind_info(resource)
        result: Obj = self.request(
            "GET", resource_path(info, self._ns(info, namespace), name, subresource)
        ).json()
        return result

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
    ) -> ObjectList:
        info = kind_info(resource)
        body = self.request(
            "GET",
            resource_path(info, self._ns(info, namespace)),
            params=_list_params(label_selector, field_selector, limit),
        ).json()
        out = ObjectList(body.get("items") or [])
        out.resource_version = str((body.get("metadata") or {}).get("resourceVersion", ""))
        return out

    def create(self, obj: Mapping[str, Any], namespace: str | None = None) -> Obj:
        info = info_of(obj)
        path = resource_path(info, self._obj_ns(info, obj, namespace), version=_version_of(obj, info))
        result: Obj = self.request("POST", path, json=dict(obj)).json()
        return result

    def replace(
        self, obj: Mapping[str, Any], namespace: str | None = None, *, subresource: str | None = None
    ) -> Obj:
        info = info_of(obj)
        name = str((obj.get("metadata") or {}).get("name"))
        path = resource_path(
            info, self._obj_ns(info, obj, namespace), name, subresource, _version_of(obj, info)
        )
        result: Obj = self.request("PUT", path, json=dict(obj)).json()
        return result

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
        info = kind_info(resource)
        result: Obj = self.request(
            "PATCH",
            resource_path(info, self._ns(info, namespace), name, subresource),
            content=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        ).json()
        return result

    def delete(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
    ) -> Obj:
        info = kind_info(resource)
        result: Obj = self.request(
            "DELETE",
            resource_path(info, self._ns(info, namespace), name),
            params=_delete_params(grace_period_seconds, propagation_policy),
        ).json()
        return result

    def scale(self, resource: Resource, name: str, replicas: int, namespace: str | None = None) -> Obj:
        return self.patch(resource, name, {"spec": {"replicas": replicas}}, namespace, subresource="scale")

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
        info = kind_info(resource)
        params = _watch_params(resource_version, label_selector, field_selector, timeout_seconds)
        try:
            with self._http.stream(
                "GET",
                resource_path(info, self._ns(info, namespace)),
                params=params,
                timeout=httpx.Timeout(30, read=None),
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response)
                for line in response.iter_lines():
                    if line.strip():
                        yield _event(line.encode())
        except httpx.TransportError as exc:
            raise ApiError(503, "ServiceUnavailable", f"watch interrupted: {exc}") from None

    def apply(
        self, items: Iterable[Mapping[str, Any]], namespace: str | None = None, *, dry_run: bool = False
    ) -> Results:
        """Apply every object atomically; one result per item: ``created|configured|unchanged``."""
        params = {"namespace": namespace or self.namespace}
        if dry_run:
            params["dryRun"] = "All"
        body = self.request(
            "POST",
            "/apis/meshpilot.io/v1alpha1/apply",
            json={"items": [dict(i) for i in items]},
            params=params,
        ).json()
        results: Results = body.get("items") or []
        return results

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
        info = kind_info(("", "pods"))
        params = _log_params(container, tail_lines, previous, follow=False)
        return self.request(
            "GET", resource_path(info, self._ns(info, namespace), pod, "log"), params=params
        ).text

    def follow_logs(
        self,
        pod: str,
        namespace: str | None = None,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
    ) -> Iterator[str]:
        """Log lines as they are written, until the pod goes away or the caller stops."""
        info = kind_info(("", "pods"))
        params = _log_params(container, tail_lines, False, follow=True)
        with self._http.stream(
            "GET",
            resource_path(info, self._ns(info, namespace), pod, "log"),
            params=params,
            timeout=httpx.Timeout(30, read=None),
        ) as response:
            if response.status_code >= 400:
                response.read()
                _raise_for(response)
            yield from response.iter_lines()

    def evict(self, pod: str, namespace: str | None = None) -> None:
        """Evict through the eviction subresource; ``ApiError`` 429 when a PodDisruptionBudget forbids it."""
        info = kind_info(("", "pods"))
        ns = self._ns(info, namespace)
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": ns}}
        self.request("POST", resource_path(info, ns, pod, "eviction"), json=body)


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
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(
                503, "ServiceUnavailable", f"cannot reach the API server at {self.server}: {exc}"
            ) from None
        _raise_for(response)
        return response

    async def get(
        self, resource: Resource, name: str, namespace: str | None = None, *, subresource: str | None = None
    ) -> Obj:
        info = kind_info(resource)
        response = await self.request(
            "GET", resource_path(info, self._ns(info, namespace), name, subresource)
        )
        result: Obj = response.json()
        return result

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
    ) -> ObjectList:
        info = kind_info(resource)
        response = await self.request(
            "GET",
            resource_path(info, self._ns(info, namespace)),
            params=_list_params(label_selector, field_selector, limit),
        )
        body = response.json()
        out = ObjectList(body.get("items") or [])
        out.resource_version = str((body.get("metadata") or {}).get("resourceVersion", ""))
        return out

    async def create(self, obj: Mapping[str, Any], namespace: str | None = None) -> Obj:
        info = info_of(obj)
        path = resource_path(info, self._obj_ns(info, obj, namespace), version=_version_of(obj, info))
        result: Obj = (await self.request("POST", path, json=dict(obj))).json()
        return result

    async def replace(
        self, obj: Mapping[str, Any], namespace: str | None = None, *, subresource: str | None = None
    ) -> Obj:
        info = info_of(obj)
        name = str((obj.get("metadata") or {}).get("name"))
        path = resource_path(
            info, self._obj_ns(info, obj, namespace), name, subresource, _version_of(obj, info)
        )
        result: Obj = (await self.request("PUT", path, json=dict(obj))).json()
        return result

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> Obj:
        info = kind_info(resource)
        response = await self.request(
            "PATCH",
            resource_path(info, self._ns(info, namespace), name, subresource),
            content=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        result: Obj = response.json()
        return result

    async def delete(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
    ) -> Obj:
        info = kind_info(resource)
        response = await self.request(
            "DELETE",
            resource_path(info, self._ns(info, namespace), name),
            params=_delete_params(grace_period_seconds, propagation_policy),
        )
        result: Obj = response.json()
        return result

    async def scale(self, resource: Resource, name: str, replicas: int, namespace: str | None = None) -> Obj:
        return await self.patch(
            resource, name, {"spec": {"replicas": replicas}}, namespace, subresource="scale"
        )

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
        info = kind_info(resource)
        params = _watch_params(resource_version, label_selector, field_selector, timeout_seconds)
        try:
            async with self._http.stream(
                "GET",
                resource_path(info, self._ns(info, namespace)),
                params=params,
                timeout=httpx.Timeout(30, read=None),
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for(response)
                async for line in response.aiter_lines():
                    if line.strip():
                        yield _event(line.encode())
        except httpx.TransportError as exc:
            raise ApiError(503, "ServiceUnavailable", f"watch interrupted: {exc}") from None

    async def apply(
        self, items: Iterable[Mapping[str, Any]], namespace: str | None = None, *, dry_run: bool = False
    ) -> Results:
        params = {"namespace": namespace or self.namespace}
        if dry_run:
            params["dryRun"] = "All"
        response = await self.request(
            "POST",
            "/apis/meshpilot.io/v1alpha1/apply",
            json={"items": [dict(i) for i in items]},
            params=params,
        )
        results: Results = response.json().get("items") or []
        return results

    async def logs(
        self,
        pod: str,
        namespace: str | None = None,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
        previous: bool = False,
    ) -> str:
        info = kind_info(("", "pods"))
        params = _log_params(container, tail_lines, previous, follow=False)
        response = await self.request(
            "GET", resource_path(info, self._ns(info, namespace), pod, "log"), params=params
        )
        return response.text

    async def follow_logs(
        self,
        pod: str,
        namespace: str | None = None,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
    ) -> AsyncIterator[str]:
        info = kind_info(("", "pods"))
        params = _log_params(container, tail_lines, False, follow=True)
        async with self._http.stream(
            "GET",
            resource_path(info, self._ns(info, namespace), pod, "log"),
            params=params,
            timeout=httpx.Timeout(30, read=None),
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                _raise_for(response)
            async for line in response.aiter_lines():
                yield line

    async def evict(self, pod: str, namespace: str | None = None) -> None:
        info = kind_info(("", "pods"))
        ns = self._ns(info, namespace)
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": ns}}
        await self.request("POST", resource_path(info, ns, pod, "eviction"), json=body)
