"""Fixtures for the cluster tests.

``apiserver``: an in-process API server on 127.0.0.1 (free port) over an in-memory store, served
from a background thread's event loop so that synchronous clients (lightkube, ``Client``) can
talk to it from the test thread. Module-scoped: tests create objects under unique names.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshpilot.cluster.apiserver import ApiServer
from meshpilot.cluster.daemon import bootstrap
from meshpilot.cluster.state import ClusterInfo
from meshpilot.store import Store

TOKEN = "test-token-0123456789"


@dataclass
class InProcessApi:
    url: str
    token: str
    store: Store
    info: ClusterInfo
    server: ApiServer


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApi]:
    state_dir: Path = tmp_path_factory.mktemp("apiserver")
    info = ClusterInfo(name="inproc", index=1, state_dir=state_dir, token=TOKEN, mesh=False)
    store = Store(None)
    bootstrap(store, info)
    server = ApiServer(store, info)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        port.append(loop.run_until_complete(server.start("127.0.0.1", 0)))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="apiserver", daemon=True)
    thread.start()
    assert started.wait(10), "API server did not start"
    try:
        yield InProcessApi(f"http://127.0.0.1:{port[0]}", TOKEN, store, info, server)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        store.close()
