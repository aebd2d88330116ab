"""A real upstream for the proxy tests: an aiohttp server with the behaviours the tests need.

Runs in a background thread with its own loop (``start_upstream``) so tests drive it with no
extra process; every response says which instance answered (``x-upstream``).
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web


@dataclass
class Upstream:
    name: str
    host: str
    port: int
    loop: asyncio.AbstractEventLoop
    runner: web.AppRunner
    thread: threading.Thread
    seen: list[dict[str, Any]] = field(default_factory=list)

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop)
        fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _app(up: dict[str, Any]) -> web.Application:
    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        info = {
            "upstream": up["name"],
            "method": request.method,
            "path": request.path_qs,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "header_list": [[k.lower(), v] for k, v in request.headers.items()],
            "body_len": len(body),
            "peer": request.transport.get_extra_info("peername")[0] if request.transport else "",
        }
        up["seen"].append(info)
        return web.json_response(info, headers={"x-upstream": up["name"], "x-app": "echo"})

    async def upload(request: web.Request) -> web.StreamResponse:
        n = 0
        async for chunk in request.content.iter_chunked(65536):
            n += len(chunk)
        return web.json_response({"upstream": up["name"], "received": n}, headers={"x-upstream": up["name"]})

    async def big(request: web.Request) -> web.StreamResponse:
        n = int(request.query.get("n", "0"))
        resp = web.StreamResponse(headers={"x-upstream": up["name"]})
        if request.query.get("cl"):
            resp.content_length = n
        await resp.prepare(request)
        block = b"x" * 65536
        left = n
        while left > 0:
            await resp.write(block[: min(left, len(block))])
            left -= min(left, len(block))
        await resp.write_eof()
        return resp

    async def status(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=int(request.match_info["code"]), text="status\n", headers={"x-upstream": up["name"]}
        )

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(float(request.query.get("s", "1")))
        return web.Response(text="slow\n", headers={"x-upstream": up["name"]})

    async def die(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"x-upstream": up["name"]})
        resp.content_length = 100000
        await resp.prepare(request)
        await resp.write(b"y" * 1000)
        assert request.transport is not None
        request.transport.abort()
        return resp

    async def die_before(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        return web.Response(text="never")

    async def ws(request: web.Request) -> web.StreamResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == WSMsgType.TEXT:
                await sock.send_str(f"{up['name']}:{msg.data}")
        return sock

    app = web.Application(client_max_size=1 << 31)
    app.router.add_route("*", "/upload", upload)
    app.router.add_get("/big", big)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/die", die)
    app.router.add_get("/die-before", die_before)
    app.router.add_get("/ws", ws)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def start_upstream(name: str, host: str = "127.0.0.1", port: int = 0) -> Upstream:
    loop = asyncio.new_event_loop()
    state: dict[str, Any] = {"name": name, "seen": []}
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            runner = web.AppRunner(_app(state), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, host, port)
            await site.start()
            box["runner"] = runner
            box["port"] = runner.addresses[0][1]
            ready.set()

        loop.run_until_complete(boot())
        loop.run_forever()
        loop.close()

    t = threading.Thread(target=run, name=f"upstream-{name}", daemon=True)
    t.start()
    if not ready.wait(10):
        raise RuntimeError("upstream did not start")
    up = Upstream(name, host, box["port"], loop, box["runner"], t)
    up.seen = state["seen"]
    return up


if __name__ == "__main__":
    import sys

    u = start_upstream(
        sys.argv[1] if len(sys.argv) > 1 else "up", port=int(sys.argv[2]) if len(sys.argv) > 2 else 0
    )
    print(json.dumps({"port": u.port}), flush=True)
    u.thread.join()
