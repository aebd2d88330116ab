"""Real sockets, real proxy processes, a real upstream: routing, telemetry and robustness.

Topology (module scope):  client --HTTP_PROXY--> src sidecar (outbound) --> upstreams a/b/c
                                                             \\--> dst sidecar (inbound, pod IP 127.0.0.2) --> app a
"""

from __future__ import annotations

import math
import socket
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from proxy_harness import (
    ProxyProcess,
    RssGrowth,
    free_port,
    inbound_listener,
    node,
    outbound_listener,
    static_cluster,
)
from proxy_upstream import start_upstream

from meshpilot.proxy.accesslog import parse_text_line

DST_IP = "127.0.0.2"


def vhost(name, domains, routes, **kw):
    return {"name": name, "domains": domains, "routes": routes, **kw}


def route(cluster, match=None, name=None, **action):
    return {
        "name": name or cluster,
        "match": match or {"prefix": "/"},
        "route": {"cluster": cluster, **action},
    }


@pytest.fixture(scope="module")
def ups():
    started = {n: start_upstream(n) for n in ("a", "b", "c")}
    yield started
    for u in started.values():
        u.stop()


@pytest.fixture(scope="module")
def dst(ups):
    port = free_port(DST_IP)
    a = ups["a"]
    boot = {
        "node": node("reviews", app="reviews", version="v2"),
        "static_resources": {
            "listeners": [
                inbound_listener(DST_IP, port, access_log=[{"path": "/dev/stdout", "encoding": "JSON"}])
            ],
            "clusters": [
                static_cluster(
                    "inbound|9080||",
                    [(a.host, a.port)],
                    metadata={
                        "istio": {
                            "services": [
                                {
                                    "host": "reviews.default.svc.cluster.local",
                                    "name": "reviews",
                                    "namespace": "default",
                                }
                            ]
                        }
                    },
                )
            ],
        },
    }
    p = ProxyProcess(boot, ip=DST_IP).wait_ready()
    p.port = port
    yield p
    p.stop()


