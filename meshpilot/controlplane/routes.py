"""VirtualService http routes -> Envoy routes, evaluated for one proxy and one port.

Istio's semantics carried over: the match blocks of one http route are OR'ed (one Envoy route
each, same action); conditions inside a block are AND'ed; routes keep their order, first match
wins; ``sourceLabels``/``sourceNamespace``/``gateways``/``port`` are decided here, per proxy and
per port, so a block that cannot apply to this proxy is dropped rather than sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from meshpilot.controlplane._util import (
    ConfigError,
    as_list,
    labels_match,
    name_of,
    namespace_of,
    parse_duration,
)
from meshpilot.controlplane.registry import ProxyIdentity
from meshpilot.xds.types import (
    FaultInjection,
    HashPolicy,
    HeaderEdits,
    HeaderMatcher,
    HeaderValueOption,
    QueryParameterMatcher,
    RedirectAction,
    RequestMirrorPolicy,
    RetryPolicy,
    Route,
    RouteAction,
    RouteMatch,
    StringMatch,
    WeightedCluster,
)

# Istio's default retry policy for http routes (meshConfig.defaultHttpRetryPolicy unset).
DEFAULT_RETRY: RetryPolicy = {
    "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    "num_retries": 2,
    "retriable_status_codes": [503],
}


def default_retry() -> RetryPolicy:
    return {
        "retry_on": DEFAULT_RETRY["retry_on"],
        "num_retries": DEFAULT_RETRY["num_retries"],
        "retriable_status_codes": list(DEFAULT_RETRY["retriable_status_codes"]),
    }


# (host, port or None, subset) -> (cluster name, hash policy of that destination)
Resolver = Callable[[str, int | None, str], tuple[str, list[HashPolicy]]]


def vs_config_path(vs: Mapping[str, Any]) -> str:
    return f"/apis/networking.istio.io/v1/namespaces/{namespace_of(vs)}/virtual-service/{name_of(vs)}"


def string_match(m: Mapping[str, Any], *, what: str) -> StringMatch | None:
    """Istio StringMatch (exact/prefix/regex) -> Envoy's; None for an empty match (presence)."""
    if "exact" in m:
        return {"exact": str(m["exact"])}
    if "prefix" in m:
        return {"prefix": str(m["prefix"])}
    if "regex" in m:
        return {"safe_regex": str(m["regex"])}
    if m:
        raise ConfigError(f"{what}: unsupported string match {dict(m)!r}")
    return None


def _header_matcher(name: str, m: Any, *, invert: bool = False) -> HeaderMatcher:
    hm: HeaderMatcher = {"name": name.lower()}
    sm = string_match(m if isinstance(m, Mapping) else {}, what=f"header {name}")
    if sm is None:
        hm["present_match"] = not invert
    else:
        hm["string_match"] = sm
        if invert:
            hm["invert_match"] = True
    return hm


def translate_match(m: Mapping[str, Any] | None) -> RouteMatch:
    """One HTTPMatchRequest block (already known to apply to this proxy) -> RouteMatch."""
    if m is None:
        return {"prefix": "/"}
    rm: RouteMatch = {}
    uri = m.get("uri")
    if isinstance(uri, Mapping) and uri:
        if "exact" in uri:
            rm["path"] = str(uri["exact"])
        elif "prefix" in uri:
            rm["prefix"] = str(uri["prefix"])
        elif "regex" in uri:
            rm["safe_regex"] = str(uri["regex"])
        else:
            raise ConfigError(f"uri: unsupported string match {dict(uri)!r}")
    else:
        rm["prefix"] = "/"
    if m.get("ignoreUriCase"):
        rm["case_sensitive"] = False
    headers: list[HeaderMatcher] = []
    for pseudo, field in ((":method", "method"), (":authority", "authority"), (":scheme", "scheme")):
        if isinstance(m.get(field), Mapping):
            headers.append(_header_matcher(pseudo, m[field]))
    for name, hm in sorted((m.get("headers") or {}).items()):
        headers.append(_header_matcher(str(name), hm))
    for name, hm in sorted((m.get("withoutHeaders") or {}).items()):
        headers.append(_header_matcher(str(name), hm, invert=True))
    if headers:
        rm["headers"] = headers
    params: list[QueryParameterMatcher] = []
    for name, qm in sorted((m.get("queryParams") or {}).items()):
        qp: QueryParameterMatcher = {"name": str(name)}
        sm = string_match(qm if isinstance(qm, Mapping) else {}, what=f"queryParams {name}")
        if sm is None:
            qp["present_match"] = True
        else:
            qp["string_match"] = sm
        params.append(qp)
    if params:
        rm["query_parameters"] = params
    return rm


