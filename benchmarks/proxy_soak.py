"""Soak: does the sidecar's memory stay flat over millions of requests? (nginx in the same run.)

The compiled fast lane manages Python references by hand in places; a leak of one object per
request would show here long before it showed anywhere else. Same setup as ``proxy_hop.py``
(nginx upstream, meshpilot and an nginx reverse proxy on CPU 0, wrk on CPU 1). Each round runs
wrk against both proxies in turn, alternating plain GETs and 2 KB POSTs, and records each proxy's
RSS; the report is RSS growth per million requests after the first (warm-up) round, for both.

    python benchmarks/proxy_soak.py [--rounds 6] [--seconds 10] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy_hop as hop  # the sibling script: the same nginx, proxy and wrk setup


def wrk_requests(port: int, seconds: int, post: str | None) -> int:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c16", f"-d{seconds}s", "-H", "Host: svc"]
    if post is not None:
        cmd += ["-s", post]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"port {port}: non-2xx responses; the setup is wrong\n{out}")
    return int(out.split(" requests in")[0].split()[-1])


def rss_mib(pids: list[int]) -> float:
    return sum(psutil.Process(p).memory_info().rss for p in pids if psutil.pid_exists(p)) / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    up_port, nginx_port, mp_port = hop.free_port(), hop.free_port(), hop.free_port()
    upstream_body = f'server {{ listen 127.0.0.1:{up_port}; location / {{ return 200 "ok\\n"; }} }}'
    proxy_body = (
        f"upstream app {{ server 127.0.0.1:{up_port}; keepalive 64; }}\n"
        f"server {{ listen 127.0.0.1:{nginx_port}; location / {{ proxy_pass http://app; "
        f'proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }} }}'
    )
    lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    lua.write('wrk.method = "POST"\nwrk.body = string.rep("x", 2000)\n')
    lua.close()
    rows: dict[str, list[dict[str, Any]]] = {"nginx": [], "meshpilot": []}
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(hop.nginx(up_port, upstream_body, "1"))
            running = {
                "nginx": (nginx_port, stack.enter_context(hop.nginx(nginx_port, proxy_body, "0"))),
                "meshpilot": (mp_port, stack.enter_context(hop.meshpilot_proxy(mp_port, up_port, "0"))),
            }
            total = dict.fromkeys(running, 0)
            for i in range(args.rounds):
                for name, (port, pids) in running.items():
                    total[name] += wrk_requests(port, args.seconds, lua.name if i % 2 else None)
                    rows[name].append({"requests": total[name], "rss_mib": rss_mib(pids)})
            lane = hop.fast_lane_counters(mp_port)
    finally:
        os.unlink(lua.name)
    results: dict[str, Any] = {"rounds": rows, "fast_lane": lane}
    for name, series in rows.items():
        first, last = series[0], series[-1]
        millions = (last["requests"] - first["requests"]) / 1e6
        results[name] = {
            "requests": last["requests"],
            "rss_first_mib": first["rss_mib"],
            "rss_last_mib": last["rss_mib"],
            "growth_mib_per_million": (last["rss_mib"] - first["rss_mib"]) / millions if millions else 0.0,
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"{'target':<10} {'requests':>10} {'RSS after warm-up':>18} {'RSS at the end':>15} {'growth/1M req':>14}"
    )
    for name in rows:
        r = results[name]
        print(
            f"{name:<10} {r['requests']:>10} {r['rss_first_mib']:>15.1f} MiB {r['rss_last_mib']:>11.1f} MiB"
            f" {r['growth_mib_per_million']:>10.2f} MiB"
        )
    print(f"meshpilot's fast lane: {lane.get('meshpilot.fastlane.rq_total', 0)} requests served")
    return 0


if __name__ == "__main__":
    sys.exit(main())
