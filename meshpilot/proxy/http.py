"""The HTTP/1.1 hot path: downstream and upstream ``asyncio.Protocol`` classes and the pool.

One httptools parser per connection, reused across keep-alive requests; headers stay raw bytes
with lowercased names; a response head is joined and written once. Bodies stream through: the
downstream's write buffer filling pauses the upstream's reading and vice versa, so a 200 MB body
never sits in the proxy. Timers are ``loop.call_later`` handles cancelled on activity.

An ``Exchange`` is one request/response pair. It owns the routing decision, the upstream
connection while it is in use, the response flags and everything the access log and the Istio
metrics need, and it is finished exactly once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import json
import logging
import os
import random
import time
from collections import deque
from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, cast

import httptools

from meshpilot.proxy.config import BLACKHOLE, ClusterState, ListenerConfig
from meshpilot.proxy.lb import Host
from meshpilot.proxy.router import CompiledRoute, HeaderOps, Headers, RequestView, redirect_location
from meshpilot.tasks import spawn

if TYPE_CHECKING:
    from meshpilot.proxy.server import Proxy

log = logging.getLogger("meshpilot.proxy")

# Precomputed status lines.
_STATUS_LINE: Final = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}  # fmt: skip

# Hop-by-hop headers (RFC 9110 7.6.1) plus the framing headers the proxy sets itself.
_HOP: Final = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
        b"upgrade", b"proxy-authenticate", b"proxy-authorization", b"content-length", b"expect",
    }
)  # fmt: skip
PEER_META: Final = b"x-envoy-peer-metadata"
PEER_META_ID: Final = b"x-envoy-peer-metadata-id"
_PEER: Final = frozenset({PEER_META, PEER_META_ID})
_HOP_OR_PEER: Final = _HOP | _PEER  # response headers never forwarded as they are

# x-envoy-upstream-service-time values below a second, formatted once.
_MILLIS: Final = tuple(b"%d" % i for i in range(1000))

HIGH_WATER: Final = 256 * 1024  # body bytes buffered before the sender is paused


def status_line(code: int) -> bytes:
    line = _STATUS_LINE.get(code)
    return line if line is not None else f"HTTP/1.1 {code} Unknown\r\n".encode()


class _Reject(Exception):
    """Raised inside parser callbacks to abandon a message with a local response."""

    def __init__(self, status: int, details: str) -> None:
        super().__init__(details)
        self.status, self.details = status, details


def _addr(sock_addr: Any) -> tuple[str, str]:
    if isinstance(sock_addr, tuple) and len(sock_addr) >= 2:
        return f"{sock_addr[0]}:{sock_addr[1]}", str(sock_addr[0])
    return "", ""


class FlowControl:
    """Idempotent pause/resume of a transport's reading, for several independent reasons."""

    __slots__ = ("_reasons", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._reasons: set[str] = set()

    def pause(self, reason: str) -> None:
        if not self._reasons and not self._transport.is_closing():
            self._transport.pause_reading()
        self._reasons.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self._reasons:
            self._reasons.discard(reason)
            if not self._reasons and not self._transport.is_closing():
                self._transport.resume_reading()

    @property
    def paused(self) -> bool:
        return bool(self._reasons)


class _BatchedConnection(asyncio.Protocol):
    """What both sides of a proxied exchange share: writes batched while one read is processed.

    Everything one read of the peer produces (a head, body bytes, a chunk terminator) leaves in one
    send: ``batching`` is set before feeding the parser and ``flush`` ends the batch.
    """

    __slots__ = ("batching", "closed", "transport", "wbuf")

    batching: bool
    closed: bool
    transport: asyncio.Transport | None
    wbuf: list[bytes]

    def write(self, data: bytes) -> None:
        if self.batching:
            self.wbuf.append(data)
        elif self.transport is not None and not self.closed:
            self.transport.write(data)

    def flush(self) -> None:
        """End of a batch: what one read produced goes out in one send."""
        self.batching = False
        buf = self.wbuf
        if buf:
            data = buf[0] if len(buf) == 1 else b"".join(buf)
            buf.clear()
            if self.transport is not None and not self.closed:
                self.transport.write(data)


# --- downstream -------------------------------------------------------------------------------


class DownstreamProtocol(_BatchedConnection):
    """One client connection to a listener (outbound, inbound, gateway or admin)."""

    __slots__ = (
        "_deadline",
        "_deadline_cb",
        "_head_bytes",
        "_head_timer",
        "_headers",
        "_in_head",
        "_timer",
        "_timer_when",
        "_url",
        "admin",
        "conn_id",
        "current",
        "dirty",
        "feeding",
        "flow",
        "listener",
        "listener_name",
        "local_addr",
        "local_ip",
        "loop",
        "parser",
        "parsing",
        "pipeline",
        "proxy",
        "remote_addr",
        "remote_ip",
        "tunnel",
        "tunnel_buffer",
        "write_paused",
    )

    def __init__(self, proxy: Proxy, listener: ListenerConfig | None, admin: bool = False) -> None:
        self.proxy = proxy
        self.loop = proxy.loop
        self.listener_name = listener.name if listener else "admin"
        self.listener = listener
        self.admin = admin
        self.transport: asyncio.Transport | None = None
        self.flow: FlowControl | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.conn_id = proxy.next_conn_id()
        self.local_addr = self.remote_addr = self.remote_ip = self.local_ip = ""
        # The message being parsed, the one being answered, the ones waiting (pipelining).
        self.parsing: Exchange | None = None
        self.current: Exchange | None = None
        self.pipeline: deque[Exchange] = deque()
        self._url = b""
        self._headers: Headers = []
        self._head_bytes = 0
        self._in_head = False
        self._head_timer = False  # the header-read timeout is armed for the head being read
        self.write_paused = False
        self.closed = False
        self.tunnel: UpstreamProtocol | None = None
        self.tunnel_buffer: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._deadline = 0.0
        self._deadline_cb: Any = None
        self.batching = False
        self.wbuf: list[bytes] = []
        # While a read is parsed, what it produces for upstream connections is collected and
        # sent once per connection at the end (a request head and its body: one send, not two).
        self.feeding = False
        self.dirty: list[UpstreamProtocol] = []

    # -- connection events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._take(cast(asyncio.Transport, transport))  # uvloop's transports do not subclass asyncio's
        self.proxy.counters.inc(f"listener.{self.local_addr}.downstream_cx_total")

    def adopt(self, transport: asyncio.Transport, write_paused: bool, data: bytes, conn_id: int) -> None:
        """Take over a connection the compiled fast lane (``_fastpath``) accepted, with the bytes
        it read and did not serve, and its id; from here on this connection is ours alone."""
        self.conn_id = conn_id
        self._take(transport)
        self.write_paused = write_paused
        if data:
            self.data_received(data)

    def _take(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.flow = FlowControl(transport)
        self.local_addr, self.local_ip = _addr(transport.get_extra_info("sockname"))
        self.remote_addr, self.remote_ip = _addr(transport.get_extra_info("peername"))
        transport.set_write_buffer_limits(high=HIGH_WATER)
        self.proxy.downstream.add(self)
        self._arm(self.proxy.settings.idle_timeout, self._on_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        self.wbuf.clear()
        self.proxy.downstream.discard(self)
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        for x in (self.current, self.parsing, *self.pipeline):
            if x is not None and not x.done:
                x.downstream_lost()
        self.pipeline.clear()
        self.current = self.parsing = None

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.tunnel is not None:
            self.tunnel.flow_pause("downstream-write")
        x = self.current
        if x is not None and x.upstream is not None:
            x.upstream.flow_pause("downstream-write")

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.tunnel is not None:
            self.tunnel.flow_resume("downstream-write")
        x = self.current
        if x is not None and x.upstream is not None:
            x.upstream.flow_resume("downstream-write")

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self.current is not None and self.current.upgrading:
            self.tunnel_buffer.append(data)
            return
        if self._in_head or self.parsing is None:
            self._head_bytes += len(data)
        self.feeding = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            offset = e.args[0] if e.args else len(data)
            rest = data[offset:]
            x = self.parsing or self.current
            if x is not None and x.method == "CONNECT":
                x.close_after = True
                if x.started and not x.done:
                    x.local_reply(405, "", "connect_not_supported")
                return
            if rest and x is not None:
                self.tunnel_buffer.append(rest)
        except _Reject as e:
            self._reject(e.status, e.details)
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _Reject):
                self._reject(cause.status, cause.details)
            else:
                log.exception("parser callback failed")
                self._reject(400, "internal_error")
        except httptools.HttpParserError as e:
            self._reject(400, "http1.codec_error" if not str(e) else "http1.codec_error{" + _detail(e) + "}")
        else:
            # Checked after parsing: a chunk holding a whole head plus body is not an oversized head.
            if (
                self._in_head or self.parsing is None
            ) and self._head_bytes > self.proxy.settings.max_header_bytes:
                if not self.closed:
                    self._reject(431, "request_headers_too_large")
            elif self._in_head and self.current is None and not self._head_timer and not self.closed:
                # The header-read timeout runs only for a head that did not arrive in one read
                # (most do: then no timer is touched for it at all).
                self._head_timer = True
                self._arm(self.proxy.settings.header_timeout, self._on_header_timeout)
        finally:
            self.feeding = False
            if self.dirty:
                for up in self.dirty:
                    up.flush()
                self.dirty.clear()

    def _reject(self, status: int, details: str) -> None:
        """A request the proxy refuses to parse further: answer if nothing is in flight, then close."""
        self._disarm()
        x = self.parsing or Exchange(self, "GET", b"/", [])
        self.parsing = None
        if self.current is not None and self.current is not x:
            # A response is in progress on this connection: the smuggled message just ends it.
            self.current.close_after = True
            self.pipeline.clear()
            self.flow.pause("rejected") if self.flow else None
            return
        self.current = x
        x.close_after = True
        x.local_reply(status, flags="DPE" if status in (400, 431) else "", details=details)

    # -- parser callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp skips the whitespace before a value but keeps what follows it; a field value
        # has none at either end (RFC 9110 5.5), and Envoy trims both.
        self._headers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_timer = False
        self._head_bytes = 0
        # The size limit holds however the head arrived (one read or many): its lines, counted
        # as sent (name, ": ", value, CRLF), plus the request line.
        size = len(self._url) + 16
        for name, value in self._headers:
            size += len(name) + len(value) + 4
        if size > self.proxy.settings.max_header_bytes:
            raise _Reject(431, "request_headers_too_large")
        parser = self.parser
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        x = Exchange(self, method, self._url, self._headers)
        if parser.get_http_version() == "1.0":
            x.http10 = True
        if not parser.should_keep_alive():
            x.keep_alive = False
        if parser.should_upgrade():
            x.upgrade_requested = True
        self.parsing = x
        _strict_checks(x)
        if self.current is None:
            self._disarm()
            self.current = x
            x.start()
        else:
            self.pipeline.append(x)
            if self.flow is not None:
                self.flow.pause("pipeline")

    def on_body(self, body: bytes) -> None:
        x = self.parsing
        if x is not None:
            x.request_body(body)

    def on_message_complete(self) -> None:
        x = self.parsing
        self.parsing = None
        if x is not None:
            x.request_end()

    # -- writing

    def exchange_done(self, x: Exchange) -> None:
        """The response of ``x`` is written: close, or move on to the next request on this connection."""
        if x is not self.current:
            return
        self.current = None
        if self.tunnel is not None:
            return
        if x.close_after or not x.keep_alive or self.proxy.draining or x.upgrade_requested:
            self.close()
            return
        if self.pipeline:
            nxt = self.pipeline.popleft()
            self.current = nxt
            if not self.pipeline and self.flow is not None:
                self.flow.resume("pipeline")
            try:
                nxt.start()
            except Exception:
                # Called from the previous response's end (an upstream callback): a failure must
                # not unwind into it. The client loses this connection, not its answers so far.
                log.exception("starting %r failed", nxt)
                self.abort()
            return
        self._arm(self.proxy.settings.idle_timeout, self._on_idle)

    def close(self) -> None:
        self.flush()
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        self.wbuf.clear()
        self.batching = False
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    # -- timers: one lazily moved deadline per connection, so keep-alive requests do not each
    # schedule and cancel timer handles.

    def _arm(self, delay: float, cb: Any) -> None:
        if delay <= 0:
            self._deadline_cb = None
            return
        when = self.loop.time() + delay
        self._deadline, self._deadline_cb = when, cb
        if self._timer is None or self._timer_when > when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_when = when
            self._timer = self.loop.call_at(when, self._fire)

    def _disarm(self) -> None:
        self._deadline_cb = None

    def _cancel_timer(self) -> None:
        self._deadline_cb = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        cb = self._deadline_cb
        if cb is None or self.closed:
            return
        if self.loop.time() + 0.001 < self._deadline:
            self._timer_when = self._deadline
            self._timer = self.loop.call_at(self._deadline, self._fire)
            return
        self._deadline_cb = None
        cb()

    def _on_idle(self) -> None:
        if self.current is None and self.parsing is None:
            self.close()

    def _on_header_timeout(self) -> None:
        if self.current is None:
            x = self.parsing or Exchange(self, "GET", b"/", [])
            self.current = x
            x.close_after = True
            x.local_reply(408, flags="", details="request_header_timeout")

    def drain_idle(self) -> None:
        """During drain: close if nothing is in flight; otherwise the response carries Connection: close."""
        if self.current is None and self.parsing is None and self.tunnel is None:
            self.close()


_METHODS: Final = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
_METHOD_BYTES: Final = {m: b for b, m in _METHODS.items()}


_PORT_ROUTE: dict[str, str] = {}  # authority -> its port, the outbound route table's name


def _route_name_for(authority: str) -> str:
    """Outbound listeners pick the route table named after the authority's port (80 when
    absent), as Istio's per-port RouteConfigurations are named; remembered per authority."""
    name = _PORT_ROUTE.get(authority)
    if name is None:
        name = authority.rsplit(":", 1)[1] if authority.rfind(":") > authority.rfind("]") else "80"
        if len(authority) <= 256:  # bounded: at most 1024 short keys
            if len(_PORT_ROUTE) >= 1024:
                _PORT_ROUTE.clear()
            _PORT_ROUTE[authority] = name
    return name


def _detail(e: Exception) -> str:
    return str(e).replace(" ", "_")


def _strict_checks(x: Exchange) -> None:
    """Request-smuggling defences beyond what llhttp already enforces.

    The same single pass over the headers finds what the exchange needs from them: the Host
    (the authority of an origin-form request), x-request-id, peer metadata and Expect."""
    try:
        _header_pass(x)
    except _Reject:
        if not x.authority:  # the access log of a rejected request still shows its Host
            for name, value in x.req_headers:
                if name == b"host":
                    x.authority = value.decode("latin-1")
                    break
        raise


def _header_pass(x: Exchange) -> None:
    cl: bytes | None = None
    te = host = None
    for name, value in x.req_headers:
        # llhttp already rejects header names that are not RFC 9110 tokens and control characters in values.
        if name == b"content-length":
            v = value.strip()
            if not v.isdigit():
                raise _Reject(400, "http1.content_length_not_allowed")
            if cl is not None and cl != v:
                raise _Reject(400, "http1.content_length_not_allowed")
            cl = v
        elif name == b"transfer-encoding":
            if te is not None:
                te += b"," + value
            else:
                te = value
        elif name == b"host":
            if host is not None:
                raise _Reject(400, "http1.duplicate_host")
            host = value
            if not x.authority:
                x.authority = value.decode("latin-1")
                x.authority_raw = value
        elif name == b"x-request-id":
            x.request_id = value
        elif name == PEER_META:
            x.peer_header = value
        elif name == b"expect":
            x.expect_continue = value.lower() == b"100-continue" and not x.http10
    if te is not None:
        if cl is not None:
            raise _Reject(400, "http1.content_length_and_chunked_not_allowed")
        codings = [c.strip().lower() for c in te.split(b",")]
        if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
            raise _Reject(501, "http1.invalid_transfer_encoding")
        x.req_chunked = True
    elif cl is not None:
        x.req_length = int(cl)


# --- exchange ---------------------------------------------------------------------------------


class Exchange:
    """One request and its response; finished exactly once (metrics, access log, pool release)."""

    # Slots, not a __dict__: attribute reads and writes on the hot path are the cheap kind.
    __slots__ = (
        "authority",
        "authority_raw",
        "bytes_received",
        "bytes_sent",
        "close_after",
        "cluster",
        "cluster_name",
        "conn",
        "details",
        "done",
        "end_mono",
        "expect_continue",
        "extra_resp_headers",
        "flags",
        "head_sent",
        "host",
        "http10",
        "keep_alive",
        "method",
        "original_target",
        "path",
        "peer_header",
        "pending_body",
        "pending_bytes",
        "protocol",
        "proxy",
        "query",
        "req_chunked",
        "req_headers",
        "req_length",
        "request_done",
        "request_end_mono",
        "request_id",
        "resp_chunked",
        "resp_headers",
        "resp_no_body",
        "resp_until_close",
        "response_ops",
        "response_start_mono",
        "response_started",
        "route",
        "route_name",
        "start_mono",
        "started",
        "status",
        "target",
        "target_raw",
        "termination",
        "timeout",
        "timer",
        "upgrade_requested",
        "upgrading",
        "upstream",
        "upstream_failure",
        "upstream_host",
        "upstream_local",
        "upstream_start",
        "view",
    )

    def __init__(self, conn: DownstreamProtocol, method: str, url: bytes, headers: Headers) -> None:
        self.conn = conn
        self.proxy = conn.proxy
        self.method = method
        self.req_headers = headers
        self.start_mono = time.monotonic()
        self.pending_body: list[bytes] | None = None  # request body that arrived before the upstream
        self.request_end_mono = 0.0
        self.response_start_mono = 0.0
        self.end_mono = 0.0
        self.http10 = False
        self.keep_alive = True
        self.close_after = False
        self.req_chunked = False
        self.req_length: int | None = None
        self.request_done = False
        self.protocol = "HTTP/1.1"
        self.status = 0
        self.flags = ""
        self.details = ""
        self.termination = ""
        self.upstream_failure = ""
        self.bytes_received = 0
        self.bytes_sent = 0
        self.route: CompiledRoute | None = None
        self.route_name = ""
        self.cluster: ClusterState | None = None
        self.cluster_name = ""
        self.host: Host | None = None
        self.upstream_host = ""
        self.upstream_local = ""
        self.upstream: UpstreamProtocol | None = None
        self.pending_bytes = 0
        self.head_sent = False  # request head written upstream
        self.response_started = False
        self.resp_chunked = False
        self.resp_no_body = False
        self.resp_until_close = False  # the upstream's body ends when it closes (no length, not chunked)
        self.response_ops: HeaderOps | None = None
        self.extra_resp_headers: Sequence[tuple[bytes, bytes]] = ()
        self.resp_headers: Sequence[tuple[bytes, bytes]] = ()
        self.upgrading = False
        self.done = False
        self.started = False
        self.upstream_start = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timeout = 0.0
        self.peer_header: bytes | None = None
        self.view: RequestView | None = None
        self.upgrade_requested = False
        self.expect_continue = False
        self.original_target: str | None = None
        self.request_id: bytes | None = None
        # request-target pieces
        target = url.decode("latin-1")
        self.authority = ""
        if target.startswith(("http://", "https://")):
            # absolute-form, as $HTTP_PROXY clients send: the authority comes from the target
            rest = target.split("://", 1)[1]
            # the authority ends at the path or, when there is none, at the query
            end = next((i for i, c in enumerate(rest) if c in "/?"), len(rest))
            self.authority, target = rest[:end], rest[end:]
            if not target.startswith("/"):
                target = "/" + target
        self.target = target
        # The bytes as received, reused for the upstream request head while nothing rewrote them.
        self.target_raw: bytes | None = url if not self.authority else None
        self.authority_raw: bytes | None = None
        # An origin-form request's authority (its Host header) is filled in by _strict_checks.
        self.path, _, self.query = target.partition("?")

    @property
    def start_time(self) -> float:
        """Wall-clock start (the access log's START_TIME), from the monotonic start and the
        proxy's wall-clock offset refreshed every second: no time.time() per request."""
        return self.start_mono + self.proxy.wall_offset

    def __repr__(self) -> str:
        return f"<Exchange {self.method} {self.authority}{self.target} status={self.status} flags={self.flags or '-'}>"

    # -- request side

    def start(self) -> None:
        """Route the request; answer locally or begin forwarding."""
        self.started = True
        if self.http10:
            self.protocol = "HTTP/1.0"
        conn = self.conn
        if conn.admin:
            self.proxy.admin_request(self)
            return
        lc = self.proxy.snapshot.listeners.get(conn.listener_name) or conn.listener
        if lc is None:
            self.local_reply(404, "NR", "listener_not_found")
            return
        conn.listener = lc
        # x-request-id and peer metadata before routing, so header edits see them
        # (``_strict_checks`` already found both headers in its single pass over the request).
        if self.request_id is None:
            self.request_id = rid = _request_id()
            self.req_headers.append((b"x-request-id", rid))
        inbound = lc.direction == "INBOUND"
        if inbound:  # metadata exchange is between sidecars: the app never sees either header
            self.req_headers = [h for h in self.req_headers if h[0] not in _PEER]
        if lc.route_config_name is None and inbound:
            self._forward_to(lc.cluster or "", None)
            return
        name = lc.route_config_name
        if name is None:
            name = _route_name_for(self.authority)
        table = self.proxy.snapshot.routes.get(name)
        route: CompiledRoute | None = None
        vh = None
        if table is not None:
            vh, route = table.lookup(self.authority, self.path, self.request_view)
        if route is None:
            fallback = lc.cluster
            if fallback is None or vh is not None:
                self.local_reply(404, "NR", "route_not_found")
                return
            self.route_name = ""
            self._forward_to(fallback, None)
            return
        self.route = route
        self.route_name = route.name
        kind = route.kind
        if kind == "direct":
            self.response_ops = route.response_ops
            self.local_reply(route.direct_status, "", "direct_response", route.direct_body)
            return
        if kind == "redirect":
            loc = redirect_location(route, self.request_view()).encode("latin-1")
            self.response_ops = route.response_ops
            code = route.redirect.get("response_code", 301)
            self.local_reply(code, "", "redirect", b"", [(b"location", loc)])
            return
        if route.hash_policy:
            self.request_view()  # hash policies see the request as it arrived, before header edits
        targets = route.targets
        target = targets[0] if len(targets) == 1 else route.pick()
        if target.request_chain and self.view is not None:
            self.req_headers = list(self.req_headers)  # (edits that only add would append to the view's list)
        for ops in target.request_chain:
            self.req_headers = ops.apply(self.req_headers)
        self.response_ops = target.merged_response_ops
        if route.prefix_rewrite is not None or route.regex_rewrite is not None:
            rewritten = route.rewrite_path(self.path)
            if rewritten is not None:
                self.original_target = self.target
                self.req_headers.append((b"x-envoy-original-path", self.target.encode("latin-1")))
                self.path = rewritten
                self.target = rewritten + ("?" + self.query if self.query else "")
                self.target_raw = None
        if route.host_rewrite is not None:
            self.authority = route.host_rewrite
            self.authority_raw = None
        self.timeout = route.timeout
        self._forward_to(target.cluster, route)

    def request_view(self) -> RequestView:
        """What header, method and query matches and hash policies look at; built only when needed."""
        view = self.view
        if view is None:
            view = self.view = RequestView(
                self.method, self.path, self.query, self.authority, self.req_headers, self.conn.remote_ip
            )
        return view

    def _forward_to(self, cluster_name: str, route: CompiledRoute | None) -> None:
        snap = self.proxy.snapshot
        self.cluster_name = cluster_name
        cluster = snap.clusters.get(cluster_name)
        if cluster is None:
            self.local_reply(503, "NC", "cluster_not_found")
            return
        self.cluster = cluster
        if cluster_name == BLACKHOLE:
            # REGISTRY_ONLY: a host outside the registry has no route, so it gets Envoy's no-route
            # answer, 404 with NR (the metrics still name BlackHoleCluster as the destination).
            self.local_reply(404, "NR", "route_not_found")
            return
        original_dst = cluster.type == "ORIGINAL_DST"
        if original_dst:
            target = _split_host_port(self.authority)
            if target is None or not target[0]:
                self.local_reply(400, "", "invalid_authority")
                return
            host = Host(*target)
        else:
            key = self._hash_key(route) if route is not None and route.hash_policy else None
            chosen = cluster.balancer.choose(key)
            if chosen is None:
                self.local_reply(503, "UH", "no_healthy_upstream")
                return
            host = chosen
        self.host = host
        host.active += 1
        self.upstream_host = host.key
        cluster.stats.upstream_rq_total += 1
        lc = self.conn.listener
        if lc is not None and lc.direction != "INBOUND" and not original_dst:
            self.req_headers += self.proxy.peer_headers
        if self.expect_continue:
            self.conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        pool = host.pool
        if pool is None or pool.retired:
            pool = self.proxy.pool_for(host, cluster)
        conn = pool.acquire(self)
        if conn is not None:
            self.attach(conn)

    def _hash_key(self, route: CompiledRoute) -> bytes | None:
        for hp in route.hash_policy:
            if hp.kind == "header":
                v = self.request_view().header(hp.name.encode("latin-1"))
                if v is not None:
                    return v
            elif hp.kind == "source_ip":
                return self.conn.remote_ip.encode()
            elif hp.kind == "query_parameter":
                from urllib.parse import parse_qsl

                for k, qv in parse_qsl(self.query, keep_blank_values=True):
                    if k == hp.name:
                        return qv.encode()
            elif hp.kind == "cookie":
                v = _cookie(self.req_headers, hp.name)
                if v is not None:
                    return v
                if hp.ttl is not None:
                    # Envoy generates the cookie when a ttl is set, so the client sticks from now on.
                    value = f"{random.getrandbits(64):016x}".encode()
                    attrs = f"; Max-Age={int(hp.ttl)}" if hp.ttl else ""
                    if hp.path:
                        attrs += f"; Path={hp.path}"
                    cookie = hp.name.encode() + b'="' + value + b'"' + attrs.encode() + b"; HttpOnly"
                    self.extra_resp_headers = [*self.extra_resp_headers, (b"set-cookie", cookie)]
                    return value
        return None

    def attach(self, up: UpstreamProtocol) -> None:
        """An upstream connection is ours: send the request head and whatever body arrived so far."""
        if self.done:
            self.proxy.release(up, reusable=True)
            return
        self.upstream = up
        up.exchange = self
        self.upstream_local = up.local_addr
        self.upstream_start = time.monotonic()
        if self.conn.write_paused:
            up.flow_pause("downstream-write")
        target = self.target_raw
        if target is None:
            target = self.target.encode("latin-1")
        method = _METHOD_BYTES.get(self.method) or self.method.encode("latin-1")
        authority = self.authority_raw
        if authority is None:
            authority = self.authority.encode("latin-1")
        head, self.upgrading = request_head(
            method,
            target,
            authority,
            self.req_headers,
            self.upgrade_requested,
            self.req_chunked,
            self.req_length,
        )
        if self.conn.feeding and (self.req_length or self.req_chunked) and not up.batching:
            # The body may follow from the same read: head and body leave in one send.
            up.batching = True
            self.conn.dirty.append(up)
        up.write(head)
        self.head_sent = True
        if self.pending_body is not None:
            for chunk in self.pending_body:
                self._send_body(chunk)
            self.pending_body = None
        if self.pending_bytes:
            self.pending_bytes = 0
            if self.conn.flow is not None:
                self.conn.flow.resume("connecting")
        if self.request_done:
            self._finish_request_upstream()

    def request_body(self, chunk: bytes) -> None:
        self.bytes_received += len(chunk)
        if self.head_sent and self.upstream is not None:
            self._send_body(chunk)
        elif not self.done:
            if self.pending_body is None:
                self.pending_body = []
            self.pending_body.append(chunk)
            self.pending_bytes += len(chunk)
            if self.pending_bytes > HIGH_WATER and self.conn.flow is not None:
                self.conn.flow.pause("connecting")

    def _send_body(self, chunk: bytes) -> None:
        up = self.upstream
        assert up is not None
        if self.req_chunked:
            chunk = b"%x\r\n%b\r\n" % (len(chunk), chunk)
        self._upstream_write(up, chunk)

    def _upstream_write(self, up: UpstreamProtocol, data: bytes) -> None:
        conn = self.conn
        if conn.feeding:
            if not up.batching:
                up.batching = True
                conn.dirty.append(up)
            up.wbuf.append(data)
        else:
            up.write(data)

    def request_end(self) -> None:
        self.request_done = True
        self.request_end_mono = time.monotonic()
        if self.head_sent and self.req_chunked:
            self._finish_request_upstream()
        if self.timeout > 0 and not self.done and not self.upgrading:
            self.timer = self.conn.loop.call_later(self.timeout, self._on_timeout)

    def _finish_request_upstream(self) -> None:
        if self.req_chunked and self.upstream is not None and not self.upgrading:
            self._upstream_write(self.upstream, b"0\r\n\r\n")

    # -- response side

    def response_head(self, status: int, headers: Headers, up: UpstreamProtocol) -> None:
        self.status = status
        self.details = "via_upstream"
        self.response_start_mono = now = time.monotonic()
        if self.conn.closed:
            return
        # The upstream parser made this list for this response alone: the access log keeps it.
        # What the access log shows: the response as the route's edits left it (Envoy logs the
        # headers it sends), the upstream service time included.
        self.resp_headers = logged = headers
        line = _STATUS_LINE.get(status)
        conn = self.conn
        # While the downstream batches an upstream read, the head goes straight into its buffer.
        out = conn.wbuf if conn.batching else []
        out.append(line if line is not None else status_line(status))
        length: bytes | None = None
        chunked = False
        if self.response_ops is not None:
            # Framing is the upstream's, whatever the route's edits say about its headers.
            for k, v in headers:
                if k == b"content-length":
                    length = v
                elif k == b"transfer-encoding":
                    chunked = True
            self.resp_headers = logged = self.response_ops.apply(list(headers))
            for k, v in logged:
                if k not in _HOP_OR_PEER:
                    out += (k, b": ", v, b"\r\n")
        else:
            for k, v in headers:
                if k in _HOP_OR_PEER:
                    if k == b"content-length":
                        length = v
                    elif k == b"transfer-encoding":
                        chunked = True
                    continue
                out += (k, b": ", v, b"\r\n")
        for k, v in self.extra_resp_headers:
            out.append(k + b": " + v + b"\r\n")
        ms = int((now - self.upstream_start) * 1000)
        ust = _MILLIS[ms] if ms < 1000 else b"%d" % ms
        out += (b"x-envoy-upstream-service-time: ", ust, b"\r\n")
        logged.append((b"x-envoy-upstream-service-time", ust))
        if status == 101:
            out.append(b"connection: upgrade\r\n")
            for k, v in headers:
                if k == b"upgrade":
                    out.append(b"upgrade: " + v + b"\r\n")
        elif self.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self.resp_no_body = True
            if length is not None:
                out.append(b"content-length: " + length + b"\r\n")
        elif length is not None and not chunked:
            out.append(b"content-length: " + length + b"\r\n")
        elif self.http10:
            self.resp_until_close = not chunked
            self.close_after = True
        else:
            self.resp_chunked = True
            self.resp_until_close = not chunked
            out.append(b"transfer-encoding: chunked\r\n")
        if not self.keep_alive or self.close_after or self.proxy.draining:
            out.append(b"connection: close\r\n")
        elif self.http10:
            out.append(b"connection: keep-alive\r\n")
        out.append(b"\r\n")
        self.response_started = True
        if not conn.batching:
            conn.write(b"".join(out))

    def response_body(self, chunk: bytes) -> None:
        if self.resp_no_body or self.conn.closed:
            return
        self.bytes_sent += len(chunk)
        if self.resp_chunked:
            chunk = b"%x\r\n%b\r\n" % (len(chunk), chunk)
        conn = self.conn
        if conn.batching:
            conn.wbuf.append(chunk)
        else:
            conn.write(chunk)

    def response_end(self, reusable: bool) -> None:
        if self.done:
            return
        if self.resp_chunked and not self.conn.closed:
            self.conn.write(b"0\r\n\r\n")
        if not self.request_done:
            # Early response (e.g. 413 from the app): the rest of the body is not worth reading.
            self.close_after = True
            reusable = False
        self._finish(reusable)

    # -- failures

    def upstream_failed(self, flag: str, details: str, reason: str = "") -> None:
        """The upstream connection failed or closed before the response was complete."""
        if self.done:
            return
        self.upstream_failure = reason
        if not self.response_started:
            self.local_reply(503, flag, details, b"upstream connect error or disconnect/reset before headers. "
                             b"reset reason: " + details.encode())  # fmt: skip
        else:
            self.flags = flag
            self.details = details
            self.close_after = True
            self._finish(False)
            self.conn.abort()

    def downstream_lost(self) -> None:
        if self.done:
            return
        self.flags = "DC" if not self.flags else self.flags
        self.details = self.details or "downstream_remote_disconnect"
        self.termination = "downstream_remote_disconnect"
        if not self.response_started:
            self.status = 0
        self._finish(False)

    def _on_timeout(self) -> None:
        self.timer = None
        if self.done:
            return
        if not self.response_started:
            self.local_reply(504, "UT", "upstream_response_timeout", b"upstream request timeout")
        else:
            self.flags = "UT"
            self.details = "upstream_response_timeout"
            self.close_after = True
            self._finish(False)
            self.conn.abort()

    # -- local responses and the end

    def local_reply(
        self, status: int, flags: str, details: str, body: bytes | None = None, headers: Headers | None = None
    ) -> None:
        """A response generated by the proxy (errors, redirects, direct responses, admin pages)."""
        if self.done:
            return
        if self.response_started:
            # Too late for a status code: the client learns from the connection closing.
            self.flags = flags or self.flags
            self.details = details
            self.close_after = True
            self._finish(False)
            self.conn.abort()
            return
        self.status = status
        self.flags = flags
        self.details = details
        self.response_start_mono = time.monotonic()
        if body is None:
            body = HTTPStatus(status).phrase.encode() if status in HTTPStatus._value2member_map_ else b""
        hdrs: Headers = list(headers or [])
        if body and not any(k == b"content-type" for k, _ in hdrs):
            hdrs.append((b"content-type", b"text/plain"))
        if self.response_ops is not None:
            # the route's edits, but never framing or hop-by-hop headers: those are the proxy's
            hdrs = [h for h in self.response_ops.apply(hdrs) if h[0] not in _HOP_OR_PEER]
        hdrs.extend(self.extra_resp_headers)
        if not self.request_done and (self.req_length or self.req_chunked):
            self.close_after = True  # an unread body would be taken for the next request
        close = self.close_after or not self.keep_alive or self.proxy.draining
        if close:
            self.close_after = True
        head_only = self.method == "HEAD"
        if not head_only:
            self.bytes_sent = len(body)
        self.resp_headers = hdrs
        self.response_started = True
        self.conn.write(local_response(self.proxy, status, body, hdrs, close, head_only))
        self._finish(False)

    def _finish(self, reusable: bool) -> None:
        if self.done:
            return
        self.done = True
        self.end_mono = time.monotonic()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.host is not None:
            self.host.active -= 1
        up = self.upstream
        if up is not None and up.tunnel is None:
            self.upstream = None
            up.exchange = None
            up.pool.release(up, reusable and not self.close_after and self.request_done)
        conn = self.conn
        if self.pending_bytes:
            self.pending_body = None
            if conn.flow is not None:
                conn.flow.resume("connecting")
        if not conn.admin:
            try:
                self.proxy.record(self)
            except Exception:
                # Telemetry must never strand the connection: the next request still gets served.
                log.exception("recording %r failed", self)
        conn.exchange_done(self)

    def start_tunnel(self, up: UpstreamProtocol, rest: bytes) -> None:
        """After a 101: bytes flow both ways untouched until either side closes."""
        conn = self.conn
        conn.tunnel = up
        up.tunnel = conn
        self.upstream = None
        self._finish(False)
        if rest:
            conn.write(rest)
        for chunk in conn.tunnel_buffer:
            up.write(chunk)
        conn.tunnel_buffer.clear()


def request_head(
    method: bytes,
    target: bytes,
    authority: bytes,
    headers: Headers,
    upgrade_requested: bool,
    chunked: bool,
    length: int | None,
) -> tuple[bytes, bool]:
    """The upstream request head (both lanes): the headers in order but hop-by-hop ones, the first
    Host carrying ``authority`` (added last when absent), then the framing the proxy chose.
    Also says whether the request upgrades (a requested Upgrade that names a protocol)."""
    head = [method, b" ", target, b" HTTP/1.1\r\n"]
    upgrade = None
    has_host = False
    for k, v in headers:
        if k in _HOP:
            if k == b"upgrade":
                upgrade = v
            continue
        if k == b"host":
            if has_host:
                continue
            has_host = True
            v = authority
        head += (k, b": ", v, b"\r\n")
    if not has_host:
        head += (b"host: ", authority, b"\r\n")
    upgrading = False
    if upgrade is not None and upgrade_requested:
        upgrading = True
        head.append(b"connection: upgrade\r\nupgrade: " + upgrade + b"\r\n")
    elif chunked:
        head.append(b"transfer-encoding: chunked\r\n")
    elif length is not None:
        head.append(b"content-length: %d\r\n" % length)
    head.append(b"\r\n")
    return b"".join(head), upgrading


def local_response(
    proxy: Proxy, status: int, body: bytes, headers: Headers, close: bool, head_only: bool
) -> bytes:
    """A whole response made by the proxy itself (both lanes): status line, the given headers,
    length, Date and Envoy's server name, and the body unless the request was HEAD."""
    out = [status_line(status)]
    for k, v in headers:
        out.append(k + b": " + v + b"\r\n")
    out.append(b"content-length: %d\r\n" % len(body))
    out.append(proxy.date_header)
    out.append(b"server: istio-envoy\r\n")
    if close:
        out.append(b"connection: close\r\n")
    out.append(b"\r\n")
    if not head_only:
        out.append(body)
    return b"".join(out)


# Request ids are made 256 at a time: formatting one UUID in Python costs ~8k instructions (a
# dozen small bytes objects), while a batch is a handful of C-level operations over one buffer.
_ID_BATCH: Final = 256
_ID_VERSION: Final = bytes((b & 0x0F) | 0x40 for b in range(256))  # byte 6: version 4
_ID_VARIANT: Final = bytes((b & 0x3F) | 0x80 for b in range(256))  # byte 8: RFC 4122 variant (10xx)
_ID_TEMPLATE: Final = b"00000000-0000-0000-0000-000000000000 " * _ID_BATCH
# hex digit i of a UUID goes to this offset of its 37-byte slot (dashes at 8, 13, 18 and 23)
_ID_MOVES: Final = tuple((i, i + (i >= 8) + (i >= 12) + (i >= 16) + (i >= 20)) for i in range(32))
_ids: list[bytes] = []


def _request_id() -> bytes:
    """A random (version 4) UUID for x-request-id, as Envoy generates when the header is absent.

    Drawn from a batch made from os.urandom; the proxy never forks, so no two processes share
    a batch."""
    if not _ids:
        raw = bytearray(os.urandom(16 * _ID_BATCH))
        raw[6::16] = raw[6::16].translate(_ID_VERSION)
        raw[8::16] = raw[8::16].translate(_ID_VARIANT)
        hexed = binascii.hexlify(raw)
        out = bytearray(_ID_TEMPLATE)
        for src, dst in _ID_MOVES:
            out[dst::37] = hexed[src::32]
        _ids.extend(bytes(out).split())
    return _ids.pop()


def _cookie(headers: Headers, name: str) -> bytes | None:
    want = name.encode()
    for k, v in headers:
        if k == b"cookie":
            for part in v.split(b";"):
                n, _, val = part.strip().partition(b"=")
                if n == want:
                    return val.strip(b'"')
    return None


def _split_host_port(authority: str) -> tuple[str, int] | None:
    """``host[:port]`` or ``[v6][:port]`` of a passthrough request; None when it names no valid port."""
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "80"
    else:
        host, sep, port = authority.rpartition(":")
        if not sep:
            host, port = authority, "80"
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return None
    return host, int(port)


# --- upstream ---------------------------------------------------------------------------------


class UpstreamProtocol(_BatchedConnection):
    """A pooled connection to one endpoint; serves one exchange at a time."""

    __slots__ = (
        "_headers",
        "_reset_parser",
        "_skip",
        "_status",
        "exchange",
        "flow",
        "idle_since",
        "local_addr",
        "parser",
        "pool",
        "tunnel",
    )

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.flow: FlowControl | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.tunnel: DownstreamProtocol | None = None
        self.closed = False
        self.local_addr = ""
        self._headers: Headers = []
        self._status = 0
        self._skip = False  # an interim 1xx response
        self._reset_parser = False
        self.idle_since = 0.0  # loop time it went back to the pool; the proxy's sweep closes stale ones
        self.batching = False  # collecting writes while a downstream read is parsed
        self.wbuf: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport = transport
        self.flow = FlowControl(transport)
        transport.set_write_buffer_limits(high=HIGH_WATER)
        self.local_addr, _ = _addr(transport.get_extra_info("sockname"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.lost(self)
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        x = self.exchange
        if x is not None and exc is None and x.resp_until_close and x.response_started:
            self.exchange = None
            x.upstream = None
            x.response_end(False)  # a close-delimited body is complete at a clean EOF
        elif x is not None:
            self.exchange = None
            x.upstream = None
            x.upstream_failed("UC", "upstream_reset_before_response_started{connection_termination}"
                              if not x.response_started else "upstream_reset_after_response_started"
                              "{connection_termination}", "connection_termination")  # fmt: skip

    def pause_writing(self) -> None:
        x = self.exchange
        if x is not None and x.conn.flow is not None:
            x.conn.flow.pause("upstream-write")
        elif self.tunnel is not None and self.tunnel.flow is not None:
            self.tunnel.flow.pause("upstream-write")

    def resume_writing(self) -> None:
        x = self.exchange
        if x is not None and x.conn.flow is not None:
            x.conn.flow.resume("upstream-write")
        elif self.tunnel is not None and self.tunnel.flow is not None:
            self.tunnel.flow.resume("upstream-write")

    def flow_pause(self, reason: str) -> None:
        if self.flow is not None:
            self.flow.pause(reason)

    def flow_resume(self, reason: str) -> None:
        if self.flow is not None:
            self.flow.resume(reason)

    def close(self) -> None:
        self.flush()
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        x0 = self.exchange
        if x0 is None:
            # Bytes from an idle connection: the server broke keep-alive; never reuse it.
            self.close()
            return
        down = x0.conn
        down.batching = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            x = self.exchange
            offset = e.args[0] if e.args else len(data)
            if x is not None and x.upgrading and self._status == 101:
                self.exchange = None
                x.start_tunnel(self, data[offset:])
            elif x is not None:
                x.upstream_failed("UPE", "upstream_unexpected_upgrade", "protocol_error")
                self.close()
        except httptools.HttpParserError as e:
            x = self.exchange
            self.close()
            if x is not None:
                self.exchange = None
                x.upstream = None
                x.upstream_failed("UPE", "upstream_reset_before_response_started{protocol_error}", _detail(e))
        finally:
            down.flush()
        if self._reset_parser:
            self._reset_parser = False
            self.parser = httptools.HttpResponseParser(self)

    # -- parser callbacks

    # No on_message_begin: on_headers_complete hands the header list over and starts the next
    # one, which saves a Python callback per response.

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value.rstrip(b" \t")))  # as requests' (see above)

    def on_headers_complete(self) -> None:
        headers = self._headers
        self._headers = []
        self._status = code = self.parser.get_status_code()
        x = self.exchange
        self._skip = 100 <= code < 200 and code != 101
        if self._skip or x is None:
            return
        if code == 101 and not x.upgrading:
            return
        x.response_head(code, headers, self)
        if x.method == "HEAD":
            # httptools cannot be told the request was HEAD: end here, parse the next response afresh.
            self._reset_parser = True
            self.exchange = None
            x.response_end(True)

    def on_body(self, body: bytes) -> None:
        x = self.exchange
        if x is not None and not self._skip:
            x.response_body(body)

    def on_message_complete(self) -> None:
        # Trailer fields come through on_header after the head: dropped (as Envoy's HTTP/1 codec
        # does by default), never left to pass for the next response's headers.
        self._headers = []
        if self._skip:
            self._skip = False
            return
        x = self.exchange
        if x is not None and not (x.upgrading and self._status == 101):
            reusable = self.parser.should_keep_alive()
            self.exchange = None
            if not reusable:
                self.close()
            x.response_end(reusable)


# --- pool -------------------------------------------------------------------------------------


class Pool:
    """Keep-alive connections to one endpoint. State changes are synchronous; connects run as tasks."""

    __slots__ = (
        "active",
        "address",
        "bind_ip",
        "connecting",
        "idle",
        "idle_timeout",
        "port",
        "protocol",
        "proxy",
        "retired",
        "total_connections",
    )

    def __init__(
        self, proxy: Proxy, address: str, port: int, bind_ip: str | None, protocol: Any = None
    ) -> None:
        self.proxy = proxy
        # The connections' protocol class: UpstreamProtocol, or the fast lane's FastUpstream.
        self.protocol = protocol or UpstreamProtocol
        self.address, self.port = address, port
        self.bind_ip = bind_ip
        self.idle: list[UpstreamProtocol] = []
        self.active: set[UpstreamProtocol] = set()
        self.connecting = 0
        self.idle_timeout = 60.0
        self.total_connections = 0
        # Set when the proxy forgets this pool (it held no connection); a Host that cached it asks
        # the proxy for a registered pool instead, so no connection lives where the sweep cannot see it.
        self.retired = False

    def __repr__(self) -> str:
        return (
            f"<Pool {self.address}:{self.port} [Requests: {len(self.active)} active, {self.connecting} queued"
            f" | Connections: {len(self.active)} active, {len(self.idle)} idle]>"
        )

    def acquire(self, x: Exchange) -> UpstreamProtocol | None:
        while self.idle:
            up = self.idle.pop()
            if not up.closed and up.transport is not None and not up.transport.is_closing():
                self.active.add(up)
                return up
        self.connecting += 1
        cluster = x.cluster
        timeout = cluster.connect_timeout if cluster is not None else 10.0
        spawn(self._connect(x, timeout), name=f"connect {self.address}:{self.port}")
        return None

    async def _connect(self, x: Exchange, timeout: float) -> None:
        loop = self.proxy.loop
        try:
            local = (self.bind_ip, 0) if self.bind_ip else None
            try:
                _, up = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: self.protocol(self), self.address, self.port, local_addr=local
                    ),
                    timeout,
                )
            except OSError as e:
                if local is None or e.errno != errno.EADDRNOTAVAIL:
                    raise
                # The bind address is not local (e.g. a static bootstrap on another IP): connect unbound.
                _, up = await asyncio.wait_for(
                    loop.create_connection(lambda: self.protocol(self), self.address, self.port), timeout
                )
        # ValueError: a name the resolver cannot even encode (IDNA: a label over 63 characters), which
        # passthrough takes from the client's Host header; it must fail the request, not the task.
        except (OSError, TimeoutError, ValueError) as e:
            self.connecting -= 1
            if x.cluster is not None:
                x.cluster.stats.upstream_cx_connect_fail += 1
            if isinstance(e, TimeoutError):
                reason = "connection_timeout"
            elif isinstance(e, OSError):
                reason = _os_reason(e)
            else:
                reason = "delayed_connect_error:_invalid_host_name"
            x.upstream_failed("UF", "upstream_reset_before_response_started{connection_failure}", reason)
            return
        self.connecting -= 1
        self.total_connections += 1
        if x.cluster is not None:
            x.cluster.stats.upstream_cx_total += 1
        if x.done:
            self.release(up, True)
            return
        self.active.add(up)
        x.attach(up)

    def release(self, up: UpstreamProtocol, reusable: bool) -> None:
        self.active.discard(up)
        if not reusable or up.closed or self.proxy.draining:
            up.close()
            return
        up.idle_since = self.proxy.coarse_now  # the sweep runs once a second anyway
        self.idle.append(up)

    def lost(self, up: UpstreamProtocol) -> None:
        self.active.discard(up)
        if up in self.idle:
            self.idle.remove(up)

    @property
    def empty(self) -> bool:
        return not self.idle and not self.active and not self.connecting

    def sweep(self, now: float) -> None:
        """Close connections idle longer than the cluster's idle_timeout (oldest sit first)."""
        while self.idle and now - self.idle[0].idle_since >= self.idle_timeout:
            self.idle.pop(0).close()

    def close(self) -> None:
        for up in list(self.idle):
            up.close()
        self.idle.clear()


def _os_reason(e: OSError) -> str:
    name = errno.errorcode.get(e.errno or 0, "")
    text = (e.strerror or str(e) or name).replace(" ", "_")
    return f"delayed_connect_error:_{text}"


def encode_peer_metadata(meta: dict[str, Any]) -> bytes:
    """The value of x-envoy-peer-metadata: our node's workload attributes (base64 JSON, not protobuf)."""
    return base64.b64encode(json.dumps(meta, separators=(",", ":"), sort_keys=True).encode())


def decode_peer_metadata(value: bytes) -> dict[str, Any]:
    try:
        meta = json.loads(base64.b64decode(value, validate=True))
    except (ValueError, TypeError):
        return {}
    return meta if isinstance(meta, dict) else {}
