"""A raw-socket HTTP/1.1 upstream for the fast-lane tests: every byte it sends is chosen by the test.

aiohttp (``proxy_upstream``) always frames its responses well. The fast lane's response side is
about the framings a real server may pick and the ways it may misbehave: chunks split across
reads, a body ended by closing, interim 1xx responses, hop-by-hop headers, garbage, a close in the
middle of a body. This server writes those byte for byte, records every request as it arrived on
the wire (header names in their original case), and counts its connections.

It runs on its own event loop in a daemon thread (``RawUpstream.start``), so tests drive it with
no extra process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import random
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

BIG_BLOCK = 1 << 20
_BASE_BLOCK = random.Random(20240611).randbytes(BIG_BLOCK)

# /chunked's body and the awkward pieces it is written in: sizes and CRLFs split across writes,
# a chunk extension and a trailer, so the proxy's chunk scanner sees every state at a read boundary.
CHUNKED_BODY = b"hello" + b"0123456789" * 30 + b"!"
_CHUNKED_PIECES = (
    b"5\r\nhel",
    b"lo\r\n1",
    b"2c;ext=1\r\n" + b"0123456789" * 30,
    b"\r",
    b"\n1\r\n!\r\n0\r\n",
    b"x-trailer: t\r\n",
    b"\r\n",
)


# Every request any RawUpstream receives takes the next number: the order across upstreams.
_ARRIVALS = itertools.count(1)


def big_block(k: int) -> bytes:
    """Block ``k`` of /big's body: each 1 MiB block differs, so a lost or repeated block shows."""
    return k.to_bytes(8, "big") + _BASE_BLOCK[8:]


def big_digest(n: int) -> str:
    h = hashlib.sha256()
    k = 0
    while n > 0:
        block = big_block(k)[: min(n, BIG_BLOCK)]
        h.update(block)
        n -= len(block)
        k += 1
    return h.hexdigest()


@dataclass
class Seen:
    """One request as the upstream received it."""

    method: str
    target: str
    headers: list[tuple[str, str]]  # names and values exactly as sent (but the OWS after the colon)
    body: bytes
    conn: int  # the upstream connection's serial number (1, 2, ...)
    arrival: int = 0  # the order of arrival across all upstreams (``_ARRIVALS``)

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]


