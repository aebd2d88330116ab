"""Maximum requests/s of ``meshpilot bench load`` on one core against wrk's on one core.

Same target for both (Debian's nginx serving a small static file, pinned to its own core), same
run, alternating rounds so that drift on a shared machine hits both tools alike. The figure that
matters is the ratio ours / wrk (target >= 0.5).

    python benchmarks/loadgen_vs_wrk.py [--duration 10] [--rounds 2] [--connections 50]

Needs ``nginx`` and ``wrk`` on PATH (``apt-get install -y nginx-light wrk``) and ``taskset``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = b"hello from nginx\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nginx(workdir: Path, port: int, cpu: int) -> subprocess.Popen[bytes]:
    workdir.chmod(0o755)  # nginx's worker runs as an unprivileged user and must read the file
    html = workdir / "html"
    html.mkdir()
    (html / "index.html").write_bytes(BODY)
    (workdir / "logs").mkdir()
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {html}; index index.html; }}
    }}
}}
"""
    )
    proc = subprocess.Popen(
        ["taskset", "-c", str(cpu), "nginx", "-p", str(workdir), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise SystemExit(f"nginx failed to start: {err.strip()}") from None
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("nginx did not start listening")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(url: str, cpu: int, connections: int, duration: int) -> float:
    out = subprocess.run(
        ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{connections}", f"-d{duration}s", url],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise SystemExit(f"cannot parse wrk output:\n{out}")
    return float(m.group(1))


def run_ours(url: str, cpu: int, connections: int, duration: int) -> tuple[float, int]:
    argv = ["taskset", "-c", str(cpu), sys.executable, "-m", "meshpilot", "bench", "load", "-qps", "0"]
    argv += [
        "-c",
        str(connections),
        "-t",
        f"{duration}s",
        "--workers",
        "1",
        "--no-progress",
        "-json",
        "-",
        url,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"meshpilot bench load failed: {proc.stderr.strip()}")
    doc = json.loads(proc.stdout)
    errors = sum(n for code, n in doc["RetCodes"].items() if code != "200")
    return float(doc["ActualQPS"]), errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--client-cpu", type=int, default=0)
    parser.add_argument("--server-cpu", type=int, default=1)
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found (apt-get install -y nginx-light wrk util-linux)", file=sys.stderr)
            return 1
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory(prefix="loadgen-vs-wrk-") as tmp:
        nginx = start_nginx(Path(tmp), port, args.server_cpu)
        try:
            wrk_rates: list[float] = []
            our_rates: list[float] = []
            wrk_per_cpu: list[float] = []  # requests per CPU-second the client itself used
            our_per_cpu: list[float] = []
            our_errors = 0
            for i in range(args.rounds):
                cpu0 = children_cpu()
                wrk_rates.append(run_wrk(url, args.client_cpu, args.connections, args.duration))
                cpu1 = children_cpu()
                rate, errors = run_ours(url, args.client_cpu, args.connections, args.duration)
                cpu2 = children_cpu()
                wrk_per_cpu.append(wrk_rates[-1] * args.duration / (cpu1 - cpu0))
                our_per_cpu.append(rate * args.duration / (cpu2 - cpu1))
                our_rates.append(rate)
                our_errors += errors
                print(
                    f"round {i + 1}: wrk {wrk_rates[-1]:,.0f} req/s ({wrk_per_cpu[-1]:,.0f} per CPU-s)   "
                    f"meshpilot {rate:,.0f} req/s ({our_per_cpu[-1]:,.0f} per CPU-s)",
                    flush=True,
                )
        finally:
            nginx.terminate()
            nginx.wait(10)
    wrk_med = statistics.median(wrk_rates)
    ours_med = statistics.median(our_rates)
    ratio = ours_med / wrk_med
    summary = {
        "cpus": os.cpu_count(),
        "connections": args.connections,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "wrk_rps_median": round(wrk_med),
        "meshpilot_rps_median": round(ours_med),
        "meshpilot_errors": our_errors,
        "ratio": round(ratio, 3),
        "target_met": ratio >= 0.5,
        "wrk_requests_per_cpu_second": round(statistics.median(wrk_per_cpu)),
        "meshpilot_requests_per_cpu_second": round(statistics.median(our_per_cpu)),
        "cpu_efficiency_ratio": round(statistics.median(our_per_cpu) / statistics.median(wrk_per_cpu), 3),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
