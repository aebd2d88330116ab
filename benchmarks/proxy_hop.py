"""One sidecar hop vs nginx as a reverse proxy: CPU per request, added latency, RSS.

Same upstream (an nginx answering a fixed 200), same load generator (wrk), same CPU pinning:
the proxy under test runs alone on CPU 0, upstream and wrk share CPU 1. For each target
(direct to the upstream, nginx proxy, meshpilot proxy) the script runs

- a throughput run (``-c CONN``): CPU seconds the proxy process used / requests completed,
- a latency run (``-c 1``): mean and p50/p99 latency; "added latency" is the proxy's minus direct.

meshpilot runs with a route (a virtual host and a prefix route, as a VirtualService compiles to),
Istio metrics on (they always are) and access logging off. wrk drives a closed loop (no fixed
rate), so latencies are service times, not latency from intended send time.

On a shared machine, ``--rounds N`` takes the throughput runs in turns and reports each target's
median run; ``--baseline-tree DIR`` adds an older checkout of the proxy to the same run (before /
after figures under the same load); ``--floor`` adds a bare uvloop TCP relay, the least CPU any
uvloop-based proxy can spend per request here.

    python benchmarks/proxy_hop.py [--seconds 8] [--connections 16] [--rounds 1] [--json]
        [--baseline-tree DIR] [--floor]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of the processes: the split shows how much is the kernel's
    socket work (about the same for any proxy) and how much the proxy's own code."""
    user = system = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = psutil.Process(pid).cpu_times()
            user += t.user
            system += t.system
    return user, system


def nginx_conf(prefix: str, port: int, body: str) -> str:
    return f"""
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    {body}
}}
"""


@contextlib.contextmanager
def nginx(port: int, body: str, cpu: str) -> Iterator[list[int]]:
    prefix = tempfile.mkdtemp(prefix="bench-nginx-")
    conf = os.path.join(prefix, "nginx.conf")
    Path(conf).write_text(nginx_conf(prefix, port, body))
    proc = subprocess.Popen(
        ["taskset", "-c", cpu, "nginx", "-p", prefix, "-c", conf],
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        pids = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children())]
        yield pids
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(prefix, ignore_errors=True)


ADMIN_PORTS: dict[int, int] = {}  # listener port -> the proxy's admin port


def fast_lane_counters(port: int) -> dict[str, int]:
    """The proxy's ``meshpilot.fastlane.*`` counters from its admin /stats."""
    with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN_PORTS[port]}/stats", timeout=5) as r:
        text = r.read().decode()
    return {k: int(v) for k, _, v in (line.partition(": ") for line in text.splitlines()) if "fastlane" in k}


@contextlib.contextmanager
def meshpilot_proxy(
    port: int, upstream: int, cpu: str, root: Path = ROOT, fast_lane: bool = True
) -> Iterator[list[int]]:
    admin = free_port()
    ADMIN_PORTS[port] = admin
    boot = {
        "ip": "127.0.0.1",
        "admin": {"address": "127.0.0.1", "port": admin},
        "stats": None,
        "node": {"id": "sidecar~127.0.0.1~bench.default~default.svc.cluster.local",
                 "metadata": {"WORKLOAD_NAME": "bench", "NAMESPACE": "default", "LABELS": {"app": "bench"}}},
        "static_resources": {
            "listeners": [{"name": "virtualOutbound", "address": "127.0.0.1", "port": port,
                           "traffic_direction": "OUTBOUND", "cluster": "BlackHoleCluster"}],
            "routes": [{"name": "80", "virtual_hosts": [{
                "name": "svc:80", "domains": ["svc", "svc:80", f"127.0.0.1:{port}"],
                "routes": [{"name": "default", "match": {"prefix": "/"},
                            "route": {"cluster": "outbound|80||svc.default.svc.cluster.local", "timeout": 0}}]}]}],
            "clusters": [{"name": "outbound|80||svc.default.svc.cluster.local", "type": "STATIC",
                          "lb_policy": "ROUND_ROBIN",
                          "load_assignment": {"cluster_name": "outbound|80||svc.default.svc.cluster.local",
                                              "endpoints": [{"lb_endpoints": [{"address": "127.0.0.1", "port": upstream,
                                                  "metadata": {"workload": "upstream", "namespace": "default"}}]}]},
                          "metadata": {"istio": {"services": [{"host": "svc.default.svc.cluster.local",
                                                               "name": "svc", "namespace": "default"}]}}}],
        },
    }  # fmt: skip
    d = tempfile.mkdtemp(prefix="bench-proxy-")
    path = os.path.join(d, "bootstrap.json")
    Path(path).write_text(json.dumps(boot))
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            cpu,
            sys.executable,
            "-m",
            "meshpilot.proxy",
            "--bootstrap",
            path,
            "--log-level",
            "warning",
        ],
        cwd=root,  # `-m` imports the package from the working directory first
        env={**os.environ, "MESHPILOT_PROXY_FASTPATH": "1" if fast_lane else "0"},
    )
    try:
        wait_port(port)
        yield [proc.pid]
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(d, ignore_errors=True)


