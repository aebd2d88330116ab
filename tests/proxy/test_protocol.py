"""The downstream protocol fed raw bytes through a mock transport: parsing, keep-alive, smuggling."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from meshpilot.proxy.config import validate_listener
from meshpilot.proxy.http import DownstreamProtocol, Exchange
from meshpilot.proxy.server import Identity, Proxy, Settings

ROUTES = {
    "name": "80",
    "virtual_hosts": [
        {
            "name": "svc",
            "domains": ["svc", "svc:80"],
            "routes": [
                {
                    "name": "teapot",
                    "match": {"prefix": "/tea"},
                    "direct_response": {"status": 418, "body": "teapot"},
                },
                {"name": "moved", "match": {"prefix": "/old"}, "redirect": {"prefix_rewrite": "/new"}},
                {
                    "name": "only",
                    "match": {"path": "/only"},
                    "direct_response": {"status": 200, "body": "ok"},
                },
            ],
        }
    ],
}


class MockTransport:
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.buffer += data

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 15001), "peername": ("127.0.0.1", 50000)}.get(name, default)


@pytest.fixture
async def proxy():
    p = Proxy(
        Identity("sidecar~127.0.0.1~t.default~default.svc.cluster.local", "127.0.0.1"),
        Settings(header_timeout=0.2),
    )
    await p.apply({"type.googleapis.com/envoy.config.route.v3.RouteConfiguration": [ROUTES]}, {})
    yield p
    await p.stop()


def connect(proxy: Proxy) -> tuple[DownstreamProtocol, MockTransport]:
    lc = validate_listener(
        {
            "name": "out",
            "address": "127.0.0.1",
            "port": 15001,
            "traffic_direction": "OUTBOUND",
            "cluster": "PassthroughCluster",
        }
    )
    proto = DownstreamProtocol(proxy, lc)
    t = MockTransport()
    proto.connection_made(t)  # type: ignore[arg-type]
    return proto, t


def responses(buf: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    out = []
    data = bytes(buf)
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
        n = int(headers.get(b"content-length", b"0"))
        out.append((status, {k: v for k, v in headers.items()}, rest[:n]))
        data = rest[n:]
    return out


async def test_keep_alive_reuses_one_parser_for_many_requests(proxy):
    proto, t = connect(proxy)
    parser = proto.parser
    for _ in range(3):
        proto.data_received(b"GET /tea HTTP/1.1\r\nHost: svc\r\n\r\n")
    assert proto.parser is parser
    got = responses(t.buffer)
    assert [s for s, _, _ in got] == [418, 418, 418]
    assert got[0][2] == b"teapot" and b"date" in got[0][1] and not t.closed


async def test_pipelined_requests_in_one_packet_are_answered_in_order(proxy):
    proto, t = connect(proxy)
    proto.data_received(b"GET /tea HTTP/1.1\r\nHost: svc\r\n\r\nGET /only HTTP/1.1\r\nHost: svc\r\n\r\n")
    assert [s for s, _, _ in responses(t.buffer)] == [418, 200]


async def test_absolute_form_is_routed_by_its_host(proxy):
    proto, t = connect(proxy)
    proto.data_received(b"GET http://svc/tea HTTP/1.1\r\nHost: ignored\r\n\r\n")
    assert responses(t.buffer)[0][0] == 418


async def test_absolute_form_authority_ends_at_the_query_when_there_is_no_path(proxy):
    proto, _ = connect(proxy)
    x = Exchange(proto, "GET", b"http://svc?q=1", [])
    assert (x.authority, x.target, x.path, x.query) == ("svc", "/?q=1", "/", "q=1")
    x = Exchange(proto, "GET", b"http://svc", [])
    assert (x.authority, x.target) == ("svc", "/")


async def test_redirect_and_no_route(proxy):
    proto, t = connect(proxy)
    proto.data_received(
        b"GET /old/x?y=1 HTTP/1.1\r\nHost: svc\r\n\r\nGET /nothing HTTP/1.1\r\nHost: svc\r\n\r\n"
    )
    (s1, h1, _), (s2, _, _) = responses(t.buffer)
    assert s1 == 301 and h1[b"location"] == b"http://svc/new/x?y=1"
    assert s2 == 404


@pytest.mark.parametrize(
    "raw, status",
    [
        # CL.TE and TE.CL smuggling (bodies go to a passthrough host, so nothing answers before parsing ends)
        (
            b"POST /tea HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        # differing duplicate Content-Length
        (
            b"POST /tea HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
            400,
        ),
        # bad chunk size
        (
            b"POST /tea HTTP/1.1\r\nHost: 127.0.0.1:9\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            400,
        ),
        # obfuscated transfer-encoding
        (b"POST /tea HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: xchunked\r\n\r\n", None),
        # whitespace before the colon, and bad characters in a header name
        (b"GET /tea HTTP/1.1\r\nHost: svc\r\nX-Bad : 1\r\n\r\n", 400),
        (b"GET /tea HTTP/1.1\r\nHost: svc\r\nX(Bad): 1\r\n\r\n", 400),
        # two Host headers
        (b"GET /tea HTTP/1.1\r\nHost: svc\r\nHost: other\r\n\r\n", 400),
        # negative / non-numeric content length
        (b"POST /tea HTTP/1.1\r\nHost: svc\r\nContent-Length: -1\r\n\r\n", 400),
        # garbage request line
        (b"GET /tea HTTP/1.1 extra\r\nHost: svc\r\n\r\n", 400),
    ],
)
async def test_smuggling_vectors_get_an_error_and_the_connection_closes(proxy, raw, status):
    proto, t = connect(proxy)
    proto.data_received(raw)
    got = responses(t.buffer)
    assert len(got) == 1
    if status is None:
        assert got[0][0] in (400, 501)
    else:
        assert got[0][0] == status
    assert got[0][1].get(b"connection") == b"close"
    assert t.closed
    # nothing after the rejected message is ever parsed as a request
    proto.data_received(b"GET /tea HTTP/1.1\r\nHost: svc\r\n\r\n")
    assert len(responses(t.buffer)) == 1


async def test_oversized_headers_get_431(proxy):
    proto, t = connect(proxy)
    proto.data_received(b"GET /tea HTTP/1.1\r\nHost: svc\r\n")
    for _ in range(70):
        if t.closed:
            break
        proto.data_received(b"X-Filler: " + b"a" * 1000 + b"\r\n")
    got = responses(t.buffer)
    assert got[0][0] == 431 and t.closed


async def test_large_body_in_one_packet_is_not_mistaken_for_large_headers(proxy):
    proto, t = connect(proxy)
    body = b"b" * 200_000
    proto.data_received(b"POST /tea HTTP/1.1\r\nHost: svc\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert responses(t.buffer)[0][0] == 418


async def test_header_read_timeout_answers_408_and_closes(proxy):
    proto, t = connect(proxy)
    proto.data_received(b"GET /tea HTTP/1.1\r\nHost: s")
    deadline = asyncio.get_running_loop().time() + 3
    while not t.closed and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    assert t.closed and responses(t.buffer)[0][0] == 408


async def test_http10_closes_after_the_response(proxy):
    proto, t = connect(proxy)
    proto.data_received(b"GET /tea HTTP/1.0\r\nHost: svc\r\n\r\n")
    assert responses(t.buffer)[0][0] == 418 and t.closed


async def test_connection_close_is_honoured(proxy):
    proto, t = connect(proxy)
    proto.data_received(b"GET /tea HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n")
    status, headers, _ = responses(t.buffer)[0]
    assert status == 418 and headers[b"connection"] == b"close" and t.closed


async def test_pool_reuses_idle_connections_and_sweeps_stale_ones(proxy):
    from meshpilot.proxy.http import Pool, UpstreamProtocol

    pool = Pool(proxy, "127.0.0.1", 9, None)
    pool.idle_timeout = 10.0
    ups = []
    for _ in range(2):
        up = UpstreamProtocol(pool)
        up.connection_made(MockTransport())  # type: ignore[arg-type]
        pool.active.add(up)
        ups.append(up)
    assert repr(pool) == "<Pool 127.0.0.1:9 [Requests: 2 active, 0 queued | Connections: 2 active, 0 idle]>"
    for up in ups:
        pool.release(up, reusable=True)
    assert repr(pool).endswith("Connections: 0 active, 2 idle]>")
    ups[0].idle_since -= 11  # idle longer than the timeout
    pool.sweep(proxy.loop.time())
    assert ups[0].transport.closed and not ups[1].transport.closed and pool.idle == [ups[1]]
    assert pool.acquire(None) is ups[1]  # type: ignore[arg-type]


async def test_idle_keep_alive_connection_is_closed_after_idle_timeout():
    p = Proxy(
        Identity("sidecar~127.0.0.1~t.default~default.svc.cluster.local", "127.0.0.1"),
        Settings(idle_timeout=0.2),
    )
    await p.apply({"type.googleapis.com/envoy.config.route.v3.RouteConfiguration": [ROUTES]}, {})
    try:
        proto, t = connect(p)
        loop = asyncio.get_running_loop()
        for _ in range(3):  # activity keeps it open past one idle period
            await asyncio.sleep(0.1)
            proto.data_received(b"GET /tea HTTP/1.1\r\nHost: svc\r\n\r\n")
        assert not t.closed and len(responses(t.buffer)) == 3
        deadline = loop.time() + 3
        while not t.closed and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert t.closed
    finally:
        await p.stop()


def test_generated_request_ids_are_version_4_uuids():
    import re
    import uuid

    from meshpilot.proxy.http import _request_id

    ids = [_request_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    pattern = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    for rid in ids:
        assert pattern.fullmatch(rid), rid
        u = uuid.UUID(rid.decode())
        assert u.version == 4 and u.variant == uuid.RFC_4122
    assert {rid[19:20] for rid in ids} == {b"8", b"9", b"a", b"b"}  # all four variant digits occur


async def test_header_timeout_counts_from_the_first_read_of_a_head_not_the_last(proxy):
    """A client trickling a head byte by byte must not push the 0.2 s header timeout back."""
    proto, t = connect(proxy)
    loop = asyncio.get_running_loop()
    start = loop.time()
    head = b"GET /tea HTTP/1.1\r\nHost: svc\r\nX-Slow: " + b"a" * 100
    i = 0
    while not t.closed and loop.time() < start + 3:
        proto.data_received(head[i : i + 1] or b"a")
        i += 1
        await asyncio.sleep(0.02)
    assert t.closed and responses(t.buffer)[0][0] == 408
    assert loop.time() - start < 1.0


async def test_a_head_in_two_reads_within_the_timeout_is_answered(proxy):
    proto, t = connect(proxy)
    proto.data_received(b"GET /tea HTTP/1.1\r\nHo")
    await asyncio.sleep(0.05)
    proto.data_received(b"st: svc\r\n\r\n")
    await asyncio.sleep(0.3)  # past the 0.2 s header timeout: it must have been disarmed
    assert responses(t.buffer)[0][0] == 418 and not t.closed
    proto.data_received(b"GET /tea HTTP/1.1\r\nHost: svc\r\n\r\n")  # keep-alive still works
    assert [s for s, _, _ in responses(t.buffer)] == [418, 418]


class CountingTransport(MockTransport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        super().write(data)


@pytest.fixture
async def routed_proxy():
    """A proxy whose outbound listener routes svc to a cluster, with one pooled upstream
    connection on a mock transport (so nothing connects anywhere)."""
    from meshpilot.proxy.config import static_resources
    from meshpilot.proxy.http import UpstreamProtocol

    p = Proxy(Identity("sidecar~127.0.0.1~t.default~default.svc.cluster.local", "127.0.0.1"), Settings())
    cluster = "outbound|80||svc.default.svc.cluster.local"
    boot = {
        "static_resources": {
            "listeners": [
                {"name": "out", "address": "127.0.0.1", "port": 0, "traffic_direction": "OUTBOUND"}
            ],
            "routes": [
                {
                    "name": "80",
                    "virtual_hosts": [
                        {"name": "svc", "domains": ["svc"], "routes": [{"route": {"cluster": cluster}}]}
                    ],
                }
            ],
            "clusters": [
                {
                    "name": cluster,
                    "type": "STATIC",
                    "load_assignment": {
                        "cluster_name": cluster,
                        "endpoints": [{"lb_endpoints": [{"address": "127.0.0.1", "port": 9}]}],
                    },
                }
            ],
        }
    }
    res = static_resources(boot)
    await p.apply(res, {t: "static" for t in res})
    c = p.snapshot.clusters[cluster]
    pool = p.pool_for(c.hosts[0], c)
    up = UpstreamProtocol(pool)
    ut = CountingTransport()
    up.connection_made(ut)  # type: ignore[arg-type]
    pool.idle.append(up)
    proto = DownstreamProtocol(p, p.snapshot.listeners["out"])
    dt = MockTransport()
    proto.connection_made(dt)  # type: ignore[arg-type]
    yield proto, dt, up, ut
    await p.stop()


async def test_request_head_and_body_from_one_read_leave_in_one_send(routed_proxy):
    proto, dt, up, ut = routed_proxy
    proto.data_received(b"POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nhello")
    assert len(ut.writes) == 1
    head, _, body = ut.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /a HTTP/1.1\r\n") and b"content-length: 5" in head and body == b"hello"
    up.data_received(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    assert responses(dt.buffer)[0][0] == 201
    # chunked: head, every chunk and the terminator from one read: one send
    ut.writes.clear()
    proto.data_received(
        b"POST /b HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert len(ut.writes) == 1 and ut.writes[0].endswith(b"\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    # a body arriving in later reads goes out as it arrives, one send per read
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    ut.writes.clear()
    proto.data_received(b"POST /c HTTP/1.1\r\nHost: svc\r\nContent-Length: 6\r\n\r\nab")
    proto.data_received(b"cdef")
    assert len(ut.writes) == 2 and ut.writes[1] == b"cdef"
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert [s for s, _, _ in responses(dt.buffer)] == [201, 200, 200] and not dt.closed


async def test_get_and_response_each_one_send(routed_proxy):
    proto, dt, up, ut = routed_proxy
    dt_writes: list[bytes] = []
    dt.write = dt_writes.append  # type: ignore[method-assign]
    for _ in range(3):
        proto.data_received(b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
        up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
    assert len(ut.writes) == 3 and len(dt_writes) == 3
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b"\r\n\r\nok") for w in dt_writes)
    assert all(b"x-request-id: " in w and b"x-envoy-peer-metadata-id: " in w for w in ut.writes)


def test_outbound_route_table_is_named_after_the_authoritys_port():
    from meshpilot.proxy.http import _route_name_for

    for _ in range(2):  # the second round answers from the cache
        assert _route_name_for("svc") == "80"
        assert _route_name_for("svc.ns.svc.cluster.local:9080") == "9080"
        assert _route_name_for("[::1]") == "80"
        assert _route_name_for("[::1]:8080") == "8080"


async def test_pools_left_without_connections_are_forgotten(proxy):
    """Passthrough makes a pool per destination the client names; once a pool holds no connection
    the proxy drops it on its next tick, so distinct Host values cannot grow memory."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed_port = s.getsockname()[1]
    s.close()  # nothing listens there: each connect is refused at once
    proto, t = connect(proxy)
    n = 20
    for i in range(n):
        proto.data_received(f"GET / HTTP/1.1\r\nHost: 127.0.0.{i + 1}:{closed_port}\r\n\r\n".encode())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while len(responses(t.buffer)) < n and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert [r[0] for r in responses(t.buffer)] == [503] * n
    while proxy.pools and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert proxy.pools == {}