@pytest.fixture(scope="module")
def src(ups, dst, tmp_path_factory):
    a, b, c = ups["a"], ups["b"], ups["c"]
    log_path = str(tmp_path_factory.mktemp("log") / "access.log")
    out_port, blocked_port = free_port(), free_port()
    dead_port = free_port()
    routes = [
        route(
            "b",
            {"prefix": "/", "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}]},
            name="jason",
        ),
        route(
            "a",
            {"prefix": "/rewrite/"},
            name="rewrite",
            prefix_rewrite="/new/",
            host_rewrite_literal="rewritten.example",
        ),
        route(
            "a",
            {"safe_regex": "/regex/[0-9]+"},
            name="regex",
            regex_rewrite={"pattern": "^/regex/([0-9]+)$", "substitution": "/num/\\1"},
        ),
        {
            "name": "redirect",
            "match": {"path": "/redirect"},
            "redirect": {"host_redirect": "other.example", "path_redirect": "/landed", "response_code": 302},
        },
        {"name": "redirect-default", "match": {"prefix": "/moved"}, "redirect": {"prefix_rewrite": "/here"}},
        {
            "name": "direct",
            "match": {"prefix": "/direct"},
            "direct_response": {"status": 418, "body": "teapot"},
        },
        route(
            "b",
            {"prefix": "/", "query_parameters": [{"name": "canary", "string_match": {"exact": "yes"}}]},
            name="canary",
        ),
        route(
            "b",
            {"prefix": "/method", "headers": [{"name": ":method", "string_match": {"exact": "POST"}}]},
            name="post",
        ),
        {
            "name": "headers",
            "match": {"prefix": "/headers"},
            "route": {"cluster": "a"},
            "request_headers_to_add": [
                {"header": {"key": "x-added", "value": "1"}, "append_action": "APPEND_IF_EXISTS_OR_ADD"},
                {"header": {"key": "x-over", "value": "new"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
            ],
            "request_headers_to_remove": ["x-drop"],
            "response_headers_to_add": [{"header": {"key": "x-resp", "value": "yes"}}],
            "response_headers_to_remove": ["x-app"],
        },
        route(
            "ring", {"prefix": "/sticky"}, name="sticky", hash_policy=[{"header": {"header_name": "x-user"}}]
        ),
        route(
            "maglev",
            {"prefix": "/cookie"},
            name="cookie",
            hash_policy=[{"cookie": {"name": "session", "ttl": 60, "path": "/"}}],
        ),
        route("a", {"prefix": "/slow"}, name="timeout", timeout=0.3),
        {
            "name": "split",
            "match": {"prefix": "/split"},
            "route": {"weighted_clusters": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}]},
        },
        route("a", name="default"),
    ]
    vhosts = [
        vhost(
            "svc:80",
            ["svc", "svc:80", "svc.default", "svc.default.svc.cluster.local", "127.1.200.7"],
            routes,
            response_headers_to_add=[{"header": {"key": "x-vhost", "value": "svc"}}],
        ),
        vhost("wild", ["*.wild.example"], [route("c")]),
        vhost("reviews:80", ["reviews", "reviews.default.svc.cluster.local"], [route("to-dst")]),
        vhost("dead:80", ["dead"], [route("dead")]),
        vhost("empty:80", ["empty"], [route("empty")]),
        vhost("missing:80", ["missing"], [route("nope")]),
        vhost("partial:80", ["partial"], [route("a", {"path": "/only"})]),
    ]
    clusters = [
        static_cluster("a", [(a.host, a.port)]),
        static_cluster("b", [(b.host, b.port)]),
        static_cluster("c", [(c.host, c.port)]),
        static_cluster("ring", [(u.host, u.port) for u in (a, b, c)], lb="RING_HASH"),
        static_cluster("maglev", [(u.host, u.port) for u in (a, b, c)], lb="MAGLEV"),
        static_cluster("dead", [("127.0.0.1", dead_port)]),
        static_cluster("empty", []),
        static_cluster(
            "to-dst",
            [(DST_IP, dst.port)],
            ep_metadata=[
                {
                    "workload": "reviews",
                    "namespace": "default",
                    "app": "reviews",
                    "version": "v2",
                    "cluster": "Kubernetes",
                    "labels": {"app": "reviews", "version": "v2"},
                }
            ],
            **{
                "metadata": {
                    "istio": {
                        "services": [
                            {
                                "host": "reviews.default.svc.cluster.local",
                                "name": "reviews",
                                "namespace": "default",
                            }
                        ]
                    }
                }
            },
        ),
    ]
    boot = {
        "node": node("productpage", app="productpage"),
        "proxy_settings": {"header_timeout": 1.0},
        "static_resources": {
            "listeners": [
                outbound_listener(
                    out_port,
                    cluster="PassthroughCluster",
                    access_log=[{"path": log_path, "encoding": "TEXT"}],
                ),
                outbound_listener(blocked_port, name="blocked", cluster="BlackHoleCluster"),
            ],
            "routes": [{"name": "80", "virtual_hosts": vhosts}],
            "clusters": clusters,
        },
    }
    p = ProxyProcess(boot).wait_ready()
    p.port, p.blocked_port, p.log_path = out_port, blocked_port, log_path
    yield p
    p.stop()


@pytest.fixture
def client(src):
    with httpx.Client(proxy=f"http://127.0.0.1:{src.port}", timeout=10) as c:
        yield c


def who(r: httpx.Response) -> str:
    return r.headers.get("x-upstream", "")


# --- routing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["svc", "svc:80", "svc.default", "svc.default.svc.cluster.local", "127.1.200.7"]
)
def test_every_kubernetes_name_of_a_service_routes(client, host):
    r = client.get(f"http://{host}/hello")
    assert r.status_code == 200 and who(r) == "a"
    assert r.headers["x-vhost"] == "svc"


def test_origin_form_with_host_header_works_too(src):
    r = httpx.get(f"http://127.0.0.1:{src.port}/hello", headers={"host": "svc"})
    assert r.status_code == 200 and who(r) == "a"


