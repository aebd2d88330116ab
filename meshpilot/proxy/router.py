"""The route matcher: xDS RouteConfiguration in, a routing decision out, no sockets.

Everything the data plane needs from a route table is compiled once per pushed configuration
(regexes, lowercased header names, cumulative weights), so that matching a request is a walk
over plain tuples. Tests drive this module directly with ``RequestView`` values.

Semantics follow Envoy's, which Istio's VirtualService compiles to: virtual hosts are chosen by
domain (exact, then the longest ``*.suffix``, then the longest ``prefix.*``, then ``*``), routes
are tried in order and the first match wins.
"""

from __future__ import annotations

import bisect
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl

from meshpilot.xds.types import (
    HeaderEdits,
    HeaderMatcher,
    QueryParameterMatcher,
    Route,
    RouteConfiguration,
    RouteMatch,
    StringMatch,
    VirtualHost,
)


class ConfigError(ValueError):
    """A pushed resource the proxy cannot apply; the message becomes the NACK's error_detail."""


Headers = list[tuple[bytes, bytes]]  # names lowercased, values raw


@dataclass(slots=True)
class RequestView:
    """What matching looks at. ``path`` excludes the query string; names are lowercase."""

    method: str
    path: str
    query: str
    authority: str
    headers: Headers
    source_ip: str = ""

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


# --- string matching --------------------------------------------------------------------------

StrPred = Callable[[str], bool]


def compile_string_match(m: StringMatch, where: str) -> StrPred:
    """One of exact / prefix / suffix / contains / safe_regex; regexes must match the whole value."""
    if not isinstance(m, dict):
        raise ConfigError(f"{where}: string_match must be an object")
    kinds = [k for k in ("exact", "prefix", "suffix", "contains", "safe_regex") if k in m]
    if len(kinds) != 1:
        raise ConfigError(f"{where}: exactly one of exact/prefix/suffix/contains/safe_regex, got {kinds}")
    kind = kinds[0]
    value = m[kind]
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{kind}: expected a string")
    ic = bool(m.get("ignore_case", False))
    if kind == "safe_regex":
        try:
            rx = re.compile(value, re.IGNORECASE if ic else 0)
        except re.error as e:
            raise ConfigError(f"{where}.safe_regex: invalid regex {value!r}: {e}") from None
        return lambda s: rx.fullmatch(s) is not None
    if ic:
        value = value.lower()
    if kind == "exact":
        return (lambda s: s.lower() == value) if ic else (lambda s: s == value)
    if kind == "prefix":
        return (lambda s: s.lower().startswith(value)) if ic else (lambda s: s.startswith(value))
    if kind == "suffix":
        return (lambda s: s.lower().endswith(value)) if ic else (lambda s: s.endswith(value))
    return (lambda s: value in s.lower()) if ic else (lambda s: value in s)


@dataclass(slots=True, frozen=True)
class HeaderPred:
    name: str  # lowercase; pseudo-headers keep their colon
    pred: StrPred | None
    present: bool | None
    invert: bool
    raw_name: bytes = b""  # ``name`` as header bytes, encoded once

    def __call__(self, req: RequestView) -> bool:
        if self.name == ":method":
            value: str | None = req.method
        elif self.name == ":authority" or self.name == "host":
            value = req.authority
        elif self.name == ":path":
            value = req.path + ("?" + req.query if req.query else "")
        elif self.name == ":scheme":
            value = "http"
        else:
            raw = req.header(self.raw_name)
            value = None if raw is None else raw.decode("latin-1")
        if self.present is not None:
            result = (value is not None) == self.present
        elif value is None:
            # Envoy: an absent header never matches a value matcher, even inverted.
            return False
        else:
            result = self.pred(value) if self.pred is not None else True
        return result != self.invert


def _header_pred(h: HeaderMatcher, where: str) -> HeaderPred:
    if not isinstance(h, dict) or not isinstance(h.get("name"), str) or not h["name"]:
        raise ConfigError(f"{where}.name: a non-empty header name is required")
    pred = compile_string_match(h["string_match"], f"{where}.string_match") if "string_match" in h else None
    present = h.get("present_match")
    if present is not None and not isinstance(present, bool):
        raise ConfigError(f"{where}.present_match: expected a boolean")
    name = h["name"].lower()
    if not (name.startswith(":") or _is_token(name)):
        raise ConfigError(f"{where}.name: {h['name']!r} is not a header name")
    return HeaderPred(name, pred, present, bool(h.get("invert_match", False)), name.encode("latin-1"))


