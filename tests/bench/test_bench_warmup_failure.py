"""A run whose warmup fails on one worker ends promptly: the workers that are already waiting for
the start signal are told to stop instead of each being given 2 s to exit and then killed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from meshpilot.bench.loadgen import LoadError, LoadOptions, run_load

WORKERS = 3


class LastConnectionRefused:
    """HTTP on 127.0.0.1 that answers every request, except that its ``WORKERS``-th connection is
    closed at once, so the last worker to connect fails its warmup after the others are ready."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.failed_at: float | None = None
        self.closing = False
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        accepted = 0
        while not self.closing and accepted < 50:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            accepted += 1
            if accepted == WORKERS:
                self.failed_at = time.monotonic()
                conn.close()
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        buffered = b""
        with conn:
            for _ in range(1000):
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffered += data
                while b"\r\n\r\n" in buffered:
                    _, buffered = buffered.split(b"\r\n\r\n", 1)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def close(self) -> None:
        self.closing = True
        self.listener.close()
        self.acceptor.join(timeout=5)
        for thread in self.threads:
            thread.join(timeout=5)


@pytest.fixture
def target() -> Iterator[LastConnectionRefused]:
    server = LastConnectionRefused()
    yield server
    server.close()


def test_a_warmup_failure_ends_the_run_without_waiting_on_ready_workers(
    target: LastConnectionRefused,
) -> None:
    opts = LoadOptions(
        url=f"http://127.0.0.1:{target.port}/", connections=WORKERS, workers=WORKERS, duration=5, timeout=3
    )
    with pytest.raises(LoadError):
        run_load(opts)
    ended = time.monotonic()
    assert target.failed_at is not None
    # before the fix each of the two ready workers cost 2 s (join timeout, then kill)
    assert ended - target.failed_at < 1.5, ended - target.failed_at