class RawUpstream:
    def __init__(self, name: str, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.port = 0
        self.seen: list[Seen] = []
        self.connections = 0
        self.big_sent = 0  # body bytes /big has handed to its transport so far
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, name=f"raw-upstream-{name}", daemon=True)
        self._ready = threading.Event()

    # -- lifecycle

    def start(self) -> RawUpstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("raw upstream did not start")
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def boot() -> None:
            self._server = await asyncio.start_server(self._accept, self.host, 0, limit=1 << 20)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self.loop.run_until_complete(boot())
        self.loop.run_forever()
        self.loop.close()

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if urlsplit(s.target).path == path]

    # -- serving

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        conn = self.connections
        try:
            while True:
                req = await _read_request(reader, conn)
                if req is None:
                    return
                self.seen.append(req)
                keep = await self._respond(req, writer)
                if not keep or any(v.lower() == "close" for v in req.header("connection")):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        except asyncio.CancelledError:
            return  # stop(): the end of this connection's task, nothing to report
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, req: Seen, w: asyncio.StreamWriter) -> bool:
        """Write the response ``req`` asks for; False when the connection must close after it."""
        url = urlsplit(req.target)
        path, q = url.path, {k: v[0] for k, v in parse_qs(url.query).items()}
        head_only = req.method == "HEAD"
        tag = f"x-upstream: {self.name}\r\nx-upstream-conn: {req.conn}\r\n".encode()
        if path == "/chunked":
            w.write(b"HTTP/1.1 200 OK\r\n" + tag + b"Transfer-Encoding: chunked\r\n\r\n")
            pieces = (*_CHUNKED_PIECES[:-2], b"\r\n") if q.get("notrailer") else _CHUNKED_PIECES
            for piece in pieces:
                await w.drain()
                await asyncio.sleep(0.01)  # each piece its own read at the proxy
                w.write(piece)
            await w.drain()
            return True
        if path == "/close":
            n = int(q.get("n", "50000"))
            close = b"Connection: close\r\n" if q.get("hdr") else b""
            w.write(b"HTTP/1.1 200 OK\r\n" + tag + b"Content-Type: text/plain\r\n" + close + b"\r\n")
            for i in range(0, n, 16384):
                await w.drain()
                await asyncio.sleep(0.005)
                w.write(b"c" * min(16384, n - i))
            await w.drain()
            return False  # the body ends when this connection does
        if path == "/head":
            body = b"" if head_only else b"h" * 1234
            w.write(b"HTTP/1.1 200 OK\r\n" + tag + b"Content-Length: 1234\r\n\r\n" + body)
            return True
        if path == "/status/204":
            w.write(b"HTTP/1.1 204 No Content\r\n" + tag + b"\r\n")
            return True
        if path == "/status/304":
            w.write(b"HTTP/1.1 304 Not Modified\r\n" + tag + b'ETag: "v1"\r\nContent-Length: 10\r\n\r\n')
            return True
        if path == "/interim":
            interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
            final = b"HTTP/1.1 200 OK\r\n" + tag + b"Content-Length: 5\r\n\r\nfinal"
            if q.get("split"):
                w.write(interim)
                await w.drain()
                await asyncio.sleep(0.05)  # the final response in a later read than the 1xx
                w.write(final[:20])
                await w.drain()
                await asyncio.sleep(0.05)  # and its head split across reads too
                w.write(final[20:])
            else:
                w.write(interim + final)
            return True
        if path == "/hop":
            w.write(
                b"HTTP/1.1 200 OK\r\n" + tag + b"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
                b"Proxy-Connection: keep-alive\r\nX-Envoy-Peer-Metadata: leak\r\n"
                b"X-Envoy-Peer-Metadata-Id: leak\r\nX-Custom: kept\r\nContent-Length: 3\r\n\r\nhop"
            )
            return True
        if path == "/split-head":
            w.write(b"HTTP/1.1 200 OK\r\n" + tag + b"Content-")
            await w.drain()
            await asyncio.sleep(0.05)
            w.write(b"Length: 5\r\n\r\nsplit")
            return True
        if path == "/garbage":
            w.write(b"THIS IS NOT HTTP\r\n\r\n")
            await w.drain()
            return False
        if path == "/die":
            w.write(b"HTTP/1.1 200 OK\r\n" + tag + b"Content-Length: 100000\r\n\r\n" + b"y" * 1000)
            await w.drain()
            return False  # closes with 99000 bytes of the body never sent
        if path == "/big":
            n = int(q.get("n", "0"))
            w.write(b"HTTP/1.1 200 OK\r\n" + tag + b"Content-Length: %d\r\n\r\n" % n)
            k = 0
            left = n
            while left > 0:
                block = big_block(k)[: min(left, BIG_BLOCK)]
                w.write(block)
                left -= len(block)
                k += 1
                await w.drain()  # flow control: a proxy that stops reading stops this loop
                self.big_sent += len(block)
            return True
        if "sleep" in q:
            await asyncio.sleep(float(q["sleep"]))  # a slow application (route timeouts, DC)
        return await self._echo(req, w, tag, head_only)

    async def _echo(self, req: Seen, w: asyncio.StreamWriter, tag: bytes, head_only: bool) -> bool:
        info = {
            "upstream": self.name,
            "method": req.method,
            "target": req.target,
            "headers": req.headers,
            "body_len": len(req.body),
            "body_sha": hashlib.sha256(req.body).hexdigest(),
        }
        body = json.dumps(info).encode()
        w.write(
            b"HTTP/1.1 200 OK\r\n"
            + tag
            + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + (b"" if head_only else body)
        )
        await w.drain()
        return True


async def _read_request(reader: asyncio.StreamReader, conn: int) -> Seen | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head[:-4].decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    # Trailing whitespace is kept: whether a proxy trims it is part of what it forwards.
    headers = [(k, v.lstrip(" \t")) for k, _, v in (line.partition(":") for line in lines[1:])]
    lowered = {k.lower(): v for k, v in headers}
    body = b""
    if lowered.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailer lines
                break
            body += (await reader.readexactly(size + 2))[:-2]
    elif "content-length" in lowered:
        body = await reader.readexactly(int(lowered["content-length"]))
    return Seen(method, target, headers, body, conn, next(_ARRIVALS))
