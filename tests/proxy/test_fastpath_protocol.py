"""The fast lane's protocol classes fed raw bytes through mock transports (no sockets): what
happens when Python code the lane calls fails in the middle of serving a request."""

from __future__ import annotations

from typing import Any

import pytest
from test_protocol import MockTransport, responses

from meshpilot.proxy import _fastpath as fp
from meshpilot.proxy.config import static_resources
from meshpilot.proxy.http import DownstreamProtocol
from meshpilot.proxy.router import RouteTable
from meshpilot.proxy.server import Identity, Proxy, Settings

CLUSTER = "outbound|80||svc.default.svc.cluster.local"


class Transport(MockTransport):
    """What uvloop's TCP transport offers the lane beyond the mock: protocol switching."""

    def __init__(self) -> None:
        super().__init__()
        self.protocol: Any = None

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol


@pytest.fixture
async def lane():
    """A proxy with an outbound listener: host ``svc`` routes by path, host ``hdr`` by a header
    (so the lane matches per request); one pooled upstream connection on a mock transport."""
    p = Proxy(Identity("sidecar~127.0.0.1~t.default~default.svc.cluster.local", "127.0.0.1"), Settings())
    assert p.fastlane is not None
    boot = {
        "static_resources": {
            "listeners": [
                {"name": "out", "address": "127.0.0.1", "port": 0, "traffic_direction": "OUTBOUND"}
            ],
            "routes": [
                {
                    "name": "80",
                    "virtual_hosts": [
                        {"name": "svc", "domains": ["svc"], "routes": [{"route": {"cluster": CLUSTER}}]},
                        {
                            "name": "hdr",
                            "domains": ["hdr"],
                            "routes": [
                                {
                                    "match": {
                                        "prefix": "/",
                                        "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}],
                                    },
                                    "route": {"cluster": CLUSTER},
                                },
                                {"route": {"cluster": CLUSTER}},
                            ],
                        },
                    ],
                }
            ],
            "clusters": [
                {
                    "name": CLUSTER,
                    "type": "STATIC",
                    "load_assignment": {
                        "cluster_name": CLUSTER,
                        "endpoints": [{"lb_endpoints": [{"address": "127.0.0.1", "port": 9}]}],
                    },
                }
            ],
        }
    }
    res = static_resources(boot)
    await p.apply(res, {t: "static" for t in res})
    c = p.snapshot.clusters[CLUSTER]
    pool = p.pool_for(c.hosts[0], c, fast=True)
    up = fp.FastUpstream(pool)
    ut = MockTransport()
    up.connection_made(ut)  # type: ignore[attr-defined]
    pool.idle.append(up)
    down = fp.FastDownstream(p.fastlane, p.snapshot.listeners["out"])
    dt = Transport()
    down.connection_made(dt)  # type: ignore[attr-defined]
    yield p, down, dt, up, ut
    await p.stop()


def _broken_route(self: RouteTable, req: Any) -> Any:
    raise RuntimeError("a matcher that fails")


async def test_a_failing_matcher_hands_the_request_to_the_interpreted_lane(lane, monkeypatch):
    p, down, dt, _up, ut = lane
    monkeypatch.setattr(RouteTable, "route", _broken_route)
    down.data_received(b"GET / HTTP/1.1\r\nHost: hdr\r\nEnd-User: jason\r\n\r\n")
    # not a reset: the interpreted lane took the connection and answered as it does
    assert isinstance(dt.protocol, DownstreamProtocol)
    assert [s for s, _, _ in responses(bytes(dt.buffer))] == [400] and dt.closed
    assert p.fastlane.handovers == 1 and ut.buffer == b""


async def test_a_failure_while_starting_a_pipelined_request_does_not_unwind_into_the_upstream(
    lane, monkeypatch
):
    p, down, dt, up, ut = lane
    monkeypatch.setattr(RouteTable, "route", _broken_route)
    # a plain request, and behind it one the broken matcher will see
    down.data_received(b"GET /a HTTP/1.1\r\nHost: svc\r\n\r\nGET /b HTTP/1.1\r\nHost: hdr\r\n\r\n")
    assert ut.buffer.startswith(b"GET /a HTTP/1.1\r\n")
    # the upstream's answer ends the first exchange, which starts the second from this callback
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # must not raise
    assert [s for s, _, _ in responses(bytes(dt.buffer))] == [200, 400]
    assert p.fastlane.requests == 1 and p.fastlane.handovers == 1
    assert not up.closed  # the upstream connection went back to the pool, unharmed