_TOKEN: Final = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_token(name: str) -> bool:
    """An RFC 9110 token: what a header name may be (anything else could inject header lines)."""
    return bool(name) and all(c in _TOKEN for c in name)


@dataclass(slots=True, frozen=True)
class QueryPred:
    name: str
    pred: StrPred | None
    present: bool | None

    def __call__(self, params: dict[str, str]) -> bool:
        value = params.get(self.name)
        if self.present is not None:
            return (value is not None) == self.present
        if value is None:
            return False
        return self.pred(value) if self.pred is not None else True


def _query_pred(q: QueryParameterMatcher, where: str) -> QueryPred:
    if not isinstance(q, dict) or not isinstance(q.get("name"), str) or not q["name"]:
        raise ConfigError(f"{where}.name: a non-empty parameter name is required")
    pred = compile_string_match(q["string_match"], f"{where}.string_match") if "string_match" in q else None
    return QueryPred(q["name"], pred, q.get("present_match"))


# --- header edits -----------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class HeaderOps:
    """Removals then additions; ``overwrite`` replaces every existing value of the name."""

    remove: frozenset[bytes] = frozenset()
    add: tuple[tuple[bytes, bytes, bool], ...] = ()  # (name, value, overwrite)

    def __bool__(self) -> bool:
        return bool(self.remove or self.add)

    def apply(self, headers: Headers) -> Headers:
        """The edited list; with additions only, that is ``headers`` itself, appended to."""
        if self.remove:
            headers = [h for h in headers if h[0] not in self.remove]
        for name, value, overwrite in self.add:
            if overwrite:
                headers = [h for h in headers if h[0] != name]
            headers.append((name, value))
        return headers


def _header_ops(adds: Any, removes: Any, where: str) -> HeaderOps:
    rm: set[bytes] = set()
    for i, name in enumerate(removes or []):
        if not isinstance(name, str) or not _is_token(name):
            raise ConfigError(f"{where}_to_remove[{i}]: expected a header name")
        rm.add(name.lower().encode("latin-1"))
    out: list[tuple[bytes, bytes, bool]] = []
    for i, opt in enumerate(adds or []):
        hdr = opt.get("header") if isinstance(opt, dict) else None
        if not isinstance(hdr, dict) or not isinstance(hdr.get("key"), str) or not _is_token(hdr["key"]):
            raise ConfigError(
                f"{where}_to_add[{i}].header: expected {{key, value}} with a header name as key"
            )
        value = hdr.get("value", "")
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise ConfigError(f"{where}_to_add[{i}].header.value: expected a single-line string")
        action = opt.get("append_action", "APPEND_IF_EXISTS_OR_ADD")
        if action not in ("APPEND_IF_EXISTS_OR_ADD", "OVERWRITE_IF_EXISTS_OR_ADD"):
            raise ConfigError(f"{where}_to_add[{i}].append_action: unknown {action!r}")
        out.append(
            (
                hdr["key"].lower().encode("latin-1"),
                value.encode("latin-1"),
                action == "OVERWRITE_IF_EXISTS_OR_ADD",
            )
        )
    return HeaderOps(frozenset(rm), tuple(out))


def _edits(e: HeaderEdits, where: str) -> tuple[HeaderOps, HeaderOps]:
    req = _header_ops(
        e.get("request_headers_to_add"), e.get("request_headers_to_remove"), f"{where}.request_headers"
    )
    resp = _header_ops(
        e.get("response_headers_to_add"), e.get("response_headers_to_remove"), f"{where}.response_headers"
    )
    return req, resp


def _chain(*ops: HeaderOps) -> HeaderOps:
    """Envoy applies the most specific level first, so the less specific level's overwrite wins."""
    remove: set[bytes] = set()
    add: list[tuple[bytes, bytes, bool]] = []
    for op in ops:
        remove |= op.remove
        add.extend(op.add)
    return HeaderOps(frozenset(remove), tuple(add))


# --- compiled routes --------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class WeightedTarget:
    cluster: str
    request_ops: HeaderOps
    response_ops: HeaderOps
    # Precomputed at compile time so a request does no HeaderOps arithmetic: the request edits to
    # apply in order (route + virtual host, then this target's; empty ones left out) and the
    # response edits merged (None when there are none).
    request_chain: tuple[HeaderOps, ...] = ()
    merged_response_ops: HeaderOps | None = None


