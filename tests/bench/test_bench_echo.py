"""The echo server over real sockets: Fortio's query arguments, pipelining order, stalls."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from bench_helpers import EchoProcess, echo  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def client(echo: EchoProcess) -> httpx.Client:  # noqa: F811
    with httpx.Client(base_url=echo.url, timeout=10, trust_env=False) as c:
        yield c  # type: ignore[misc]


def test_echoes_body_and_content_type(client: httpx.Client) -> None:
    r = client.post("/anything", content=b"hello mesh", headers={"Content-Type": "text/x-test"})
    assert r.status_code == 200
    assert r.content == b"hello mesh"
    assert r.headers["content-type"] == "text/x-test"
    assert "date" in r.headers


def test_status_size_and_headers(client: httpx.Client) -> None:
    r = client.get(
        "/echo", params=[("status", "418"), ("size", "1234"), ("header", "X-One:1"), ("header", "X-Two: two")]
    )
    assert r.status_code == 418
    assert len(r.content) == 1234
    assert r.headers["x-one"] == "1"
    assert r.headers["x-two"] == "two"


def test_weighted_status_list(client: httpx.Client) -> None:
    codes = [client.get("/", params={"status": "503:30,429:20"}).status_code for _ in range(400)]
    share_503 = codes.count(503) / len(codes)
    share_429 = codes.count(429) / len(codes)
    assert 0.18 < share_503 < 0.42
    assert 0.10 < share_429 < 0.30
    assert set(codes) == {200, 503, 429}


def test_delay_is_never_shorter_than_asked(client: httpx.Client) -> None:
    for _ in range(5):
        start = time.perf_counter()
        client.get("/", params={"delay": "30ms"})
        assert time.perf_counter() - start >= 0.030


def test_weighted_delay_list(client: httpx.Client) -> None:
    slow = 0
    for _ in range(40):
        start = time.perf_counter()
        client.get("/", params={"delay": "60ms:50"})
        slow += time.perf_counter() - start >= 0.060
    assert 8 <= slow <= 32


def test_close_closes_the_connection(echo: EchoProcess) -> None:  # noqa: F811
    with socket.create_connection(("127.0.0.1", echo.port), timeout=5) as s:
        s.sendall(b"GET /?close=true HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close\r\n" in data


def test_pipelined_responses_keep_request_order(echo: EchoProcess) -> None:  # noqa: F811
    with socket.create_connection(("127.0.0.1", echo.port), timeout=5) as s:
        s.sendall(
            b"GET /?delay=50ms&status=201 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /?status=202 HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b"HTTP/1.1 ") < 2 and time.monotonic() < deadline:
            data += s.recv(65536)
    assert data.index(b"HTTP/1.1 201") < data.index(b"HTTP/1.1 202")


@pytest.mark.parametrize("query", ["status=abc", "delay=fast", "size=-1", "header=novalue", "status=503:150"])
def test_bad_arguments_get_a_400_with_the_reason(client: httpx.Client, query: str) -> None:
    r = client.get("/?" + query)
    assert r.status_code == 400
    assert r.text.startswith("bad echo argument: ")


def test_stall_blocks_the_whole_server(echo: EchoProcess, client: httpx.Client) -> None:  # noqa: F811
    stalled = threading.Thread(target=lambda: client.get("/", params={"stall": "1s"}))
    stalled.start()
    time.sleep(0.2)
    start = time.perf_counter()
    with httpx.Client(timeout=10, trust_env=False) as other:  # another connection, same server
        assert other.get(echo.url).status_code == 200
    waited = time.perf_counter() - start
    stalled.join(10)
    assert waited >= 0.6
