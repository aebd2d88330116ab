"""Test helpers for the control plane: a structural checker for the xDS TypedDicts, a reference
Envoy route matcher, and builders for Kubernetes/Istio objects as the API serves them."""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Literal, NotRequired, Required, get_args, get_origin, get_type_hints

from meshpilot.controlplane.registry import node_id
from meshpilot.xds import types as xt


def _required(tp: Any) -> set[str]:
    """Required keys. ``__required_keys__`` counts ``NotRequired`` fields as required when the
    defining module uses ``from __future__ import annotations``, so correct it from the hints."""
    hints = get_type_hints(tp, include_extras=True)
    required = set(tp.__required_keys__)
    for key, hint in hints.items():
        if get_origin(hint) is NotRequired:
            required.discard(key)
        elif get_origin(hint) is Required:
            required.add(key)
    return required


def _check(value: Any, tp: Any, path: str) -> None:
    origin = get_origin(tp)
    if origin in (NotRequired, Required):
        _check(value, get_args(tp)[0], path)
        return
    if tp is Any:
        return
    if origin is Literal:
        assert value in get_args(tp), f"{path}: {value!r} not in {get_args(tp)}"
        return
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in get_args(tp):
            try:
                _check(value, arg, path)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError("; ".join(errors))
    if origin is list:
        assert isinstance(value, list), f"{path}: expected list, got {type(value).__name__}"
        (item,) = get_args(tp)
        for i, v in enumerate(value):
            _check(v, item, f"{path}[{i}]")
        return
    if origin is dict:
        assert isinstance(value, dict), f"{path}: expected dict"
        kt, vt = get_args(tp)
        for k, v in value.items():
            _check(k, kt, f"{path}.<key>")
            _check(v, vt, f"{path}.{k}")
        return
    if isinstance(tp, type) and typing.is_typeddict(tp):
        assert isinstance(value, dict), f"{path}: expected {tp.__name__} dict, got {type(value).__name__}"
        hints = get_type_hints(tp, include_extras=True)
        missing = _required(tp) - value.keys()
        assert not missing, f"{path}: {tp.__name__} missing {sorted(missing)}"
        extra = value.keys() - hints.keys()
        assert not extra, f"{path}: {tp.__name__} has unknown keys {sorted(extra)}"
        for k, v in value.items():
            _check(v, hints[k], f"{path}.{k}")
        return
    if tp is float:
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{path}: expected number"
        return
    if tp is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: expected int, got {value!r}"
        return
    if tp is bool:
        assert isinstance(value, bool), f"{path}: expected bool"
        return
    if tp is str:
        assert isinstance(value, str), f"{path}: expected str, got {value!r}"
        return
    raise AssertionError(f"{path}: unchecked type {tp!r}")


def assert_valid(config: Any) -> None:
    """Every resource of a ProxyConfig is valid per meshpilot.xds.types, and names are unique."""
    for kind, items, tp, key in (
        ("cluster", config.clusters, xt.Cluster, "name"),
        ("endpoint", config.endpoints, xt.ClusterLoadAssignment, "cluster_name"),
        ("listener", config.listeners, xt.Listener, "name"),
        ("route", config.routes, xt.RouteConfiguration, "name"),
    ):
        names = [i[key] for i in items]
        assert len(names) == len(set(names)), f"duplicate {kind} names: {names}"
        for item in items:
            _check(item, tp, f"{kind}:{item[key]}")
    for rc in config.routes:
        seen: set[str] = set()
        for vh in rc["virtual_hosts"]:
            dup = seen & set(vh["domains"])
            assert not dup, f"route {rc['name']}: duplicate domains {dup}"
            seen.update(vh["domains"])


def route_clusters(config: Any) -> list[str]:
    """Every cluster name a route of the config sends traffic to."""
    out = []
    for rc in config.routes:
        for vh in rc["virtual_hosts"]:
            for r in vh["routes"]:
                action = r.get("route", {})
                if "cluster" in action:
                    out.append(action["cluster"])
                out += [w["name"] for w in action.get("weighted_clusters", [])]
    return out


# --- a reference Envoy route matcher (Envoy's documented semantics, for assertions) ------------


def _string_match(sm: dict[str, Any], value: str) -> bool:
    if sm.get("ignore_case"):
        value = value.lower()
        sm = {k: (v.lower() if isinstance(v, str) else v) for k, v in sm.items()}
    if "exact" in sm:
        return value == sm["exact"]
    if "prefix" in sm:
        return value.startswith(sm["prefix"])
    if "suffix" in sm:
        return value.endswith(sm["suffix"])
    if "contains" in sm:
        return sm["contains"] in value
    return re.fullmatch(sm["safe_regex"], value) is not None


def _domain_matches(domain: str, host: str) -> int:
    """Envoy's precedence: exact (3) > suffix wildcard (2) > prefix wildcard (1) > * (0); -1 none."""
    if domain == host:
        return 3
    if domain == "*":
        return 0
    if domain.startswith("*") and host.endswith(domain[1:]):
        return 2
    if domain.endswith("*") and host.startswith(domain[:-1]):
        return 1
    return -1


