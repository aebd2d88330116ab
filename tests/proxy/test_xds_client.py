"""The proxy against a small fake control plane: ACK, NACK keeps the old config, live listener
changes, surviving the control plane's death and resyncing; plus bootstrap errors and SIGTERM drain."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import pytest
from proxy_harness import ROOT, ProxyProcess, free_port, node, static_cluster
from proxy_upstream import start_upstream

from meshpilot.xds import stream
from meshpilot.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE


class FakeControlPlane:
    """Accepts proxy streams on a port, records every DiscoveryRequest, pushes on demand."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.requests: list[dict[str, Any]] = []
        self.conn: socket.socket | None = None
        self.lock = threading.Lock()
        self.streams = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        self._n = 0

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conn = conn
                self.streams += 1
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                with self.lock:
                    self.requests.append(stream.decode(line))

    def push(self, type_url: str, version: str, resources: list[Any]) -> str:
        self._n += 1
        nonce = f"n{self._n}"
        msg = {"type_url": type_url, "version_info": version, "nonce": nonce, "resources": resources}
        assert self.conn is not None
        self.conn.sendall(stream.encode(msg))
        return nonce

    def wait(self, pred, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for r in self.requests:
                    if pred(r):
                        return r
            time.sleep(0.02)
        raise TimeoutError(f"no matching request in {self.requests}")

    def wait_streams(self, n: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.streams < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.streams >= n

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in the thread
        self.sock.close()
        self.thread.join(5)
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)
            self.conn.close()


def ack_of(nonce: str):
    return lambda r: r.get("response_nonce") == nonce and "error_detail" not in r


def nack_of(nonce: str):
    return lambda r: r.get("response_nonce") == nonce and "error_detail" in r


def outbound(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "address": "127.0.0.1",
        "port": port,
        "traffic_direction": "OUTBOUND",
        "cluster": "BlackHoleCluster",
    }


def routes(cluster: str, regex: str | None = None) -> list[dict[str, Any]]:
    match = {"safe_regex": regex} if regex else {"prefix": "/"}
    return [
        {
            "name": "80",
            "virtual_hosts": [
                {
                    "name": "svc",
                    "domains": ["svc"],
                    "routes": [{"name": "r", "match": match, "route": {"cluster": cluster}}],
                }
            ],
        }
    ]


@pytest.fixture(scope="module")
def ups():
    a, b = start_upstream("a"), start_upstream("b")
    yield a, b
    a.stop()
    b.stop()


def test_ack_nack_live_listeners_and_control_plane_restart(ups):
    a, b = ups
    cp = FakeControlPlane()
    p1, p2 = free_port(), free_port()
    proxy = ProxyProcess({"node": node("productpage"), "discovery_address": f"127.0.0.1:{cp.port}"})
    try:
        first = cp.wait(lambda r: r.get("type_url") == CLUSTER_TYPE)
        assert first["node"]["id"].startswith("sidecar~127.0.0.1~productpage")
        for t in (ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE):
            cp.wait(lambda r, t=t: r.get("type_url") == t)
        assert proxy.get("/ready").status_code == 503  # not before the first full configuration

        clusters = [static_cluster("a", [(a.host, a.port)]), static_cluster("b", [(b.host, b.port)])]
        cp.wait(ack_of(cp.push(CLUSTER_TYPE, "v1", clusters)))
        cp.wait(ack_of(cp.push(ENDPOINT_TYPE, "v1", [])))
        lds = cp.push(LISTENER_TYPE, "v1", [outbound("out1", p1)])
        ack = cp.wait(ack_of(lds))
        assert ack["version_info"] == "v1" and ack["type_url"] == LISTENER_TYPE
        cp.wait(ack_of(cp.push(ROUTE_TYPE, "v1", routes("a"))))
        proxy.wait_ready()

        c1 = httpx.Client(proxy=f"http://127.0.0.1:{p1}", timeout=5)
        assert c1.get("http://svc/").headers["x-upstream"] == "a"

        # A bad push is NACKed with the reason; the old routes keep serving.
        nack = cp.wait(nack_of(cp.push(ROUTE_TYPE, "v2", routes("b", regex="(["))))
        assert nack["version_info"] == "v1" and nack["error_detail"]["code"] == 3
        assert "invalid regex" in nack["error_detail"]["message"]
        assert c1.get("http://svc/").headers["x-upstream"] == "a"
        dump = proxy.get("/config_dump").json()
        assert dump["xds"]["RDS"]["state"] == "NACKED" and dump["xds"]["RDS"]["version"] == "v1"
        rds = next(c for c in dump["configs"] if c["@type"].endswith("RoutesConfigDump"))
        assert rds["dynamic_route_configs"][0]["version_info"] == "v1"

        # A field of the wrong JSON type is a NACK as well, and the stream stays up for what follows.
        bad = {**static_cluster("a", [(a.host, a.port)]), "metadata": {"istio": "not-an-object"}}
        nack = cp.wait(nack_of(cp.push(CLUSTER_TYPE, "v-bad", [bad])))
        assert nack["version_info"] == "v1" and "malformed resource" in nack["error_detail"]["message"]

        # A listener that cannot bind is a NACK too (the port is taken by a foreign socket).
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cp.wait(
            nack_of(
                cp.push(LISTENER_TYPE, "v-bad", [outbound("out1", p1), outbound("x", taken.getsockname()[1])])
            )
        )
        taken.close()

        # Good pushes apply: new routes, and a listener added while the old one's connections live on.
        cp.wait(ack_of(cp.push(ROUTE_TYPE, "v3", routes("b"))))
        assert c1.get("http://svc/").headers["x-upstream"] == "b"
        cp.wait(ack_of(cp.push(LISTENER_TYPE, "v2", [outbound("out1", p1), outbound("out2", p2)])))
        c2 = httpx.Client(proxy=f"http://127.0.0.1:{p2}", timeout=5)
        assert c2.get("http://svc/").status_code == 200
        cp.wait(ack_of(cp.push(LISTENER_TYPE, "v3", [outbound("out2", p2)])))
        assert c1.get("http://svc/").status_code == 200  # kept-alive connection on the removed listener
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{p1}/", headers={"host": "svc"}, timeout=2)

        # The control plane dies: traffic continues on the last good configuration.
        cp.stop()
        for _ in range(20):
            assert c2.get("http://svc/").status_code == 200
        # It comes back on the same address: the proxy resubscribes and reports what it holds.
        cp2 = FakeControlPlane(cp.port)
        try:
            again = cp2.wait(lambda r: r.get("type_url") == ROUTE_TYPE, timeout=15)
            assert again["version_info"] == "v3"
            assert cp2.wait(lambda r: "node" in r)["node"]["id"] == first["node"]["id"]
            cp2.wait(ack_of(cp2.push(ROUTE_TYPE, "v4", routes("a"))))
            assert c2.get("http://svc/").headers["x-upstream"] == "a"
        finally:
            cp2.stop()
        c1.close()
        c2.close()
    finally:
        proxy.stop()
        cp.stop()


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "bootstrap.json"),
        (
            json.dumps({"static_resources": {"clusters": [{"name": "x", "type": "BOGUS"}]}}),
            "cluster 'x'.type",
        ),
        (json.dumps({"proxy_settings": {"header_timeout": "soon"}}), "proxy_settings.header_timeout"),
    ],
)
def test_bad_bootstrap_is_one_line_and_nonzero(tmp_path, content, message):
    path = tmp_path / "bootstrap.json"
    path.write_text(content)
    admin = free_port()
    path_json = content
    if content.startswith('{"'):
        boot = json.loads(content)
        boot.update({"ip": "127.0.0.1", "admin": {"port": admin}, "stats": None})
        path_json = json.dumps(boot)
    path.write_text(path_json)
    res = subprocess.run(
        [sys.executable, "-m", "meshpilot.proxy", "--bootstrap", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.startswith("meshpilot-proxy:")]
    assert len(lines) == 1 and message in lines[0], res.stderr


def test_missing_discovery_address_in_sidecar_mode():
    env = {
        "PATH": "/usr/bin:/bin",
        "POD_NAME": "p",
        "POD_NAMESPACE": "default",
        "INSTANCE_IP": "127.0.0.1",
        "PROXY_CONFIG": "{}",
    }
    res = subprocess.run(
        [sys.executable, "-m", "meshpilot.proxy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2 and "discoveryAddress" in res.stderr


def test_sigterm_drains_in_flight_requests_then_exits(ups):
    a, _ = ups
    port = free_port()
    boot = {
        "node": node("drainer"),
        "proxy_settings": {"drain_timeout": 5},
        "static_resources": {
            "listeners": [outbound("out", port)],
            "routes": routes("a"),
            "clusters": [static_cluster("a", [(a.host, a.port)])],
        },
    }
    proxy = ProxyProcess(boot).wait_ready()
    result: dict[str, Any] = {}

    def slow() -> None:
        try:
            result["r"] = httpx.get(f"http://127.0.0.1:{port}/slow?s=1", headers={"host": "svc"}, timeout=10)
        except httpx.HTTPError as e:
            result["e"] = e

    t = threading.Thread(target=slow)
    t.start()
    deadline = time.monotonic() + 5
    while "rq_active::1" not in proxy.get("/clusters").text and time.monotonic() < deadline:
        time.sleep(0.02)
    proxy.proc.send_signal(signal.SIGTERM)
    # stops accepting promptly
    deadline = time.monotonic() + 3
    refused = False
    while time.monotonic() < deadline and not refused:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            time.sleep(0.02)
        except OSError:
            refused = True
    assert refused
    t.join(10)
    assert result.get("r") is not None and result["r"].status_code == 200, result
    assert proxy.proc.wait(10) == 0
    proxy.stop()