def test_header_query_method_and_wildcard_matches(client):
    assert who(client.get("http://svc/x", headers={"end-user": "jason"})) == "b"
    assert who(client.get("http://svc/x", headers={"end-user": "mary"})) == "a"
    assert who(client.get("http://svc/x?canary=yes")) == "b"
    assert who(client.post("http://svc/method")) == "b"
    assert who(client.get("http://svc/method")) == "a"
    assert who(client.get("http://api.wild.example/")) == "c"


def test_rewrites_set_original_path_and_host(client):
    body = client.get("http://svc/rewrite/x?q=1").json()
    assert body["path"] == "/new/x?q=1"
    assert body["headers"]["x-envoy-original-path"] == "/rewrite/x?q=1"
    assert body["headers"]["host"] == "rewritten.example"
    assert client.get("http://svc/regex/42").json()["path"] == "/num/42"


def test_redirects(client):
    r = client.get("http://svc/redirect")
    assert r.status_code == 302 and r.headers["location"] == "http://other.example/landed"
    r = client.get("http://svc/moved/a?b=1")
    assert r.status_code == 301 and r.headers["location"] == "http://svc/here/a?b=1"


def test_direct_response(client):
    r = client.get("http://svc/direct")
    assert r.status_code == 418 and r.text == "teapot"


def test_header_edits_both_directions(client):
    r = client.get("http://svc/headers", headers={"x-over": "old", "x-drop": "secret", "x-added": "0"})
    hdrs = r.json()["header_list"]
    assert ["x-over", "new"] in hdrs and ["x-over", "old"] not in hdrs
    assert [v for k, v in hdrs if k == "x-added"] == ["0", "1"]
    assert all(k != "x-drop" for k, _ in hdrs)
    assert r.headers["x-resp"] == "yes" and "x-app" not in r.headers
    assert r.json()["headers"]["x-request-id"]  # generated when absent


def test_request_id_and_trace_headers_propagate(client):
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    body = client.get(
        "http://svc/", headers={"x-request-id": "rid-1", "traceparent": tp, "x-b3-traceid": "abc"}
    ).json()
    assert body["headers"]["x-request-id"] == "rid-1"
    assert body["headers"]["traceparent"] == tp and body["headers"]["x-b3-traceid"] == "abc"


def test_weighted_split_inside_binomial_interval(client):
    n, p = 1000, 0.9
    hits = sum(who(client.get("http://svc/split")) == "a" for _ in range(n))
    half = 3.29 * math.sqrt(n * p * (1 - p))  # 99.9 % two-sided
    assert n * p - half <= hits <= n * p + half, hits


def test_consistent_hash_keeps_a_header_value_on_one_endpoint(client):
    for user in ("alice", "bob", "carol", "dave"):
        seen = {who(client.get("http://svc/sticky", headers={"x-user": user})) for _ in range(15)}
        assert len(seen) == 1, (user, seen)
    spread = {who(client.get("http://svc/sticky", headers={"x-user": f"u{i}"})) for i in range(40)}
    assert len(spread) >= 2


def test_cookie_hash_generates_a_cookie_and_sticks(src):
    with httpx.Client(proxy=f"http://127.0.0.1:{src.port}", timeout=10) as c:
        r = c.get("http://svc/cookie")
        assert "session=" in r.headers["set-cookie"] and "Max-Age=60" in r.headers["set-cookie"]
        first = who(r)
        assert all(who(c.get("http://svc/cookie")) == first for _ in range(10))


def test_unknown_host_passthrough_no_route_and_blackhole(src, ups, client):
    b = ups["b"]
    r = client.get(f"http://127.0.0.1:{b.port}/direct-to-b")
    assert r.status_code == 200 and who(r) == "b"
    assert client.get("http://partial/elsewhere").status_code == 404
    with httpx.Client(proxy=f"http://127.0.0.1:{src.blocked_port}", timeout=10) as blocked:
        assert blocked.get(f"http://127.0.0.1:{b.port}/").status_code == 404  # NR: no route