def serve_relay(port: int, upstream: int) -> None:
    """The floor for any uvloop-based proxy: bytes relayed between a client connection and its
    own upstream connection, no HTTP parsing, no routing, no telemetry."""
    import asyncio

    import uvloop

    class Up(asyncio.Protocol):
        def __init__(self, down: Down) -> None:
            self.down = down

        def data_received(self, data: bytes) -> None:
            if not self.down.transport.is_closing():
                self.down.transport.write(data)

    class Down(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            self.up: Any = None
            self.pending: list[bytes] = []
            self.task = asyncio.get_running_loop().create_task(self.connect())

        async def connect(self) -> None:
            t, _ = await asyncio.get_running_loop().create_connection(lambda: Up(self), "127.0.0.1", upstream)
            self.up = t
            for data in self.pending:
                t.write(data)

        def data_received(self, data: bytes) -> None:
            if self.up is None:
                self.pending.append(data)
            else:
                self.up.write(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.up is not None:
                self.up.close()

    async def run() -> None:
        await asyncio.get_running_loop().create_server(Down, "127.0.0.1", port)
        await asyncio.Event().wait()

    uvloop.run(run())


@contextlib.contextmanager
def relay(port: int, upstream: int, cpu: str) -> Iterator[list[int]]:
    proc = subprocess.Popen(
        ["taskset", "-c", cpu, sys.executable, __file__, "--serve-relay", str(port), str(upstream)], cwd=ROOT
    )
    try:
        wait_port(port)
        yield [proc.pid]
    finally:
        proc.terminate()
        proc.wait(10)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if m is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(port: int, seconds: int, connections: int, cpu: str) -> dict[str, float]:
    out = subprocess.run(
        ["taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-H", "Host: svc", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    ).stdout  # fmt: skip
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    num = r"([\d.]+(?:us|ms|s))"
    lat = re.search(rf"^\s+Latency\s+{num}\s+{num}\s+{num}", out, re.M)
    p50 = re.search(rf"^\s+50%\s+{num}", out, re.M)
    p99 = re.search(rf"^\s+99%\s+{num}", out, re.M)
    assert lat and p50 and p99, out
    return {
        "requests": requests,
        "errors": int(errors.group(1)) if errors else 0,
        "rps": requests / seconds,
        "mean_ms": _ms(lat.group(1)),
        "p50_ms": _ms(p50.group(1)),
        "p99_ms": _ms(p99.group(1)),
    }


def cpu_run(port: int, pids: list[int], seconds: int, connections: int) -> dict[str, Any]:
    """One throughput run: CPU the proxy used per request completed, split user/system."""
    wrk(port, 1, connections, "1")  # warm-up: pools, caches
    u0, s0 = cpu_seconds(pids)
    load = wrk(port, seconds, connections, "1")
    u1, s1 = cpu_seconds(pids)
    user, system = u1 - u0, s1 - s0
    if load["errors"]:
        raise RuntimeError(f"port {port}: {load['errors']} non-2xx responses; the setup is wrong")
    n = max(load["requests"], 1)
    return {
        "rps": round(load["rps"]),
        "errors": load["errors"],
        "cpu_us_per_request": (user + system) * 1e6 / n,
        "cpu_user_us_per_request": user * 1e6 / n,
        "cpu_sys_us_per_request": system * 1e6 / n,
    }


def latency_and_rss(port: int, pids: list[int], seconds: int) -> dict[str, Any]:
    lat = wrk(port, max(2, seconds // 2), 1, "1")
    if lat["errors"]:
        raise RuntimeError(f"port {port}: {lat['errors']} non-2xx responses; the setup is wrong")
    rss = sum(psutil.Process(p).memory_info().rss for p in pids if psutil.pid_exists(p))
    return {
        "latency_mean_ms": lat["mean_ms"],
        "latency_p50_ms": lat["p50_ms"],
        "latency_p99_ms": lat["p99_ms"],
        "rss_mib": rss / 2**20,
    }


def measure(port: int, pids: list[int], seconds: int, connections: int) -> dict[str, Any]:
    return {**cpu_run(port, pids, seconds, connections), **latency_and_rss(port, pids, seconds)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="throughput runs per target, taken in turns (A B A B ...); the median run is reported,"
        " which damps bursts of load from other processes on a shared machine",
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only-meshpilot", action="store_true", help="skip nginx (for quick profiling rounds)")
    ap.add_argument(
        "--baseline-tree",
        type=Path,
        help="also measure the proxy from another checkout (e.g. `git archive OLD meshpilot | tar -x -C DIR`)"
        " in the same run, as `baseline`",
    )
    ap.add_argument(
        "--interpreted",
        action="store_true",
        help="also measure the proxy with its compiled fast lane off (MESHPILOT_PROXY_FASTPATH=0)",
    )
    ap.add_argument(
        "--floor",
        action="store_true",
        help="also measure a bare uvloop TCP relay (no HTTP): the floor for any uvloop-based proxy",
    )
    ap.add_argument("--serve-relay", nargs=2, type=int, metavar=("PORT", "UPSTREAM"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_relay:
        serve_relay(*args.serve_relay)
        return 0
    for tool in ("nginx", "wrk", "taskset"):
        if shutil.which(tool) is None:
            print(
                f"proxy_hop: {tool} not found (apt-get install -y nginx-light wrk util-linux)",
                file=sys.stderr,
            )
            return 2
    up_port, nginx_port, mp_port = free_port(), free_port(), free_port()
    upstream_body = f'server {{ listen 127.0.0.1:{up_port}; location / {{ return 200 "ok\\n"; }} }}'
    proxy_body = (
        f"upstream app {{ server 127.0.0.1:{up_port}; keepalive 64; }}\n"
        f"server {{ listen 127.0.0.1:{nginx_port}; location / {{ proxy_pass http://app; "
        f'proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }} }}'
    )
    results: dict[str, Any] = {"load_average_before": os.getloadavg()}
    with nginx(up_port, upstream_body, "1") as up_pids:
        results["direct"] = measure(up_port, up_pids, args.seconds, args.connections)
        if args.only_meshpilot:
            with meshpilot_proxy(mp_port, up_port, "0") as pids:
                print(json.dumps(measure(mp_port, pids, args.seconds, args.connections)))
            return 0
        if args.baseline_tree is not None and not (args.baseline_tree / "meshpilot" / "proxy").is_dir():
            print(f"proxy_hop: {args.baseline_tree}: no meshpilot/proxy there", file=sys.stderr)
            return 2
        with contextlib.ExitStack() as stack:
            # Every target runs for the whole measurement (an idle one costs nothing), so the
            # rounds can alternate between them.
            running: dict[str, tuple[int, list[int]]] = {
                "nginx": (nginx_port, stack.enter_context(nginx(nginx_port, proxy_body, "0"))),
                "meshpilot": (mp_port, stack.enter_context(meshpilot_proxy(mp_port, up_port, "0"))),
            }
            if args.baseline_tree is not None:
                bl_port = free_port()
                bl = meshpilot_proxy(bl_port, up_port, "0", args.baseline_tree.resolve())
                running["baseline"] = (bl_port, stack.enter_context(bl))
            if args.interpreted:
                ip_port = free_port()
                ip = meshpilot_proxy(ip_port, up_port, "0", fast_lane=False)
                running["interpreted"] = (ip_port, stack.enter_context(ip))
            if args.floor:
                rl_port = free_port()
                running["relay"] = (rl_port, stack.enter_context(relay(rl_port, up_port, "0")))
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in running}
            for _ in range(max(1, args.rounds)):
                for name, (port, pids) in running.items():
                    runs[name].append(cpu_run(port, pids, args.seconds, args.connections))
            # The lane must have served the meshpilot target's requests, or the figure means nothing.
            results["fast_lane"] = fast_lane_counters(mp_port)
            for name, (port, pids) in running.items():
                ordered = sorted(runs[name], key=lambda r: r["cpu_us_per_request"])
                results[name] = {
                    **ordered[len(ordered) // 2],
                    "cpu_us_per_request_runs": [round(r["cpu_us_per_request"], 1) for r in runs[name]],
                    **latency_and_rss(port, pids, args.seconds),
                }
    direct = results["direct"]
    targets = tuple(t for t in ("nginx", "meshpilot", "interpreted", "baseline", "relay") if t in results)
    for name in targets:
        r = results[name]
        r["added_latency_p50_ms"] = r["latency_p50_ms"] - direct["latency_p50_ms"]
        r["added_latency_mean_ms"] = r["latency_mean_ms"] - direct["latency_mean_ms"]
    mp, ng = results["meshpilot"], results["nginx"]
    summary = {
        "cpu_per_request_ratio_to_nginx": mp["cpu_us_per_request"] / ng["cpu_us_per_request"],
        "meshpilot_rss_mib": mp["rss_mib"],
        "targets": {"cpu_ratio": 1.25, "rss_mib": 30},
    }
    if "baseline" in results:
        summary["baseline_cpu_per_request_ratio_to_nginx"] = (
            results["baseline"]["cpu_us_per_request"] / ng["cpu_us_per_request"]
        )
    results["summary"] = summary
    results["load_average_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"{'target':<10} {'req/s':>8} {'CPU µs/req':>11} {'(user+sys)':>12} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'+p50 ms':>8} {'RSS MiB':>8}"
    )
    for name in ("direct", *targets):
        r = results[name]
        added = f"{r['added_latency_p50_ms']:.3f}" if "added_latency_p50_ms" in r else "-"
        cpu = f"{r['cpu_us_per_request']:.1f}" if name != "direct" else "-"
        split = (
            f"{r['cpu_user_us_per_request']:.1f}+{r['cpu_sys_us_per_request']:.1f}"
            if name != "direct"
            else "-"
        )
        print(
            f"{name:<10} {r['rps']:>8} {cpu:>11} {split:>12} {r['latency_p50_ms']:>7.3f}"
            f" {r['latency_p99_ms']:>7.3f} {added:>8} {r['rss_mib']:>8.1f}"
        )
    if args.rounds > 1:
        per_round = ", ".join(f"{name} {results[name]['cpu_us_per_request_runs']}" for name in targets)
        print(f"CPU µs/request in each round (median reported): {per_round}")
    before, after = results["load_average_before"], results["load_average_after"]
    print(f"load average (1/5/15 min): before {before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f},"
          f" after {after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f}")  # fmt: skip
    print(
        f"meshpilot / nginx CPU per request: {summary['cpu_per_request_ratio_to_nginx']:.2f}x (target <= 1.25x); "
        f"meshpilot RSS {summary['meshpilot_rss_mib']:.1f} MiB (target <= 30 MiB)"
    )
    if "baseline" in results:
        print(f"baseline / nginx CPU per request: {summary['baseline_cpu_per_request_ratio_to_nginx']:.2f}x")
    lane = results["fast_lane"]
    print(
        f"meshpilot's fast lane: {lane.get('meshpilot.fastlane.rq_total', 0)} requests served,"
        f" {lane.get('meshpilot.fastlane.handovers', 0)} connections handed to the interpreted lane"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
