"""The route matcher without sockets: Envoy's domain order, RouteMatch, weights, rewrites, redirects."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshpilot.proxy.config import Snapshot
from meshpilot.proxy.router import (
    ConfigError,
    HeaderOps,
    RequestView,
    _header_ops,
    _header_pred,
    compile_route_config,
    redirect_location,
)
from meshpilot.xds.types import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE


def req(
    path: str = "/", authority: str = "svc", method: str = "GET", headers=None, query: str = ""
) -> RequestView:
    hs = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return RequestView(method, path, query, authority, hs, "10.0.0.1")


def table(*vhosts, name="80"):
    return compile_route_config({"name": name, "virtual_hosts": list(vhosts)})


def vh(name, domains, routes, **edits):
    return {"name": name, "domains": domains, "routes": routes, **edits}


def to(cluster, match=None, **kw):
    r = {
        "name": kw.pop("name", cluster),
        "match": match or {"prefix": "/"},
        "route": {"cluster": cluster, **kw},
    }
    return r


def test_domain_search_order_exact_suffix_prefix_default():
    t = table(
        vh("exact", ["api.example.com"], [to("exact")]),
        vh("short-suffix", ["*.com"], [to("short-suffix")]),
        vh("long-suffix", ["*.example.com"], [to("long-suffix")]),
        vh("prefix", ["api.*"], [to("prefix")]),
        vh("default", ["*"], [to("default")]),
    )
    assert t.virtual_host("api.example.com").name == "exact"
    assert t.virtual_host("API.Example.com").name == "exact"  # case-insensitive
    assert t.virtual_host("www.example.com").name == "long-suffix"
    assert t.virtual_host("www.other.com").name == "short-suffix"
    assert t.virtual_host("api.internal").name == "prefix"
    assert t.virtual_host("anything").name == "default"


def test_domains_with_and_without_port_and_kubernetes_names():
    names = ["reviews", "reviews.bookinfo", "reviews.bookinfo.svc.cluster.local", "127.1.128.7"]
    domains = [d for n in names for d in (n, f"{n}:9080")]
    t = table(vh("reviews:9080", domains, [to("outbound|9080||reviews.bookinfo.svc.cluster.local")]))
    for n in names:
        assert t.virtual_host(n).name == "reviews:9080"
        assert t.virtual_host(f"{n}:9080").name == "reviews:9080"
    # a port the table does not list falls back to the bare host
    assert t.virtual_host("reviews:1234").name == "reviews:9080"
    assert t.virtual_host("ratings") is None


def test_first_match_wins_and_no_route():
    t = table(
        vh(
            "svc",
            ["svc"],
            [
                to(
                    "jason",
                    {"prefix": "/", "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}]},
                ),
                to("exact", {"path": "/reviews"}),
                to("regex", {"safe_regex": "/r/[0-9]+"}),
                to("catch", {"prefix": "/api"}),
            ],
        )
    )
    assert t.route(req("/reviews", headers={"end-user": "jason"}))[1].name == "jason"
    assert t.route(req("/reviews"))[1].name == "exact"
    assert t.route(req("/reviews/1"))[1] is None  # path is exact, no other route matches
    assert t.route(req("/r/123"))[1].name == "regex"
    assert t.route(req("/r/123x"))[1] is None  # safe_regex is a full match
    assert t.route(req("/api/v1"))[1].name == "catch"
    vhost, route = t.route(req("/other"))
    assert vhost is not None and route is None


def test_header_and_pseudo_header_matchers():
    def m(headers):
        return table(vh("v", ["*"], [to("c", {"prefix": "/", "headers": headers})])).route

    assert m([{"name": ":method", "string_match": {"exact": "POST"}}])(req(method="POST"))[1]
    assert not m([{"name": ":method", "string_match": {"exact": "POST"}}])(req(method="GET"))[1]
    assert m([{"name": ":authority", "string_match": {"prefix": "svc"}}])(req(authority="svc:80"))[1]
    assert m([{"name": "x-a", "present_match": True}])(req(headers={"x-a": ""}))[1]
    assert m([{"name": "x-a", "present_match": False}])(req())[1]
    assert m([{"name": "x-a", "string_match": {"exact": "1"}, "invert_match": True}])(
        req(headers={"x-a": "2"})
    )[1]
    assert not m([{"name": "x-a", "string_match": {"exact": "1"}, "invert_match": True}])(
        req(headers={"x-a": "1"})
    )[1]
    assert m([{"name": "x-a", "string_match": {"safe_regex": "v[12]"}}])(req(headers={"x-a": "v2"}))[1]
    assert m([{"name": "x-a", "string_match": {"exact": "ab", "ignore_case": True}}])(
        req(headers={"x-a": "AB"})
    )[1]
    assert m([{"name": "X-A", "string_match": {"suffix": "z"}}])(req(headers={"x-a": "xyz"}))[1]


def test_query_parameter_matchers_and_case_insensitive_paths():
    t = table(
        vh(
            "v",
            ["*"],
            [
                to(
                    "q",
                    {
                        "prefix": "/",
                        "query_parameters": [{"name": "canary", "string_match": {"exact": "yes"}}],
                    },
                ),
                to("p", {"prefix": "/x", "query_parameters": [{"name": "debug", "present_match": True}]}),
                to("ci", {"prefix": "/CaSe", "case_sensitive": False}),
            ],
        )
    )
    assert t.route(req("/a", query="canary=yes&b=1"))[1].name == "q"
    assert t.route(req("/x", query="debug"))[1].name == "p"
    assert t.route(req("/case/1"))[1].name == "ci"
    assert t.route(req("/a", query="canary=no"))[1] is None


def test_weighted_clusters_any_positive_sum_and_binomial_split():
    t = table(
        vh(
            "v",
            ["*"],
            [
                {
                    "match": {"prefix": "/"},
                    "route": {
                        "weighted_clusters": [
                            {"name": "v1", "weight": 3},
                            {"name": "v2", "weight": 1},
                            {"name": "zero", "weight": 0},
                        ]
                    },
                }
            ],
        )
    )
    route = t.route(req())[1]
    rnd = random.Random(7)
    n = 4000
    hits = sum(route.pick(rnd.random).cluster == "v1" for _ in range(n))
    p = 0.75
    half = 3.29 * math.sqrt(n * p * (1 - p))
    assert n * p - half <= hits <= n * p + half
    assert all(route.pick(rnd.random).cluster != "zero" for _ in range(500))


def test_rewrites():
    t = table(
        vh(
            "v",
            ["*"],
            [
                to("a", {"prefix": "/old/"}, prefix_rewrite="/new/", host_rewrite_literal="h.example"),
                to(
                    "b",
                    {"safe_regex": "/item/([0-9]+)"},
                    regex_rewrite={"pattern": "^/item/([0-9]+)$", "substitution": "/items?id=\\1"},
                ),
            ],
        )
    )
    r = t.route(req("/old/x/y"))[1]
    assert r.rewrite_path("/old/x/y") == "/new/x/y" and r.host_rewrite == "h.example"
    r2 = t.route(req("/item/42"))[1]
    assert r2.rewrite_path("/item/42") == "/items?id=42"


def test_redirects():
    def red(path, authority="svc:8080", query="", **redirect):
        t = table(vh("v", ["*"], [{"name": "r", "match": {"prefix": "/old"}, "redirect": redirect}]))
        view = req(path, authority=authority, query=query)
        return redirect_location(t.route(view)[1], view)

    assert red("/old/a", query="q=1", prefix_rewrite="/new") == "http://svc:8080/new/a?q=1"
    assert red("/old", path_redirect="/landing") == "http://svc:8080/landing"
    assert red("/old", host_redirect="other", port_redirect=9000) == "http://other:9000/old"
    assert red("/old", scheme_redirect="https", authority="svc:443") == "https://svc/old"
    t = table(vh("v", ["*"], [{"name": "r", "match": {"prefix": "/"}, "redirect": {"path_redirect": "/x"}}]))
    assert t.route(req())[1].redirect.get("response_code", 301) == 301


def test_header_ops_order_remove_then_add_and_overwrite():
    ops = HeaderOps(frozenset({b"x-drop"}), ((b"x-add", b"1", False), (b"x-set", b"new", True)))
    out = ops.apply([(b"x-drop", b"a"), (b"x-add", b"0"), (b"x-set", b"old"), (b"x-set", b"old2")])
    assert out == [(b"x-add", b"0"), (b"x-add", b"1"), (b"x-set", b"new")]


def test_virtual_host_and_weighted_cluster_edits_are_combined():
    t = table(
        vh(
            "v",
            ["*"],
            [
                {
                    "match": {"prefix": "/"},
                    "route": {
                        "weighted_clusters": [
                            {
                                "name": "c",
                                "weight": 1,
                                "request_headers_to_add": [{"header": {"key": "x-wc", "value": "1"}}],
                            }
                        ]
                    },
                    "request_headers_to_add": [{"header": {"key": "x-route", "value": "1"}}],
                }
            ],
            request_headers_to_add=[{"header": {"key": "x-vh", "value": "1"}}],
            response_headers_to_remove=["server"],
        )
    )
    r = t.route(req())[1]
    target = r.pick()
    out = target.request_ops.apply(r.request_ops.apply([]))
    assert {k for k, _ in out} == {b"x-wc", b"x-route", b"x-vh"}
    assert b"server" in r.response_ops.remove


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"name": "v", "domains": ["*"], "routes": [to("c", {"safe_regex": "("})]}, "invalid regex"),
        ({"name": "v", "domains": [], "routes": []}, "domains"),
        ({"name": "v", "domains": ["a*b"], "routes": []}, "wildcard"),
        ({"name": "v", "domains": ["*"], "routes": [{"match": {"prefix": "/"}}]}, "exactly one of route"),
        (
            {
                "name": "v",
                "domains": ["*"],
                "routes": [
                    {"match": {"prefix": "/"}, "route": {"weighted_clusters": [{"name": "a", "weight": 0}]}}
                ],
            },
            "sum",
        ),
        (
            {
                "name": "v",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "redirect": {"response_code": 200}}],
            },
            "response_code",
        ),
        (
            {
                "name": "v",
                "domains": ["*"],
                "routes": [{"match": {"prefix": "/", "path": "/"}, "route": {"cluster": "c"}}],
            },
            "exactly one of prefix",
        ),
    ],
)
def test_invalid_route_configs_are_rejected_with_a_path(bad, message):
    with pytest.raises(ConfigError, match=message):
        table(bad)


def test_duplicate_domain_is_rejected():
    with pytest.raises(ConfigError, match="more than one virtual host"):
        table(vh("a", ["x"], []), vh("b", ["x"], []))


_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10)


@given(st.lists(_label, min_size=1, max_size=4), st.lists(_label, min_size=1, max_size=3))
def test_suffix_wildcard_matches_exactly_the_hosts_that_end_with_it(suffix_labels, host_labels):
    suffix = ".".join(suffix_labels)
    t = table(vh("w", [f"*.{suffix}"], [to("w")]))
    host = ".".join(host_labels) + "." + suffix
    assert t.virtual_host(host) is not None
    assert t.virtual_host(suffix) is None  # "*.x" needs at least one more label


@given(
    st.text(alphabet="/abcxyz", min_size=1, max_size=20), st.text(alphabet="/abcxyz", min_size=1, max_size=20)
)
def test_prefix_match_agrees_with_startswith(prefix, path):
    t = table(vh("v", ["*"], [to("c", {"prefix": prefix})]))
    assert (t.route(req(path))[1] is not None) == path.startswith(prefix)


def test_lookup_remembers_path_only_decisions_and_agrees_with_route():
    t = table(
        vh("svc", ["svc"], [to("exact", {"path": "/a"}), to("rx", {"safe_regex": "/r[0-9]+"}), to("any")]),
        vh("hdr", ["hdr"], [to("v2", {"prefix": "/", "headers": [
            {"name": "end-user", "string_match": {"exact": "jason"}}]}), to("v1")]),
    )  # fmt: skip
    for path in ("/a", "/a", "/r12", "/b"):
        vhost, route = t.lookup("svc", path)
        assert (vhost, route) == t.route(req(path))
    assert set(t.cache) == {("svc", "/a"), ("svc", "/r12"), ("svc", "/b")}
    assert t.lookup("nohost", "/")[0] is None
    # A virtual host with header matches is never remembered: each request is matched afresh.
    views = []

    def view(headers):
        def make():
            views.append(1)
            return req("/", "hdr", headers=headers)

        return make

    assert t.lookup("hdr", "/", view({"end-user": "jason"}))[1].name == "v2"
    assert t.lookup("hdr", "/", view({}))[1].name == "v1"
    assert len(views) == 2 and ("hdr", "/") not in t.cache


def test_lookup_cache_is_bounded():
    t = table(vh("svc", ["*"], [to("any")]))
    for i in range(5000):
        assert t.lookup("svc", f"/{i}")[1].name == "any"
    assert 0 < len(t.cache) <= 1024
    t.cache.clear()
    long_path = "/" + "x" * 300  # long keys are matched every time, never remembered
    assert t.lookup("svc", long_path)[1].name == "any" and not t.cache


def test_weighted_targets_carry_their_precomputed_edits():
    t = table(
        vh("svc", ["svc"], [{
            "name": "r", "match": {"prefix": "/"},
            "request_headers_to_add": [{"header": {"key": "x-route", "value": "1"}}],
            "response_headers_to_remove": ["x-secret"],
            "route": {"weighted_clusters": [
                {"name": "a", "weight": 1, "response_headers_to_add": [{"header": {"key": "x-a", "value": "a"}}]},
                {"name": "b", "weight": 1}]}}]),
    )  # fmt: skip
    a, b = t.route(req())[1].targets
    assert [ops.add for ops in a.request_chain] == [((b"x-route", b"1", False),)]
    assert a.merged_response_ops == HeaderOps(frozenset({b"x-secret"}), ((b"x-a", b"a", False),))
    assert b.merged_response_ops == HeaderOps(frozenset({b"x-secret"}), ())
    plain = table(vh("svc", ["svc"], [to("c")])).route(req())[1].targets[0]
    assert plain.request_chain == () and plain.merged_response_ops is None


_ROUTE = {"name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": []}]}


def _with_route(**route: object) -> dict[str, object]:
    r = {"match": {"prefix": "/"}, "route": {"cluster": "a"}, **route}
    return {ROUTE_TYPE: [{**_ROUTE, "virtual_hosts": [{**_ROUTE["virtual_hosts"][0], "routes": [r]}]}]}


def _listener(**extra: object) -> dict[str, object]:
    li = {"name": "l", "address": "127.0.0.1", "port": 0, "traffic_direction": "OUTBOUND", **extra}
    return {LISTENER_TYPE: [li]}


@pytest.mark.parametrize(
    "resources",
    [
        {CLUSTER_TYPE: [{"name": "a", "type": "EDS", "metadata": {"istio": "x"}}]},
        {CLUSTER_TYPE: [{"name": "a", "type": "EDS", "metadata": {"istio": {"services": ["x"]}}}]},
        {CLUSTER_TYPE: [{"name": "a", "type": "EDS", "lb_policy": []}]},
        _listener(access_log=3),
        _listener(access_log=[{"path": "-", "format": 3}]),
        _listener(address=5),
        _with_route(route={"cluster": "a", "retry_policy": 3}),
        _with_route(route={"cluster": "a", "hash_policy": [{"header": "x-user"}]}),
    ],
)
def test_a_field_of_the_wrong_json_type_is_a_config_error(resources):
    """Pushed config is untrusted: whatever its shape, compiling it fails with ConfigError (which
    the xDS client NACKs), never another exception that would end the proxy's xDS task."""
    with pytest.raises(ConfigError):
        Snapshot.build(resources, {})


@pytest.mark.parametrize("name", ["x-a: 1\r\ntransfer-encoding", "x a", "x-€", ""])
def test_header_names_in_matches_and_edits_must_be_tokens(name: str) -> None:
    # A name that is not an RFC 9110 token could inject header lines (edits) or fail on every
    # request (matches): refused when the config is compiled, so the proxy NACKs it.
    with pytest.raises(ConfigError):
        _header_ops([{"header": {"key": name, "value": "v"}}], None, "request_headers")
    with pytest.raises(ConfigError):
        _header_ops(None, [name], "request_headers")
    with pytest.raises(ConfigError):
        _header_pred({"name": name, "present_match": True}, "match.headers[0]")
    assert _header_pred({"name": ":authority", "present_match": True}, "m").name == ":authority"