def test_upstream_failures_get_envoys_codes(client):
    assert client.get("http://dead/").status_code == 503  # UF
    assert client.get("http://empty/").status_code == 503  # UH
    assert client.get("http://missing/").status_code == 503  # NC


def test_route_timeout_gives_504(client):
    t0 = time.monotonic()
    r = client.get("http://svc/slow?s=2")
    assert r.status_code == 504 and time.monotonic() - t0 < 1.5


def test_expect_100_continue(src):
    with socket.create_connection(("127.0.0.1", src.port), timeout=5) as s:
        s.sendall(
            b"POST http://svc/upload HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"hello")
        data = _read_response(s)
        assert data.startswith(b"HTTP/1.1 200") and b'"received": 5' in data


def test_chunked_request_and_response(client):
    def gen():
        for _ in range(10):
            yield b"x" * 1000

    assert client.post("http://svc/upload", content=gen()).json()["received"] == 10000
    r = client.get("http://svc/big?n=300000")
    assert len(r.content) == 300000 and r.headers["transfer-encoding"] == "chunked"
    r = client.get("http://svc/big?n=300000&cl=1")
    assert len(r.content) == 300000 and r.headers["content-length"] == "300000"


def test_head_request_keeps_the_connection_usable(src):
    with socket.create_connection(("127.0.0.1", src.port), timeout=5) as s:
        s.sendall(b"HEAD http://svc/big?n=1000&cl=1 HTTP/1.1\r\nHost: svc\r\n\r\n")
        head = _read_head(s)
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: 1000" in head.lower()
        s.sendall(b"GET http://svc/direct HTTP/1.1\r\nHost: svc\r\n\r\n")
        assert _read_response(s).startswith(b"HTTP/1.1 418")


def test_websocket_upgrade_is_tunnelled(src):
    import base64
    import os

    key = base64.b64encode(os.urandom(16))
    with socket.create_connection(("127.0.0.1", src.port), timeout=5) as s:
        s.sendall(
            b"GET http://svc/ws HTTP/1.1\r\nHost: svc\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = _read_head(s)
        assert head.startswith(b"HTTP/1.1 101"), head
        payload = b"ping"
        mask = b"\x01\x02\x03\x04"
        s.sendall(
            bytes([0x81, 0x80 | len(payload)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        )
        frame = s.recv(100)
        assert frame[0] == 0x81 and frame[2:] == b"a:ping"


# --- telemetry -----------------------------------------------------------------------------------


def _istio_requests(text: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == "istio_requests":
            for s in fam.samples:
                if s.name == "istio_requests_total":
                    k = (s.labels["reporter"], s.labels["response_code"])
                    out[k] = out.get(k, 0) + s.value
    return out


def _samples(text: str, name: str):
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == name]


def test_metrics_count_exactly_the_requests_sent_through_two_proxies(src, dst, client):
    before_src = _istio_requests(src.get("/stats/prometheus").text)
    before_dst = _istio_requests(dst.get("/stats/prometheus").text)
    for _ in range(7):
        assert client.get("http://reviews/ok").status_code == 200
    for _ in range(3):
        assert client.get("http://reviews/status/503").status_code == 503
    src_text, dst_text = src.get("/stats/prometheus").text, dst.get("/stats/prometheus").text
    after_src, after_dst = _istio_requests(src_text), _istio_requests(dst_text)

    def delta(after, before, key):
        return after.get(key, 0) - before.get(key, 0)

    assert delta(after_src, before_src, ("source", "200")) >= 7  # other tests also send through src
    assert delta(after_dst, before_dst, ("destination", "200")) == 7
    assert delta(after_dst, before_dst, ("destination", "503")) == 3
    dest = next(
        s for s in _samples(dst_text, "istio_requests_total") if s.labels["response_code"] == "503"
    ).labels
    assert dest["source_workload"] == "productpage" and dest["source_app"] == "productpage"
    assert dest["destination_workload"] == "reviews" and dest["destination_version"] == "v2"
    assert dest["destination_service"] == "reviews.default.svc.cluster.local"
    assert dest["destination_service_name"] == "reviews" and dest["connection_security_policy"] == "none"
    source = next(
        s.labels
        for s in _samples(src_text, "istio_requests_total")
        if s.labels["response_code"] == "503" and s.labels["destination_service_name"] == "reviews"
    )
    assert source["reporter"] == "source" and source["destination_workload"] == "reviews"
    assert source["source_workload"] == "productpage" and source["destination_canonical_revision"] == "v2"
    buckets = [
        s
        for s in _samples(dst_text, "istio_request_duration_milliseconds_bucket")
        if s.labels["response_code"] == "503"
    ]
    assert [b.labels["le"] for b in buckets][:3] == ["0.5", "1", "5"] and buckets[-1].value == 3
    assert _samples(dst_text, "istio_response_bytes_count")


def test_peer_metadata_is_stripped_before_the_app(client, ups):
    body = client.get("http://reviews/echo").json()
    assert (
        "x-envoy-peer-metadata" not in body["headers"] and "x-envoy-peer-metadata-id" not in body["headers"]
    )
    assert body["peer"] == DST_IP  # the inbound sidecar connects from the pod IP


def test_access_log_lines_parse_back(src, client):
    client.get("http://svc/rewrite/log-me", headers={"user-agent": "probe/1.0", "x-request-id": "log-rid"})
    deadline = time.monotonic() + 5
    fields = None
    while time.monotonic() < deadline and fields is None:
        for line in open(src.log_path).read().splitlines():
            f = parse_text_line(line)
            if f["REQ(X-REQUEST-ID)"] == "log-rid":
                fields = f
        time.sleep(0.05)
    assert fields is not None
    assert fields["REQ(:METHOD)"] == "GET" and fields["REQ(X-ENVOY-ORIGINAL-PATH?:PATH)"] == "/rewrite/log-me"
    assert fields["RESPONSE_CODE"] == "200" and fields["RESPONSE_FLAGS"] == "-"
    assert fields["REQ(USER-AGENT)"] == "probe/1.0" and fields["UPSTREAM_CLUSTER"] == "a"
    assert fields["ROUTE_NAME"] == "rewrite" and fields["PROTOCOL"] == "HTTP/1.1"
    assert int(fields["RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)"]) >= 0


def test_flags_in_the_access_log(src, client):
    client.get("http://dead/", headers={"x-request-id": "flag-uf"})
    client.get("http://empty/", headers={"x-request-id": "flag-uh"})
    client.get("http://partial/x", headers={"x-request-id": "flag-nr"})
    client.get("http://svc/slow?s=1", headers={"x-request-id": "flag-ut"})
    with pytest.raises(httpx.HTTPError):
        client.get("http://svc/die", headers={"x-request-id": "flag-uc"})
    want = {
        "flag-uf": ("503", "UF"),
        "flag-uh": ("503", "UH"),
        "flag-nr": ("404", "NR"),
        "flag-ut": ("504", "UT"),
        "flag-uc": ("200", "UC"),
    }
    got = {}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(got) < len(want):
        for line in open(src.log_path).read().splitlines():
            f = parse_text_line(line)
            if f["REQ(X-REQUEST-ID)"] in want:
                got[f["REQ(X-REQUEST-ID)"]] = (f["RESPONSE_CODE"], f["RESPONSE_FLAGS"])
        time.sleep(0.05)
    assert got == want


# --- robustness ----------------------------------------------------------------------------------


def test_upstream_dying_mid_response_closes_the_client_and_the_proxy_lives(src, client):
    with pytest.raises(httpx.HTTPError):
        client.get("http://svc/die")
    r = client.get("http://svc/die-before")
    assert r.status_code == 503
    assert client.get("http://svc/").status_code == 200


def test_client_disconnect_mid_body_is_logged_dc(src):
    with socket.create_connection(("127.0.0.1", src.port), timeout=5) as s:
        s.sendall(
            b"POST http://svc/upload HTTP/1.1\r\nHost: svc\r\nx-request-id: flag-dc\r\nContent-Length: 100000\r\n\r\n"
            + b"z" * 1000
        )
        time.sleep(0.1)
    deadline = time.monotonic() + 5
    found = None
    while time.monotonic() < deadline and found is None:
        for line in open(src.log_path).read().splitlines():
            f = parse_text_line(line)
            if f["REQ(X-REQUEST-ID)"] == "flag-dc":
                found = f
        time.sleep(0.05)
    assert found is not None and found["RESPONSE_FLAGS"] == "DC" and found["RESPONSE_CODE"] == "0"
    assert httpx.get(f"http://127.0.0.1:{src.port}/", headers={"host": "svc"}).status_code == 200


def test_slow_client_headers_time_out(src):
    with socket.create_connection(("127.0.0.1", src.port), timeout=5) as s:
        s.sendall(b"GET http://svc/ HTTP/1.1\r\nHost: s")
        t0 = time.monotonic()
        data = s.recv(1000)
        assert data.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 3
        assert s.recv(1000) == b""


def test_smuggling_over_a_real_socket(src):
    with socket.create_connection(("127.0.0.1", src.port), timeout=5) as s:
        s.sendall(
            b"POST http://svc/upload HTTP/1.1\r\nHost: svc\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: svc\r\n\r\n"
        )
        data = _read_all(s)
    assert data.startswith(b"HTTP/1.1 400") and data.count(b"HTTP/1.1") == 1


def test_streaming_200mb_both_ways_with_bounded_proxy_memory(src):
    size = 200 * 1024 * 1024
    with RssGrowth(src.proc.pid) as rss, socket.create_connection(("127.0.0.1", src.port), timeout=30) as s:
        s.sendall(b"POST http://svc/upload HTTP/1.1\r\nHost: svc\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"u" * (1 << 20)
        for _ in range(200):
            s.sendall(block)
        assert b'"received": %d' % size in _read_response(s)
        s.sendall(b"GET http://svc/big?n=%d HTTP/1.1\r\nHost: svc\r\n\r\n" % size)
        got = _drain_chunked(s)
        assert got == size
    assert rss.grew_mib < 40, f"proxy RSS grew by {rss.grew_mib:.1f} MiB"


def test_bootstrap_stats_config_describes_the_metrics_really_exported(src, client):
    """The reference text's ``proxy-config bootstrap POD -o json | jq .stats_config`` step: what
    the dump says is what /stats/prometheus serves (tags = labels, buckets = ``le`` values)."""
    assert client.get("http://svc/hello").status_code == 200
    bootstrap = src.get("/config_dump").json()["configs"][0]["bootstrap"]
    config = bootstrap["stats_config"]
    assert config["use_all_default_tags"] is False
    assert "stats_matcher" not in config  # proxyStatsMatcher is not applied: every stat is kept
    families = {f.name: f for f in text_string_to_metric_families(src.get("/stats/prometheus").text)}
    (sample, *_) = families["istio_requests"].samples
    assert [t["tag_name"] for t in config["stats_tags"]] == list(sample.labels)
    for setting in config["histogram_bucket_settings"]:
        name = setting["match"]["exact"]
        bounds = [
            float(s.labels["le"])
            for s in families[name].samples
            if s.name == f"{name}_bucket" and s.labels["le"] != "+Inf"
        ]
        assert bounds[: len(setting["buckets"])] == [float(b) for b in setting["buckets"]]
        assert len(bounds) % len(setting["buckets"]) == 0  # the same boundaries for every series
    assert {s["match"]["exact"] for s in config["histogram_bucket_settings"]} == {
        "istio_request_duration_milliseconds",
        "istio_request_bytes",
        "istio_response_bytes",
    }


def test_admin_endpoints(src):
    dump = src.get("/config_dump").json()
    types = [c["@type"].rsplit(".", 1)[1] for c in dump["configs"]]
    assert types == [
        "BootstrapConfigDump",
        "ClustersConfigDump",
        "ListenersConfigDump",
        "RoutesConfigDump",
        "EndpointsConfigDump",
    ]
    assert any(c["cluster"]["name"] == "ring" for c in dump["configs"][1]["static_active_clusters"])
    assert "ring::127.0.0.1:" in src.get("/clusters").text
    assert src.get("/ready").text == "LIVE\n"
    assert "active loggers" in src.get("/logging").text
    assert "downstream_cx_total" in src.get("/stats").text
    pools = src.get("/listeners").json()["pools"]
    assert any("Connections:" in p and "idle]" in p for p in pools)


# --- helpers -------------------------------------------------------------------------------------


def _read_head(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _read_response(s: socket.socket) -> bytes:
    data = _read_head(s)
    head, _, body = data.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    while len(body) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _read_all(s: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def _drain_chunked(s: socket.socket) -> int:
    """Read a chunked body without keeping it; returns its length."""
    buf = _read_head(s).partition(b"\r\n\r\n")[2]
    total = 0
    while True:
        while b"\r\n" not in buf:
            buf += s.recv(1 << 20)
        line, _, buf = buf.partition(b"\r\n")
        n = int(line, 16)
        if n == 0:
            return total
        while len(buf) < n + 2:
            chunk = s.recv(1 << 20)
            if not chunk:
                raise ConnectionError("short body")
            buf += chunk
        total += n
        buf = buf[n + 2 :]


def test_strict_dns_and_eds_least_request_clusters(ups):
    """The shapes the control plane pushes: EDS + LEAST_REQUEST (Istio's default) and DNS ServiceEntries."""
    a, b = ups["a"], ups["b"]
    port = free_port()
    eds = "outbound|80||svc.default.svc.cluster.local"
    boot = {
        "node": node("dns-client"),
        "static_resources": {
            "listeners": [outbound_listener(port)],
            "routes": [
                {
                    "name": "80",
                    "virtual_hosts": [
                        vhost("svc", ["svc"], [route(eds)]),
                        vhost("external", ["api.external.test"], [route("outbound|80||api.external.test")]),
                    ],
                }
            ],
            "clusters": [
                {"name": eds, "type": "EDS", "lb_policy": "LEAST_REQUEST"},
                {
                    "name": "outbound|80||api.external.test",
                    "type": "STRICT_DNS",
                    "lb_policy": "ROUND_ROBIN",
                    "load_assignment": {
                        "cluster_name": "outbound|80||api.external.test",
                        "endpoints": [{"lb_endpoints": [{"address": "localhost", "port": b.port}]}],
                    },
                },
            ],
            "endpoints": [
                {
                    "cluster_name": eds,
                    "endpoints": [
                        {
                            "lb_endpoints": [
                                {"address": a.host, "port": a.port},
                                {"address": b.host, "port": b.port},
                            ]
                        }
                    ],
                }
            ],
        },
    }
    p = ProxyProcess(boot).wait_ready()
    try:
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", timeout=10) as c:
            assert {who(c.get("http://svc/")) for _ in range(30)} == {"a", "b"}
            deadline = time.monotonic() + 10
            r = c.get("http://api.external.test/")
            while (
                r.status_code != 200 and time.monotonic() < deadline
            ):  # the first resolution is asynchronous
                time.sleep(0.05)
                r = c.get("http://api.external.test/")
            assert r.status_code == 200 and who(r) == "b"
            assert c.get("http://unknown.test/").status_code == 404  # no fallback cluster: NR
    finally:
        p.stop()


def test_close_delimited_upstream_body_is_complete_at_eof(client):
    """An HTTP/1.0-style upstream (no length, no chunking) ends its body by closing: not a UC."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" + b"q" * 50000
            )

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        r = client.get(f"http://127.0.0.1:{port}/eof")
        assert r.status_code == 200 and r.content == b"q" * 50000
        assert client.get("http://svc/").status_code == 200  # the client connection is still usable
    finally:
        t.join(5)
        srv.close()
