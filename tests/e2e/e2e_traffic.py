"""Traffic for the end-to-end tests: requests through a sidecar's outbound listener, as the app sends them.

The frontend app reaches other services through ``$HTTP_PROXY`` (its sidecar's outbound listener),
so sending absolute-form requests to that listener from the test is exactly the path the app's own
requests take. ``burst`` sends N requests with bounded concurrency; ``Paced`` sends at a fixed rate
(open loop, so a stall shows up as late or failed requests instead of a silently lower rate) on a
background thread while the test changes the mesh.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import aiohttp


@dataclass
class Reply:
    status: int  # 0: no response (connection error, timeout)
    version: str | None = None  # productcatalog's x-version header
    pod: str | None = None
    body: bytes = b""
    error: str | None = None
    at: float = 0.0  # monotonic time the request was sent


def _session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, force_close=False),
        timeout=aiohttp.ClientTimeout(total=10),
        trust_env=False,
        auto_decompress=False,
    )


async def _one(session: aiohttp.ClientSession, proxy: str, url: str, headers: dict[str, str] | None) -> Reply:
    at = time.monotonic()
    try:
        async with session.get(url, proxy=proxy, headers=headers or {}, allow_redirects=False) as resp:
            body = await resp.read()
            return Reply(
                resp.status, resp.headers.get("x-version"), resp.headers.get("x-pod-name"), body, at=at
            )
    except (TimeoutError, aiohttp.ClientError) as exc:
        return Reply(0, error=f"{type(exc).__name__}: {exc}", at=at)


async def _burst(
    proxy: str, url: str, n: int, headers: dict[str, str] | None, concurrency: int
) -> list[Reply]:
    out: list[Reply] = []
    async with _session(concurrency) as session:

        async def worker(count: int) -> None:
            for _ in range(count):
                out.append(await _one(session, proxy, url, headers))

        share = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
        await asyncio.gather(*(worker(c) for c in share if c))
    return out


def burst(
    proxy: str, url: str, n: int = 1, headers: dict[str, str] | None = None, concurrency: int = 8
) -> list[Reply]:
    """Send ``n`` GETs of ``url`` through ``proxy`` and return every reply."""
    return asyncio.run(_burst(proxy, url, n, headers, concurrency))


def get(proxy: str, url: str, headers: dict[str, str] | None = None) -> Reply:
    return burst(proxy, url, 1, headers, 1)[0]


class Paced:
    """``rate`` requests/s through ``proxy`` on a background thread until ``stop()``."""

    def __init__(self, proxy: str, url: str, rate: float) -> None:
        self.proxy, self.url, self.rate = proxy, url, rate
        self.replies: list[Reply] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Paced:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Reply]:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "load generator did not stop"
        return self.replies

    async def _run(self) -> None:
        async with _session(256) as session:
            pending: set[asyncio.Future[Reply]] = set()
            start = time.monotonic()
            i = 0
            while not self._stop.is_set():
                due = start + i / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                fut = asyncio.ensure_future(_one(session, self.proxy, self.url, None))
                pending.add(fut)
                fut.add_done_callback(lambda f: (pending.discard(f), self.replies.append(f.result())))
                i += 1
            if pending:
                await asyncio.wait(pending, timeout=15)
