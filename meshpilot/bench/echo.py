"""An echo server that understands Fortio's echo query arguments.

It is the target of the benchmarks and a fixture for tests that need a server whose latency, status
codes, sizes and headers are dialled in by the request itself:

``delay=10ms`` or ``delay=10ms:90,200ms:10``
    wait before answering (weighted entries: value:percent; the rest of the time, no delay).
    Capped at ``max_delay`` (1.5 s by default, as Fortio's ``-maxdelay``).
``status=503`` or ``status=503:5,429:1``
    answer with that status (weighted as above; otherwise 200).
``size=1024`` or ``size=1024:10,4096:5``
    answer with a body of that many bytes instead of echoing the request body.
``header=name:value`` (repeatable)
    add a response header.
``close=true`` or ``close=5``
    close the connection after the response (always, or that percentage of the time).
``stall=1s``
    block the whole server (event loop: accepts, every connection) for that long, then answer:
    a stop-the-world pause for coordinated-omission tests.

Anything else is echoed: the response body is the request body, with its content type.
The hot path is an ``asyncio.Protocol`` with httptools' request parser, as in the proxy.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl

import httptools

from meshpilot.bench.schedule import parse_duration

MAX_SIZE = 10 * 1024 * 1024
MAX_STALL = 60.0
TIMER_LEAD = 0.001  # delay= timers fire this early; a precise sleep covers the rest
_FILLER = (b"meshpilot-echo-" * (MAX_SIZE // 15 + 1))[:MAX_SIZE]
_REASONS = {s.value: s.phrase for s in HTTPStatus}


class BadArgument(ValueError):
    pass


def parse_weighted(text: str, parse: Any) -> list[tuple[Any, float]]:
    """``a:5,b:1`` -> [(a, 5.0), (b, 1.0)]; a single ``a`` means a at 100 %."""
    entries: list[tuple[Any, float]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        value_text, sep, weight_text = part.rpartition(":")
        if not sep:
            value_text, weight_text = part, "100"
        try:
            value = parse(value_text)
            weight = float(weight_text)
        except ValueError:
            raise BadArgument(f"invalid entry {part!r}") from None
        if not 0 <= weight <= 100:
            raise BadArgument(f"invalid percentage in {part!r}")
        entries.append((value, weight))
    if sum(w for _, w in entries) > 100.0 + 1e-9:
        raise BadArgument(f"percentages add up to more than 100 in {text!r}")
    return entries


def pick(entries: list[tuple[Any, float]], default: Any, rng: random.Random) -> Any:
    if not entries:
        return default
    if len(entries) == 1 and entries[0][1] >= 100:
        return entries[0][0]
    r = rng.random() * 100
    for value, weight in entries:
        if r < weight:
            return value
        r -= weight
    return default


def _status(text: str) -> int:
    code = int(text)
    if not 100 <= code <= 999:
        raise ValueError(text)
    return code


def _size(text: str) -> int:
    size = int(text)
    if not 0 <= size <= MAX_SIZE:
        raise ValueError(text)
    return size


class _Date:
    """The Date header, refreshed once a second by a tick rather than formatted per response."""

    value = formatdate(usegmt=True).encode()
    ticking: asyncio.AbstractEventLoop | None = None

    @classmethod
    def start(cls, loop: asyncio.AbstractEventLoop) -> None:
        if cls.ticking is not loop:
            cls.ticking = loop
            cls.refresh(loop)

    @classmethod
    def refresh(cls, loop: asyncio.AbstractEventLoop) -> None:
        if cls.ticking is not loop or loop.is_closed():
            return
        cls.value = formatdate(usegmt=True).encode()
        loop.call_later(1.0, cls.refresh, loop)


class EchoProtocol(asyncio.Protocol):
    def __init__(self, server: EchoServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.content_type = b""
        # responses in request order; [bytes, close-after, ready]
        self.queue: deque[list[Any]] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only duck-typed ones
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._bad(b"upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._bad(f"bad request: {exc}".encode())

    def _bad(self, message: bytes) -> None:
        if self.transport is not None:
            self.transport.write(self._head(400, len(message), b"text/plain", True, []) + message)
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []
        self.content_type = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.server.requests += 1
        keep_alive = self.parser.should_keep_alive()
        query = b""
        q = self.url.find(b"?")
        if q >= 0:
            query = self.url[q + 1 :]
        if not query:
            body = b"".join(self.body)
            head = self._head(200, len(body), self.content_type, not keep_alive, [])
            self._respond(head + body, not keep_alive, 0.0)
            return
        try:
            status, delay, size, headers, close, stall = self.server.decide(query.decode("latin-1"))
        except BadArgument as exc:
            message = f"bad echo argument: {exc}\n".encode()
            self._respond(self._head(400, len(message), b"text/plain", False, []) + message, False, 0.0)
            return
        if stall > 0:
            time.sleep(stall)  # blocks the event loop on purpose: the whole server stops
        close = close or not keep_alive
        if size is None:
            body = b"".join(self.body)
            ctype = self.content_type
        else:
            body = _FILLER[:size]
            ctype = b"application/octet-stream"
        self._respond(self._head(status, len(body), ctype, close, headers) + body, close, delay)

    def _head(
        self, status: int, length: int, ctype: bytes, close: bool, headers: list[tuple[str, str]]
    ) -> bytes:
        parts = [
            b"HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Length: %d\r\n"
            % (status, _REASONS.get(status, "Unknown").encode(), _Date.value, length)
        ]
        if ctype:
            parts.append(b"Content-Type: " + ctype + b"\r\n")
        if close:
            parts.append(b"Connection: close\r\n")
        for name, value in headers:
            parts.append(f"{name}: {value}\r\n".encode("latin-1"))
        parts.append(b"\r\n")
        return b"".join(parts)

    def _respond(self, data: bytes, close: bool, delay: float) -> None:
        entry = [data, close, delay <= 0]
        self.queue.append(entry)
        if delay > 0:
            due = time.perf_counter() + delay
            self.loop.call_later(max(delay - TIMER_LEAD, 0.0), self._ready, entry, due)
        else:
            self._flush()

    def _ready(self, entry: list[Any], due: float) -> None:
        # Loop timers are millisecond-grained (they fire up to ~1 ms early or late), but a delay=
        # must be neither shorter nor visibly longer than asked: the timer wakes us TIMER_LEAD
        # early and a short sleep finishes the wait. Sleeping, not spinning: a spinning process
        # is CPU-bound and a busy machine preempts it for whole time slices.
        remaining = due - time.perf_counter()
        if remaining > 2 * TIMER_LEAD:
            self.loop.call_later(remaining - TIMER_LEAD, self._ready, entry, due)
            return
        if remaining > 0:
            time.sleep(remaining)
        entry[2] = True
        self._flush()

    def _flush(self) -> None:
        queue = self.queue
        while queue and queue[0][2]:
            data, close, _ = queue.popleft()
            if self.transport is None:
                queue.clear()
                return
            self.transport.write(data)
            if close:
                self.transport.close()
                queue.clear()
                return


class EchoServer:
    """``await EchoServer(host, port).start()``; port 0 picks a free one (see ``.port``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, max_delay: float = 1.5) -> None:
        self.host = host
        self.port = port
        self.max_delay = max_delay
        self.requests = 0
        self.connections = 0
        self.rng = random.Random()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        _Date.start(loop)
        server = await loop.create_server(
            lambda: EchoProtocol(self), self.host, self.port, reuse_address=True, backlog=1024
        )
        self._server = server
        self.port = int(server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def decide(self, query: str) -> tuple[int, float, int | None, list[tuple[str, str]], bool, float]:
        status = 200
        delay = 0.0
        size: int | None = None
        headers: list[tuple[str, str]] = []
        close = False
        stall = 0.0
        rng = self.rng
        for name, value in parse_qsl(query, keep_blank_values=True):
            try:
                if name == "status":
                    status = pick(parse_weighted(value, _status), 200, rng)
                elif name == "delay":
                    delay = min(pick(parse_weighted(value, parse_duration), 0.0, rng), self.max_delay)
                elif name == "size":
                    size = pick(parse_weighted(value, _size), None, rng)
                elif name == "header":
                    hname, sep, hvalue = value.partition(":")
                    if not sep or not hname.strip() or any(c in value for c in "\r\n"):
                        raise BadArgument(f"header={value!r}: expected name:value")
                    headers.append((hname.strip(), hvalue.strip()))
                elif name == "close":
                    close = _close(value, rng)
                elif name == "stall":
                    stall = min(parse_duration(value), MAX_STALL)
            except BadArgument as exc:
                raise BadArgument(f"{name}: {exc}") from None
            except ValueError as exc:
                raise BadArgument(f"{name}={value!r}: {exc}") from None
        return status, delay, size, headers, close, stall


def _close(value: str, rng: random.Random) -> bool:
    lowered = value.strip().lower()
    if lowered in ("", "true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    percent = float(lowered)
    return rng.random() * 100 < percent


async def serve_forever(host: str, port: int, max_delay: float, announce: Any = print) -> None:
    server = EchoServer(host, port, max_delay)
    await server.start()
    announce(f"meshpilot echo server listening on http://{host}:{server.port}", flush=True)
    await asyncio.Event().wait()