def _target(cr: CompiledRoute, cluster: str, req: HeaderOps, resp: HeaderOps) -> WeightedTarget:
    """A weighted target with the route's header edits folded in (the order Envoy applies them)."""
    ops = cr.response_ops
    if resp:
        ops = HeaderOps(ops.remove | resp.remove, resp.add + ops.add)
    chain = tuple(o for o in (cr.request_ops, req) if o)
    return WeightedTarget(cluster, req, resp, chain, ops if ops else None)


@dataclass(slots=True, frozen=True)
class HashPolicySpec:
    kind: str  # header | cookie | source_ip | query_parameter
    name: str = ""
    ttl: float | None = None
    path: str = ""


@dataclass(slots=True)
class CompiledRoute:
    name: str
    kind: str  # route | redirect | direct
    prefix: str | None = None
    path: str | None = None
    regex: re.Pattern[str] | None = None
    case_sensitive: bool = True
    headers: tuple[HeaderPred, ...] = ()
    query: tuple[QueryPred, ...] = ()
    targets: tuple[WeightedTarget, ...] = ()
    cumulative: tuple[int, ...] = ()
    prefix_rewrite: str | None = None
    regex_rewrite: tuple[re.Pattern[str], str] | None = None
    host_rewrite: str | None = None
    timeout: float = 0.0
    hash_policy: tuple[HashPolicySpec, ...] = ()
    redirect: dict[str, Any] = field(default_factory=dict)
    direct_status: int = 0
    direct_body: bytes = b""
    request_ops: HeaderOps = HeaderOps()  # route + virtual host (weighted-cluster ops are per target)
    response_ops: HeaderOps = HeaderOps()
    # Kept as pushed, for the resilience issue (retries, faults, mirroring); not acted on yet.
    retry_policy: dict[str, Any] | None = None
    fault: dict[str, Any] | None = None
    mirror: tuple[dict[str, Any], ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def matches(self, req: RequestView) -> bool:
        p = req.path if self.case_sensitive else req.path.lower()
        if self.prefix is not None:
            if not p.startswith(self.prefix):
                return False
        elif self.path is not None:
            if p != self.path:
                return False
        elif self.regex is not None and self.regex.fullmatch(req.path) is None:
            return False
        for h in self.headers:
            if not h(req):
                return False
        if self.query:
            params = dict(parse_qsl(req.query, keep_blank_values=True))
            for q in self.query:
                if not q(params):
                    return False
        return True

    def pick(self, rnd: Callable[[], float] = random.random) -> WeightedTarget:
        if len(self.targets) == 1:
            return self.targets[0]
        x = rnd() * self.cumulative[-1]
        return self.targets[bisect.bisect_right(self.cumulative, x)]

    def rewrite_path(self, path: str) -> str | None:
        """The upstream path (query string kept by the caller) or None when unchanged."""
        if self.prefix_rewrite is not None and self.prefix is not None:
            n = len(self.prefix)
            return self.prefix_rewrite + path[n:]
        if self.regex_rewrite is not None:
            rx, sub = self.regex_rewrite
            return rx.sub(sub, path)
        return None


_REDIRECT_CODES: Final = {301, 302, 303, 307, 308}


def _compile_route(r: Route, vh_req: HeaderOps, vh_resp: HeaderOps, where: str) -> CompiledRoute:
    if not isinstance(r, dict):
        raise ConfigError(f"{where}: expected an object")
    m: RouteMatch = r.get("match") or {"prefix": "/"}
    if not isinstance(m, dict):
        raise ConfigError(f"{where}.match: expected an object")
    kinds = [k for k in ("prefix", "path", "safe_regex") if k in m]
    if len(kinds) != 1:
        raise ConfigError(f"{where}.match: exactly one of prefix/path/safe_regex, got {kinds}")
    actions = [k for k in ("route", "redirect", "direct_response") if k in r]
    if len(actions) != 1:
        raise ConfigError(f"{where}: exactly one of route/redirect/direct_response, got {actions}")
    cs = bool(m.get("case_sensitive", True))
    req_ops, resp_ops = _edits(r, where)
    cr = CompiledRoute(
        name=str(r.get("name", "")),
        kind={"route": "route", "redirect": "redirect", "direct_response": "direct"}[actions[0]],
        case_sensitive=cs,
        headers=tuple(
            _header_pred(h, f"{where}.match.headers[{i}]") for i, h in enumerate(m.get("headers", []))
        ),
        query=tuple(
            _query_pred(q, f"{where}.match.query_parameters[{i}]")
            for i, q in enumerate(m.get("query_parameters", []))
        ),
        request_ops=_chain(req_ops, vh_req),
        response_ops=_chain(resp_ops, vh_resp),
        metadata=dict(r.get("metadata", {})),
        fault=dict(r["fault"]) if "fault" in r else None,
    )
    for k in kinds:
        v = m[k]
        if not isinstance(v, str):
            raise ConfigError(f"{where}.match.{k}: expected a string")
        if k == "safe_regex":
            try:
                cr.regex = re.compile(v, 0 if cs else re.IGNORECASE)
            except re.error as e:
                raise ConfigError(f"{where}.match.safe_regex: invalid regex {v!r}: {e}") from None
        elif k == "prefix":
            cr.prefix = v if cs else v.lower()
        else:
            cr.path = v if cs else v.lower()
    if "route" in r:
        _compile_action(cr, r["route"], f"{where}.route")
    elif "redirect" in r:
        red = r["redirect"]
        if not isinstance(red, dict):
            raise ConfigError(f"{where}.redirect: expected an object")
        code = red.get("response_code", 301)
        if code not in _REDIRECT_CODES:
            raise ConfigError(f"{where}.redirect.response_code: {code!r} is not one of 301/302/303/307/308")
        port = red.get("port_redirect")
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            raise ConfigError(f"{where}.redirect.port_redirect: expected a port number")
        if "path_redirect" in red and "prefix_rewrite" in red:
            raise ConfigError(f"{where}.redirect: path_redirect and prefix_rewrite are exclusive")
        cr.redirect = dict(red)
    else:
        d = r["direct_response"]
        status = d.get("status") if isinstance(d, dict) else None
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ConfigError(f"{where}.direct_response.status: expected an HTTP status code")
        cr.direct_status = status
        cr.direct_body = str(d.get("body", "")).encode()
    return cr


def _compile_action(cr: CompiledRoute, a: Any, where: str) -> None:
    if not isinstance(a, dict):
        raise ConfigError(f"{where}: expected an object")
    if ("cluster" in a) == ("weighted_clusters" in a):
        raise ConfigError(f"{where}: exactly one of cluster/weighted_clusters")
    if "cluster" in a:
        if not isinstance(a["cluster"], str) or not a["cluster"]:
            raise ConfigError(f"{where}.cluster: expected a cluster name")
        cr.targets = (_target(cr, a["cluster"], HeaderOps(), HeaderOps()),)
        cr.cumulative = (1,)
    else:
        wcs = a["weighted_clusters"]
        if not isinstance(wcs, list) or not wcs:
            raise ConfigError(f"{where}.weighted_clusters: expected a non-empty list")
        targets, cum, total = [], [], 0
        for i, wc in enumerate(wcs):
            w = wc.get("weight") if isinstance(wc, dict) else None
            if not isinstance(w, int) or isinstance(w, bool) or w < 0:
                raise ConfigError(f"{where}.weighted_clusters[{i}].weight: expected an integer >= 0")
            if not isinstance(wc.get("name"), str) or not wc["name"]:
                raise ConfigError(f"{where}.weighted_clusters[{i}].name: expected a cluster name")
            rq, rs = _edits(wc, f"{where}.weighted_clusters[{i}]")
            if w == 0:
                continue
            total += w
            targets.append(_target(cr, wc["name"], rq, rs))
            cum.append(total)
        if total <= 0:
            raise ConfigError(f"{where}.weighted_clusters: the weights must sum to more than 0")
        cr.targets, cr.cumulative = tuple(targets), tuple(cum)
    if "prefix_rewrite" in a and "regex_rewrite" in a:
        raise ConfigError(f"{where}: prefix_rewrite and regex_rewrite are exclusive")
    if "prefix_rewrite" in a:
        if cr.prefix is None:
            raise ConfigError(f"{where}.prefix_rewrite: needs a prefix match")
        cr.prefix_rewrite = str(a["prefix_rewrite"])
    if "regex_rewrite" in a:
        rr = a["regex_rewrite"]
        try:
            rx = re.compile(rr["pattern"])
            sub = str(rr["substitution"])
            rx.sub(sub, "")  # surfaces bad group references now, not per request
        except (KeyError, TypeError, re.error) as e:
            raise ConfigError(f"{where}.regex_rewrite: {e}") from None
        cr.regex_rewrite = (rx, sub)
    if "host_rewrite_literal" in a:
        cr.host_rewrite = str(a["host_rewrite_literal"])
    t = a.get("timeout", 0)
    if not isinstance(t, int | float) or isinstance(t, bool) or t < 0:
        raise ConfigError(f"{where}.timeout: expected seconds >= 0")
    cr.timeout = float(t)
    hp: list[HashPolicySpec] = []
    for i, h in enumerate(a.get("hash_policy", [])):
        if not isinstance(h, dict):
            raise ConfigError(f"{where}.hash_policy[{i}]: expected an object")
        if "header" in h:
            hp.append(HashPolicySpec("header", str(h["header"]["header_name"]).lower()))
        elif "cookie" in h:
            c = h["cookie"]
            if not isinstance(c, dict) or not c.get("name"):
                raise ConfigError(f"{where}.hash_policy[{i}].cookie.name: required")
            ttl = c.get("ttl")
            hp.append(
                HashPolicySpec(
                    "cookie", str(c["name"]), float(ttl) if ttl is not None else None, c.get("path", "")
                )
            )
        elif "connection_properties" in h:
            hp.append(HashPolicySpec("source_ip"))
        elif "query_parameter" in h:
            hp.append(HashPolicySpec("query_parameter", str(h["query_parameter"]["name"])))
        else:
            raise ConfigError(
                f"{where}.hash_policy[{i}]: one of header/cookie/connection_properties/query_parameter"
            )
    cr.hash_policy = tuple(hp)
    cr.retry_policy = dict(a["retry_policy"]) if "retry_policy" in a else None
    cr.mirror = tuple(a.get("request_mirror_policies", []))


# --- virtual hosts ----------------------------------------------------------------------------


@dataclass(slots=True)
class CompiledVirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[CompiledRoute, ...]
    # No route looks at headers, method or query: the decision depends on (authority, path)
    # alone, so ``RouteTable.lookup`` may remember it.
    path_only: bool = False


# Remembered (authority, path) decisions per route table, and the longest key remembered: a
# client sending endless distinct long paths costs at most ~0.5 MB per table.
_CACHE_MAX: Final = 1024
_CACHE_KEY_MAX: Final = 256


def _never_view() -> RequestView:
    raise AssertionError("unreachable")


@dataclass(slots=True)
class RouteTable:
    """A compiled RouteConfiguration with Envoy's domain search order."""

    name: str
    exact: dict[str, CompiledVirtualHost]
    suffixes: list[tuple[str, CompiledVirtualHost]]  # longest first; "*.foo.com" stored as ".foo.com"
    prefixes: list[tuple[str, CompiledVirtualHost]]  # longest first; "foo.*" stored as "foo."
    default: CompiledVirtualHost | None
    # (authority, path) -> decision, for virtual hosts whose routes match on the path only. A
    # table is compiled per pushed configuration, so a push starts with an empty cache.
    cache: dict[tuple[str, str], tuple[CompiledVirtualHost | None, CompiledRoute | None]] = field(
        default_factory=dict, repr=False
    )

    def _lookup(self, host: str) -> CompiledVirtualHost | None:
        vh = self.exact.get(host)
        if vh is not None:
            return vh
        for suffix, vh in self.suffixes:
            if host.endswith(suffix) and len(host) > len(suffix):
                return vh
        for prefix, vh in self.prefixes:
            if host.startswith(prefix) and len(host) > len(prefix):
                return vh
        return None

    def virtual_host(self, authority: str) -> CompiledVirtualHost | None:
        host = authority.lower()
        vh = self._lookup(host)
        if vh is None and ":" in host and not host.endswith("]"):
            vh = self._lookup(host.rsplit(":", 1)[0])
        return vh if vh is not None else self.default

    def route(self, req: RequestView) -> tuple[CompiledVirtualHost | None, CompiledRoute | None]:
        vh = self.virtual_host(req.authority)
        if vh is None:
            return None, None
        for r in vh.routes:
            if r.matches(req):
                return vh, r
        return vh, None

    def lookup(
        self, authority: str, path: str, view: Callable[[], RequestView] = _never_view
    ) -> tuple[CompiledVirtualHost | None, CompiledRoute | None]:
        """``route`` for the hot path: the same answer, remembered per (authority, path) when the
        virtual host's routes cannot depend on anything else. ``view`` builds the full request
        view only when a match has to look at headers, method or query."""
        key = (authority, path)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        vh = self.virtual_host(authority)
        if vh is None:
            decision: tuple[CompiledVirtualHost | None, CompiledRoute | None] = (None, None)
        elif vh.path_only:
            req = RequestView("", path, "", authority, [])
            decision = (vh, next((r for r in vh.routes if r.matches(req)), None))
        else:
            return self.route(view())
        if len(authority) + len(path) <= _CACHE_KEY_MAX:
            if len(self.cache) >= _CACHE_MAX:
                self.cache.clear()
            self.cache[key] = decision
        return decision


def compile_route_config(rc: RouteConfiguration) -> RouteTable:
    if not isinstance(rc, dict) or not isinstance(rc.get("name"), str):
        raise ConfigError("RouteConfiguration: a name is required")
    where = f"route {rc['name']!r}"
    vhs = rc.get("virtual_hosts", [])
    if not isinstance(vhs, list):
        raise ConfigError(f"{where}.virtual_hosts: expected a list")
    exact: dict[str, CompiledVirtualHost] = {}
    suffixes: list[tuple[str, CompiledVirtualHost]] = []
    prefixes: list[tuple[str, CompiledVirtualHost]] = []
    default: CompiledVirtualHost | None = None
    seen: set[str] = set()
    for i, vh in enumerate(vhs):
        cvh = _compile_vhost(vh, f"{where}.virtual_hosts[{i}]")
        for d in cvh.domains:
            if d in seen:
                raise ConfigError(f"{where}: domain {d!r} appears in more than one virtual host")
            seen.add(d)
            if d == "*":
                default = cvh
            elif d.startswith("*"):
                suffixes.append((d[1:], cvh))
            elif d.endswith("*"):
                prefixes.append((d[:-1], cvh))
            else:
                exact[d] = cvh
    suffixes.sort(key=lambda t: -len(t[0]))
    prefixes.sort(key=lambda t: -len(t[0]))
    return RouteTable(rc["name"], exact, suffixes, prefixes, default)


def _compile_vhost(vh: VirtualHost, where: str) -> CompiledVirtualHost:
    if not isinstance(vh, dict) or not isinstance(vh.get("name"), str):
        raise ConfigError(f"{where}.name: required")
    domains = vh.get("domains")
    if not isinstance(domains, list) or not domains or not all(isinstance(d, str) and d for d in domains):
        raise ConfigError(f"{where}.domains: expected a non-empty list of names")
    for d in domains:
        if ("*" in d and d != "*" and not (d.startswith("*") ^ d.endswith("*"))) or d.count("*") > 1:
            raise ConfigError(f"{where}.domains: {d!r}: a wildcard must be a whole prefix or suffix")
    req, resp = _edits(vh, where)
    routes = vh.get("routes", [])
    if not isinstance(routes, list):
        raise ConfigError(f"{where}.routes: expected a list")
    compiled = tuple(_compile_route(r, req, resp, f"{where}.routes[{i}]") for i, r in enumerate(routes))
    path_only = all(not r.headers and not r.query for r in compiled)
    return CompiledVirtualHost(vh["name"], tuple(d.lower() for d in domains), compiled, path_only)


# --- redirects --------------------------------------------------------------------------------


def redirect_location(route: CompiledRoute, req: RequestView, scheme: str = "http") -> str:
    """The Location of a redirect route, with Envoy's defaults (same scheme, host and path)."""
    red = route.redirect
    scheme = red.get("scheme_redirect", scheme)
    authority = req.authority
    host, port = authority, ""
    if authority.rfind(":") > authority.rfind("]"):
        host, port = authority.rsplit(":", 1)
    if "host_redirect" in red:
        host = red["host_redirect"]
    if "port_redirect" in red:
        port = str(red["port_redirect"])
    if (scheme == "http" and port == "80") or (scheme == "https" and port == "443"):
        port = ""
    query = req.query
    if "path_redirect" in red:
        path = red["path_redirect"]
        if "?" in path:
            path, query = path.split("?", 1)
    elif "prefix_rewrite" in red and route.prefix is not None:
        path = red["prefix_rewrite"] + req.path[len(route.prefix) :]
    else:
        path = req.path
    return f"{scheme}://{host}{':' + port if port else ''}{path}{'?' + query if query else ''}"


def split_target(target: str) -> tuple[str, str]:
    """Request-target -> (path, query)."""
    path, _, query = target.partition("?")
    return path, query
