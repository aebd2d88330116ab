"""The sample apps as real processes on loopback: what a canary and a mesh rely on them to say.

Each app is started exactly as a pod would start it (``python -m meshpilot.samples.X`` with
``POD_IP``/``PORT``/``POD_NAME`` in the environment; ``PORT=0`` lets the kernel pick a free port,
which the app prints when it listens).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")


@dataclass
class App:
    proc: subprocess.Popen[str]
    url: str
    lines: list[str] = field(default_factory=list)


@contextmanager
def start_app(module: str, *args: str, env: dict[str, str] | None = None) -> Iterator[App]:
    full_env = {k: v for k, v in os.environ.items() if k.lower() not in {"http_proxy", "no_proxy"}}
    full_env.update(
        {"POD_IP": "127.0.0.1", "PORT": "0", "POD_NAME": f"{module}-test", "DRAIN_SECONDS": "0.3"}
    )
    full_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", f"meshpilot.samples.{module}", *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    app = App(proc=proc, url="")
    try:
        deadline = time.monotonic() + 15
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            app.lines.append(line)
            match = LISTENING.search(line)
            if match:
                app.url = f"http://{match.group(1)}:{match.group(2)}"
                break
        assert app.url, f"{module} did not start: {''.join(app.lines)}"
        yield app
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_productcatalog_reports_version_and_pod_everywhere() -> None:
    with start_app("productcatalog", "--version", "v2") as app:
        for path in ("/products", "/api/products"):
            resp = httpx.get(
                app.url + path, headers={"x-request-id": "req-1", "traceparent": "00-abc-def-01"}
            )
            assert resp.status_code == 200
            assert resp.headers["x-version"] == "v2"
            assert resp.headers["x-pod-name"] == "productcatalog-test"
            assert resp.headers["x-request-id"] == "req-1"
            assert resp.headers["traceparent"] == "00-abc-def-01"
            body = resp.json()
            assert body["version"] == "v2" and body["pod"] == "productcatalog-test"
            assert len(body["products"]) >= 3
            assert all("rating" in p for p in body["products"])  # the v2 feature
        one = httpx.get(app.url + "/api/products/2").json()
        assert one["product"]["id"] == 2
        missing = httpx.get(app.url + "/products/999")
        assert missing.status_code == 404 and missing.headers["x-version"] == "v2"
        bad = httpx.get(app.url + "/products/abc")
        assert bad.status_code == 400
        unknown = httpx.get(app.url + "/nope")
        assert unknown.status_code == 404 and unknown.headers["x-version"] == "v2"
        assert httpx.get(app.url + "/health").json()["status"] == "ok"
        assert httpx.get(app.url + "/ready").status_code == 200


def test_productcatalog_v1_has_no_ratings() -> None:
    with start_app("productcatalog", "--version", "v1") as app:
        body = httpx.get(app.url + "/products").json()
        assert body["version"] == "v1"
        assert not any("rating" in p for p in body["products"])


def test_error_rate_and_latency_knobs_from_flags() -> None:
    with start_app("productcatalog", "--version", "v3", "--error-rate", "1", "--latency", "150ms") as app:
        started = time.perf_counter()
        resp = httpx.get(app.url + "/products")
        elapsed = time.perf_counter() - started
        assert resp.status_code == 500
        assert resp.headers["x-version"] == "v3"
        assert elapsed >= 0.15
        # Health and readiness are never slowed down or failed by the knobs: probes must pass.
        assert httpx.get(app.url + "/ready").status_code == 200


def test_knobs_from_environment_as_a_deployment_sets_them() -> None:
    env = {"ERROR_RATE": "0.5", "LATENCY_MS": "0"}
    with start_app("productcatalog", "--version", "v2", env=env) as app:
        codes = [httpx.get(app.url + "/products").status_code for _ in range(200)]
        failures = codes.count(500)
        assert set(codes) <= {200, 500}
        # Binomial(200, 0.5): outside [60, 140] has probability below 1e-8.
        assert 60 <= failures <= 140, failures


def test_latency_jitter_varies_latency_around_the_mean() -> None:
    with start_app("productcatalog", "--latency", "40ms", "--latency-jitter") as app:
        samples = []
        for _ in range(12):
            started = time.perf_counter()
            httpx.get(app.url + "/products").raise_for_status()
            samples.append(time.perf_counter() - started)
        assert min(samples) >= 0.019
        assert max(samples) - min(samples) > 0.004


def test_invalid_knob_is_one_line_and_exit_code_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "meshpilot.samples.productcatalog", "--error-rate", "ten"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "invalid error rate 'ten'" in result.stderr


def test_sigterm_drains_then_exits_cleanly() -> None:
    with start_app("productcatalog", env={"DRAIN_SECONDS": "1.5"}) as app:
        app.proc.send_signal(signal.SIGTERM)
        # During the drain it keeps answering but reports not-ready, so probes take it out of rotation.
        deadline = time.monotonic() + 5
        saw_draining = False
        while time.monotonic() < deadline and not saw_draining:
            resp = httpx.get(app.url + "/ready")
            saw_draining = resp.status_code == 503
        assert saw_draining
        assert httpx.get(app.url + "/products").status_code == 200
        assert app.proc.wait(timeout=10) == 0


class _RecordingProxy(BaseHTTPRequestHandler):
    """A stand-in for the sidecar: records the request line, headers and peer, answers as v9."""

    seen: list[dict[str, Any]] = []  # noqa: RUF012 - shared with the test on purpose

    def do_GET(self) -> None:
        self.seen.append(
            {"line": self.requestline, "headers": dict(self.headers), "peer": self.client_address[0]}
        )
        body = json.dumps({"version": "v9", "pod": "via-proxy", "products": [{"id": 1}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-version", "v9")
        self.send_header("x-pod-name", "via-proxy")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def recording_proxy() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    handler = type("Handler", (_RecordingProxy,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_frontend_goes_through_http_proxy_from_its_pod_ip() -> None:
    with recording_proxy() as (proxy_url, seen):
        env = {"HTTP_PROXY": proxy_url, "POD_IP": "127.0.0.7", "POD_NAMESPACE": "frontend"}
        with start_app("frontend", env=env) as fe:
            resp = httpx.get(
                fe.url + "/api/products",
                headers={"x-request-id": "rid-42", "traceparent": "00-t-s-01", "x-b3-traceid": "b3t"},
            )
            assert resp.status_code == 200
            body = resp.json()
            assert body["productcatalog"]["version"] == "v9"
            assert body["productcatalog"]["pod"] == "via-proxy"
            assert body["requestId"] == "rid-42"
            assert resp.headers["x-productcatalog-version"] == "v9"
            assert resp.headers["x-request-id"] == "rid-42"
            # A request id is generated when the caller sent none, and sent upstream.
            httpx.get(fe.url + "/api/products").raise_for_status()
    assert seen[0]["line"] == "GET http://productcatalog.production.svc.cluster.local/products HTTP/1.1"
    assert seen[0]["peer"] == "127.0.0.7"  # bound to the pod IP before connecting
    assert seen[0]["headers"]["x-request-id"] == "rid-42"
    assert seen[0]["headers"]["traceparent"] == "00-t-s-01"
    assert seen[0]["headers"]["x-b3-traceid"] == "b3t"
    assert len(seen[1]["headers"]["x-request-id"]) == 36


def test_frontend_uses_service_env_vars_in_its_own_namespace() -> None:
    with start_app("productcatalog", "--version", "v1") as pc:
        host, port = pc.url.removeprefix("http://").split(":")
        env = {
            "POD_NAMESPACE": "production",
            "PRODUCTCATALOG_URL": "http://productcatalog",
            "PRODUCTCATALOG_SERVICE_HOST": host,
            "PRODUCTCATALOG_SERVICE_PORT": port,
        }
        with start_app("frontend", env=env) as fe:
            body = httpx.get(fe.url + "/api/products").json()
            assert body["productcatalog"]["version"] == "v1"
            assert body["productcatalog"]["via"] == "service env PRODUCTCATALOG_SERVICE_HOST"
            assert body["products"]


class _FakeApiServer(BaseHTTPRequestHandler):
    cluster_ip = "127.0.0.1"
    token = "sekret"
    seen: list[str] = []  # noqa: RUF012

    def do_GET(self) -> None:
        self.seen.append(self.path)
        if self.headers.get("authorization") != f"Bearer {self.token}":
            self.send_response(401)
            self.end_headers()
            return
        if self.path != "/api/v1/namespaces/production/services/productcatalog":
            self.send_response(404)
            self.end_headers()
            return
        body = json.dumps({"kind": "Service", "spec": {"clusterIP": self.cluster_ip}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_frontend_resolves_other_namespace_through_the_cluster_api(tmp_path: Path) -> None:
    """frontend lives in `frontend`, productcatalog in `production`: no service env vars are injected
    across namespaces, so the app asks the cluster API for the ClusterIP, as cluster DNS would answer."""
    token_file = tmp_path / "token"
    token_file.write_text("sekret\n")
    seen: list[str] = []
    handler = type("Api", (_FakeApiServer,), {"seen": seen})
    api = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=api.serve_forever, daemon=True)
    thread.start()
    try:
        with start_app("productcatalog", "--version", "v2") as pc:
            port = pc.url.rsplit(":", 1)[1]
            env = {
                "POD_NAMESPACE": "frontend",
                "PRODUCTCATALOG_URL": f"http://productcatalog.production.svc.cluster.local:{port}",
                "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": str(api.server_address[1]),
                "MESHPILOT_TOKEN_FILE": str(token_file),
            }
            with start_app("frontend", env=env) as fe:
                body = httpx.get(fe.url + "/api/products").json()
                assert body["productcatalog"]["version"] == "v2"
                assert "ClusterIP of production/productcatalog" in body["productcatalog"]["via"]
                page = httpx.get(fe.url + "/")
                assert page.status_code == 200 and "productcatalog v2" in page.text
    finally:
        api.shutdown()
        api.server_close()
        thread.join(timeout=5)
    assert seen[0] == "/api/v1/namespaces/production/services/productcatalog"


def test_frontend_reports_upstream_failures() -> None:
    with start_app("productcatalog", "--version", "v2", "--error-rate", "1") as pc:
        with start_app("frontend", env={"PRODUCTCATALOG_URL": pc.url}) as fe:
            resp = httpx.get(fe.url + "/api/products")
            assert resp.status_code == 502
            body = resp.json()
            assert body["productcatalog"]["status"] == 500
            assert body["productcatalog"]["version"] == "v2"
    # Nothing listens there any more: 503 with the connection error, promptly.
    with start_app("frontend", env={"PRODUCTCATALOG_URL": pc.url, "UPSTREAM_TIMEOUT": "2s"}) as fe:
        resp = httpx.get(fe.url + "/api/products", timeout=10)
        assert resp.status_code == 503
        assert resp.json()["productcatalog"]["error"]


def test_frontend_sigterm_exits_zero() -> None:
    with start_app("frontend") as fe:
        fe.proc.send_signal(signal.SIGTERM)
        assert fe.proc.wait(timeout=10) == 0


@pytest.mark.parametrize("module", ["productcatalog", "frontend"])
def test_port_in_use_is_one_clear_line(module: str) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        env = {k: v for k, v in os.environ.items()}
        env.update({"POD_IP": "127.0.0.1", "PORT": str(port)})
        result = subprocess.run(
            [sys.executable, "-m", f"meshpilot.samples.{module}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error:")
    assert len(result.stderr.strip().splitlines()) == 1