def select_virtual_host(rc: dict[str, Any], host: str) -> dict[str, Any] | None:
    best: tuple[int, int, dict[str, Any]] | None = None
    for vh in rc["virtual_hosts"]:
        for d in vh["domains"]:
            score = _domain_matches(d, host.lower())
            if score < 0:
                continue
            rank = (score, len(d))
            if best is None or rank > best[:2]:
                best = (score, len(d), vh)
    return best[2] if best else None


def route_matches(
    match: dict[str, Any], method: str, path: str, headers: dict[str, str], authority: str
) -> bool:
    p, _, query = path.partition("?")
    cs = match.get("case_sensitive", True)
    cmp_path = p if cs else p.lower()
    if "prefix" in match:
        if not cmp_path.startswith(match["prefix"] if cs else match["prefix"].lower()):
            return False
    elif "path" in match:
        if cmp_path != (match["path"] if cs else match["path"].lower()):
            return False
    elif "safe_regex" in match:
        if re.fullmatch(match["safe_regex"], p) is None:
            return False
    hdrs = {k.lower(): v for k, v in headers.items()}
    hdrs[":method"] = method
    hdrs[":authority"] = authority
    hdrs[":path"] = path
    hdrs.setdefault(":scheme", "http")
    for hm in match.get("headers", []):
        value = hdrs.get(hm["name"])
        if "present_match" in hm:
            ok = (value is not None) == hm["present_match"]
        elif value is None:
            return False  # Envoy: an absent header fails a value matcher, inverted or not
        else:
            ok = _string_match(hm["string_match"], value)
        if hm.get("invert_match"):
            ok = not ok
        if not ok:
            return False
    params: dict[str, str] = {}
    for part in query.split("&"):
        if part:
            k, _, v = part.partition("=")
            params.setdefault(k, v)
    for qm in match.get("query_parameters", []):
        value = params.get(qm["name"])
        if qm.get("present_match"):
            if value is None:
                return False
        elif value is None or not _string_match(qm["string_match"], value):
            return False
    return True


def resolve(
    config: Any,
    url_host: str,
    port: int,
    path: str = "/",
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    """The route a request would take through the outbound listener (None: 404 NR)."""
    rc = next((r for r in config.routes if r["name"] == str(port)), None)
    if rc is None:
        return None
    vh = select_virtual_host(rc, url_host)
    if vh is None:
        return None
    for r in vh["routes"]:
        if route_matches(r["match"], method, path, headers or {}, url_host):
            return r
    return None


def target(route: dict[str, Any] | None) -> Any:
    """A route's destination in a compact form: a cluster name, [(name, weight)], or the route."""
    assert route is not None, "no route matched"
    action = route.get("route")
    if action is None:
        return route
    if "cluster" in action:
        return action["cluster"]
    return [(w["name"], w["weight"]) for w in action["weighted_clusters"]]


# --- builders -------------------------------------------------------------------------------------


def service(name: str, ns: str, ports: list[tuple[str, int, int]], ip: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, **meta},
        "spec": {
            "clusterIP": ip,
            "selector": {"app": name},
            "ports": [{"name": n, "port": p, "targetPort": t, "protocol": "TCP"} for n, p, t in ports],
        },
    }


def pod(
    name: str,
    ns: str,
    ip: str,
    labels: dict[str, str],
    ports: list[int] | None = None,
    *,
    owner: str | None = None,
    sa: str = "default",
    annotations: dict[str, str] | None = None,
    env: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels}
    if owner:
        meta["ownerReferences"] = [
            {"kind": "ReplicaSet", "name": owner, "apiVersion": "apps/v1", "controller": True}
        ]
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "serviceAccountName": sa,
            "containers": [
                {
                    "name": "app",
                    "command": ["python"],
                    "ports": [{"containerPort": p, "protocol": "TCP"} for p in ports or []],
                    "env": env or [],
                },
                {"name": "istio-proxy", "command": ["python", "-m", "meshpilot.proxy"]},
            ],
        },
        "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def endpoints(name: str, ns: str, pods: list[dict[str, Any]], ports: list[tuple[str, int]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns},
        "subsets": [
            {
                "addresses": [
                    {
                        "ip": p["status"]["podIP"],
                        "targetRef": {"kind": "Pod", "name": p["metadata"]["name"], "namespace": ns},
                    }
                    for p in pods
                ],
                "ports": [{"name": n, "port": port, "protocol": "TCP"} for n, port in ports],
            }
        ],
    }


def istio(
    kind: str, name: str, ns: str, spec: dict[str, Any], created: str = "", *, valid: bool = True
) -> dict[str, Any]:
    """An Istio networking object; unless ``valid=False`` it must pass meshpilot.api.validate, so the
    translator is tested on config a user could actually apply."""
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if created:
        meta["creationTimestamp"] = created
    obj = {"apiVersion": "networking.istio.io/v1", "kind": kind, "metadata": meta, "spec": spec}
    if valid:
        from meshpilot.api import validate

        validate(obj)
    return obj


__all__ = ["assert_valid", "endpoints", "istio", "node_id", "pod", "resolve", "service", "target"]