async def test_a_strict_dns_name_that_cannot_be_looked_up_is_skipped_not_fatal():
    """A name with a label longer than 63 characters makes getaddrinfo raise UnicodeError, not
    OSError; the resolver must skip it and keep resolving the others, now and on every refresh."""
    p = Proxy(
        Identity("sidecar~127.0.0.1~t.default~default.svc.cluster.local", "127.0.0.1"),
        Settings(dns_refresh=0.05),
    )
    name = "outbound|80||api.external.test"
    endpoints = [{"address": "a" * 64 + ".example", "port": 80}, {"address": "localhost", "port": 80}]
    cluster = {
        "name": name,
        "type": "STRICT_DNS",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]},
    }
    await p.apply({"type.googleapis.com/envoy.config.cluster.v3.Cluster": [cluster]}, {})
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not p.snapshot.clusters[name].hosts and loop.time() < deadline:
            await asyncio.sleep(0.02)
        hosts = p.snapshot.clusters[name].hosts
        assert hosts and {h.address for h in hosts} <= {"127.0.0.1", "::1"}
        await asyncio.sleep(0.2)  # a few refreshes
        assert p._dns_task is not None and not p._dns_task.done()
    finally:
        await p.stop()


async def test_a_passthrough_host_the_resolver_cannot_encode_gets_503_not_a_hang(proxy):
    """Passthrough connects to whatever the Host header names; a label over 63 characters makes
    getaddrinfo raise UnicodeError. The request fails as any unreachable destination (503 UF) and
    the pool does not count a connect in progress forever."""
    proto, t = connect(proxy)
    host = "a" * 64 + ".example"
    proto.data_received(f"GET / HTTP/1.1\r\nHost: {host}:80\r\n\r\n".encode())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not t.buffer and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert [r[0] for r in responses(t.buffer)] == [503]
    pool = proxy.pools.get((host, 80, False))
    assert pool is None or pool.connecting == 0