def match_applies(m: Mapping[str, Any], proxy: ProxyIdentity, port: int) -> bool:
    """Whether a match block can ever match traffic from this proxy on this port."""
    if m.get("port") is not None and int(m["port"]) != port:
        return False
    if m.get("sourceLabels") and not labels_match(m["sourceLabels"], proxy.labels):
        return False
    if m.get("sourceNamespace") and m["sourceNamespace"] != proxy.namespace:
        return False
    gateways = m.get("gateways")
    return not gateways or "mesh" in gateways


def is_catch_all(rm: RouteMatch) -> bool:
    return rm == {"prefix": "/"}


def header_edits(headers: Any) -> HeaderEdits:
    """Istio ``headers.request/response.set/add/remove`` -> Envoy header edits."""
    out: HeaderEdits = {}
    if not isinstance(headers, Mapping):
        return out
    for side in ("request", "response"):
        ops = headers.get(side)
        if not isinstance(ops, Mapping):
            continue
        add: list[HeaderValueOption] = []
        for k, v in sorted((ops.get("set") or {}).items()):
            add.append(
                {"header": {"key": str(k), "value": str(v)}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            )
        for k, v in sorted((ops.get("add") or {}).items()):
            add.append(
                {"header": {"key": str(k), "value": str(v)}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}
            )
        remove = [str(h) for h in as_list(ops.get("remove"))]
        if side == "request":
            if add:
                out["request_headers_to_add"] = add
            if remove:
                out["request_headers_to_remove"] = remove
        else:
            if add:
                out["response_headers_to_add"] = add
            if remove:
                out["response_headers_to_remove"] = remove
    return out


def merge_edits(target: HeaderEdits, extra: HeaderEdits) -> None:
    for key in (
        "request_headers_to_add",
        "request_headers_to_remove",
        "response_headers_to_add",
        "response_headers_to_remove",
    ):
        if key in extra:
            target[key] = [*target.get(key, []), *extra[key]]  # type: ignore[literal-required,unused-ignore]


def _percentage(block: Mapping[str, Any], default: float = 100.0) -> float:
    pct = block.get("percentage")
    if isinstance(pct, Mapping) and pct.get("value") is not None:
        return float(pct["value"])
    if block.get("percent") is not None:
        return float(block["percent"])
    return default


def _fault(fault: Mapping[str, Any]) -> FaultInjection:
    out: FaultInjection = {}
    delay = fault.get("delay")
    if isinstance(delay, Mapping) and delay.get("fixedDelay"):
        out["delay"] = {"fixed_delay": parse_duration(delay["fixedDelay"]), "percentage": _percentage(delay)}
    abort = fault.get("abort")
    if isinstance(abort, Mapping) and abort.get("httpStatus") is not None:
        out["abort"] = {"http_status": float(int(abort["httpStatus"])), "percentage": _percentage(abort)}
    return out


def _dest(d: Any) -> tuple[str, int | None, str]:
    if not isinstance(d, Mapping) or not d.get("host"):
        raise ConfigError("destination.host is required")
    port = d.get("port")
    number = int(port["number"]) if isinstance(port, Mapping) and port.get("number") is not None else None
    return str(d["host"]), number, str(d.get("subset") or "")


def build_action(http: Mapping[str, Any], resolve: Resolver) -> Route:
    """Everything of a route except ``name`` and ``match``: route/redirect/direct response + edits."""
    r: Route = {}
    merge_edits(r, header_edits(http.get("headers")))
    if isinstance(http.get("redirect"), Mapping):
        red = http["redirect"]
        ra: RedirectAction = {"response_code": int(red.get("redirectCode") or 301)}
        if red.get("uri"):
            ra["path_redirect"] = str(red["uri"])
        if red.get("authority"):
            ra["host_redirect"] = str(red["authority"])
        if red.get("port"):
            ra["port_redirect"] = int(red["port"])
        if red.get("scheme"):
            ra["scheme_redirect"] = str(red["scheme"])
        r["redirect"] = ra
        return r
    if isinstance(http.get("directResponse"), Mapping):
        dr = http["directResponse"]
        r["direct_response"] = {"status": int(dr.get("status") or 200)}
        body = dr.get("body")
        if isinstance(body, Mapping) and body.get("string") is not None:
            r["direct_response"]["body"] = str(body["string"])
        return r
    dests = [d for d in as_list(http.get("route")) if isinstance(d, Mapping)]
    if not dests:
        raise ConfigError("http route needs route, redirect or directResponse")
    action: RouteAction = {}
    hashes: list[HashPolicy] = []
    if len(dests) == 1:
        name, hashes = resolve(*_dest(dests[0].get("destination")))
        action["cluster"] = name
        merge_edits(r, header_edits(dests[0].get("headers")))
    else:
        weights = [int(d.get("weight") or 0) for d in dests]
        if sum(weights) == 0:
            weights = [1] * len(dests)
        clusters: list[WeightedCluster] = []
        for d, w in zip(dests, weights, strict=True):
            name, h = resolve(*_dest(d.get("destination")))
            if not hashes:
                hashes = h
            wc: WeightedCluster = {"name": name, "weight": w}
            edits = header_edits(d.get("headers"))
            wc.update(edits)  # type: ignore[typeddict-item]
            clusters.append(wc)
        action["weighted_clusters"] = clusters
    rewrite = http.get("rewrite")
    if isinstance(rewrite, Mapping):
        regex = rewrite.get("uriRegexRewrite")
        if isinstance(regex, Mapping) and regex.get("match") is not None:
            action["regex_rewrite"] = {
                "pattern": str(regex["match"]),
                "substitution": str(regex.get("rewrite", "")),
            }
        elif rewrite.get("uri"):
            action["prefix_rewrite"] = str(rewrite["uri"])
        if rewrite.get("authority"):
            action["host_rewrite_literal"] = str(rewrite["authority"])
    action["timeout"] = parse_duration(http["timeout"]) if http.get("timeout") else 0.0
    retries = http.get("retries")
    if isinstance(retries, Mapping):
        rp: RetryPolicy = {"num_retries": int(retries.get("attempts") or 0)}
        # Istio's retryOn mixes Envoy conditions and status codes ("5xx,503,connect-failure"):
        # codes become retriable_status_codes behind the retriable-status-codes condition.
        conditions: list[str] = []
        codes: list[int] = []
        for item in str(retries.get("retryOn") or DEFAULT_RETRY["retry_on"]).split(","):
            item = item.strip()
            if item.isdigit():
                codes.append(int(item))
            elif item and item not in conditions:
                conditions.append(item)
        if codes and "retriable-status-codes" not in conditions:
            conditions.append("retriable-status-codes")
        if "retriable-status-codes" in conditions and not codes:
            codes = [503]
        rp["retry_on"] = ",".join(conditions)
        if codes:
            rp["retriable_status_codes"] = codes
        if retries.get("perTryTimeout"):
            rp["per_try_timeout"] = parse_duration(retries["perTryTimeout"])
        action["retry_policy"] = rp
    else:
        action["retry_policy"] = default_retry()
    if hashes:
        action["hash_policy"] = hashes
    mirrors: list[RequestMirrorPolicy] = []
    if isinstance(http.get("mirror"), Mapping):
        name, _ = resolve(*_dest(http["mirror"]))
        pct = http.get("mirrorPercentage")
        value = float(pct["value"]) if isinstance(pct, Mapping) and pct.get("value") is not None else 100.0
        mirrors.append({"cluster": name, "percentage": value})
    for m in as_list(http.get("mirrors")):
        if isinstance(m, Mapping):
            name, _ = resolve(*_dest(m.get("destination")))
            mirrors.append({"cluster": name, "percentage": _percentage(m)})
    if mirrors:
        action["request_mirror_policies"] = mirrors
    r["route"] = action
    if isinstance(http.get("fault"), Mapping):
        fault = _fault(http["fault"])
        if fault:
            r["fault"] = fault
    return r


def translate_http_routes(
    vs: Mapping[str, Any], proxy: ProxyIdentity, port: int, resolve: Resolver
) -> list[Route]:
    """The Envoy routes one VirtualService contributes to the route table of ``port``."""
    out: list[Route] = []
    spec = vs.get("spec") or {}
    config = {"istio": {"config": vs_config_path(vs)}}
    for index, http in enumerate(as_list(spec.get("http"))):
        if not isinstance(http, Mapping):
            continue
        blocks = http.get("match")
        kept: list[Mapping[str, Any] | None]
        if blocks:
            kept = [m for m in blocks if isinstance(m, Mapping) and match_applies(m, proxy, port)]
            if not kept:
                continue
        else:
            kept = [None]
        action = build_action(http, resolve)
        base_name = str(http.get("name") or "")
        catch_all = False
        for i, m in enumerate(kept):
            route: Route = {"match": translate_match(m)}
            block_name = str(m.get("name") or "") if m else ""
            name = ".".join(p for p in (block_name, base_name) if p) or f"{name_of(vs)}.{index}.{i}"
            route["name"] = name
            route.update(action)
            route["metadata"] = config
            out.append(route)
            catch_all = catch_all or is_catch_all(route["match"])
        if catch_all:
            break  # later routes can never match
    return out


def default_route(cluster: str, hashes: list[HashPolicy]) -> Route:
    """The route of a host no VirtualService claims: everything to the service's cluster."""
    action: RouteAction = {"cluster": cluster, "timeout": 0.0, "retry_policy": default_retry()}
    if hashes:
        action["hash_policy"] = hashes
    return {"name": "default", "match": {"prefix": "/"}, "route": action}
