"""Start real proxy processes from a bootstrap dict, and build xDS resources tersely."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def static_cluster(
    name: str, endpoints: list[tuple[str, int]], lb: str = "ROUND_ROBIN", ep_metadata=None, **kw
):
    eps = [
        {"address": a, "port": p, **({"metadata": ep_metadata[i]} if ep_metadata else {})}
        for i, (a, p) in enumerate(endpoints)
    ]
    return {
        "name": name,
        "type": "STATIC",
        "lb_policy": lb,
        "connect_timeout": 1.0,
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": eps}]},
        **kw,
    }


def node(workload: str, ns: str = "default", app: str | None = None, version: str = "v1") -> dict[str, Any]:
    return {
        "id": f"sidecar~127.0.0.1~{workload}-abc.{ns}~{ns}.svc.cluster.local",
        "cluster": "Kubernetes",
        "metadata": {
            "NAME": f"{workload}-abc",
            "NAMESPACE": ns,
            "WORKLOAD_NAME": workload,
            "CLUSTER_ID": "Kubernetes",
            "LABELS": {"app": app or workload, "version": version},
        },
    }


# The reviews v2 workload the tests route to across two proxies: its cluster's Istio service
# metadata and its endpoint's workload metadata, as the control plane would push them.
REVIEWS_META: dict[str, Any] = {
    "istio": {
        "services": [{"host": "reviews.default.svc.cluster.local", "name": "reviews", "namespace": "default"}]
    }
}
REVIEWS_ENDPOINT: dict[str, Any] = {
    "workload": "reviews",
    "namespace": "default",
    "app": "reviews",
    "version": "v2",
    "cluster": "Kubernetes",
    "labels": {"app": "reviews", "version": "v2"},
}


def outbound_listener(port: int, name: str = "virtualOutbound", **kw: Any) -> dict[str, Any]:
    """An OUTBOUND listener on 127.0.0.1 (``cluster``, ``access_log`` ... as keywords)."""
    return {"name": name, "address": "127.0.0.1", "port": port, "traffic_direction": "OUTBOUND", **kw}


def inbound_listener(address: str, port: int, cluster: str = "inbound|9080||", **kw: Any) -> dict[str, Any]:
    """An INBOUND listener named as Istio names them, forwarding to ``cluster``."""
    return {
        "name": f"{address}_{port}",
        "address": address,
        "port": port,
        "traffic_direction": "INBOUND",
        "cluster": cluster,
        **kw,
    }


class RssGrowth:
    """The peak RSS a process reaches above its RSS at the start, sampled every 20 ms on a thread
    while the ``with`` block runs (in MiB: ``grew_mib``)."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> RssGrowth:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    @property
    def grew_mib(self) -> float:
        return (self.peak - self.base) / 2**20


class ProxyProcess:
    """``python -m meshpilot.proxy --bootstrap`` in its own process; stopped by PID."""

    def __init__(self, bootstrap: dict[str, Any], ip: str = "127.0.0.1") -> None:
        self.ip = ip
        self.admin_port = free_port(ip)
        bootstrap = {"ip": ip, "admin": {"address": ip, "port": self.admin_port}, "stats": None, **bootstrap}
        self.dir = tempfile.mkdtemp(prefix="meshpilot-proxy-test-")
        self.path = os.path.join(self.dir, "bootstrap.json")
        Path(self.path).write_text(json.dumps(bootstrap))
        self.stdout = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshpilot.proxy", "--bootstrap", self.path],
            cwd=ROOT,
            stdout=self.stdout,
            stderr=self.stderr,
        )
        self.admin = f"http://{ip}:{self.admin_port}"

    def wait_ready(self, timeout: float = 15.0) -> ProxyProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited {self.proc.returncode}: {self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.admin}/ready", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        raise TimeoutError(f"proxy not ready: {self.log()}")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.admin}{path}", timeout=5)

    def listener_port(self, name: str) -> int:
        return int(self.get("/listeners").json()["listeners"][name])

    def log(self) -> str:
        return Path(self.stderr_path).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.stdout.close()
        self.stderr.close()
