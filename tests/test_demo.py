"""``meshpilot demo`` end to end, as a user runs it: a real subprocess with a deadline.

The demo must complete on its own cluster, report what the traffic saw, and leave nothing behind:
no daemon, no pod process listening on the cluster's addresses, no state directory — also when it
is interrupted half-way. ``--keep`` leaves a cluster the user can reach.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent

# The demo installs the mesh and starts a dozen processes: give it more than the default 120 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def demo_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MESHPILOT_HOME", None)
    env.pop("MESHPILOT_CONTEXT", None)
    env["COLUMNS"] = "200"  # rich wraps at the terminal width; keep each message on one line
    return env


def processes_of(home: Path) -> list[str]:
    """Processes started for the demo's cluster: the daemon and every pod carry its state directory
    in their environment (MESHPILOT_HOME, the API token file) or command line. Other clusters running
    concurrently (other tests) may reuse the same address range once ours is gone, so addresses
    alone would not tell."""
    marker = str(home)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ", "status"]):
        info = proc.info
        if info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        env = info.get("environ") or {}
        cmdline = " ".join(info.get("cmdline") or [])
        if marker in cmdline or any(marker in str(v) for v in env.values()):
            found.append(f"pid={info['pid']} {cmdline}")
    return found


def parse_run(output: str) -> tuple[Path, int, int]:
    home = re.search(r"state directory \(temporary\): (\S+)", output)
    started = re.search(r"cluster demo created at http://127\.(\d+)\.0\.1:6443 \(daemon pid (\d+)", output)
    assert home and started, output
    return Path(home.group(1)), int(started.group(1)), int(started.group(2))


def assert_nothing_left(home: Path, index: int, daemon_pid: int) -> None:
    assert not psutil.pid_exists(daemon_pid) or psutil.Process(daemon_pid).status() == psutil.STATUS_ZOMBIE
    assert processes_of(home) == []
    assert not home.exists()


def test_demo_runs_end_to_end_and_cleans_up() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "meshpilot", "demo", "--requests", "200", "--timeout", "150"],
        capture_output=True,
        text=True,
        timeout=200,
        env=demo_env(),
        cwd=ROOT,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    home, index, daemon_pid = parse_run(output)
    assert "deployment.apps/productcatalog-v1 created" in output
    assert "deployment.apps/frontend created" in output
    assert "production/productcatalog-v1 2/2" in output
    # Per-version counts: both versions answered (3 pods behind a connection-balancing ClusterIP),
    # and the counts add up to every request sent.
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"│ (v\d)\s+│\s+(\d+) │", output)}
    assert set(counts) == {"v1", "v2"}, output
    assert sum(counts.values()) == 200
    assert "status codes: 200×200" in output
    assert "frontend → productcatalog" in output and "p99" in output
    assert "nothing left running" in output
    assert "demo complete" in output
    assert_nothing_left(home, index, daemon_pid)


def test_demo_interrupted_still_tears_down() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshpilot", "demo", "--requests", "100000", "--timeout", "150"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=demo_env(),
        cwd=ROOT,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "sending 100000 requests" in line:
                break
        assert any("sending 100000 requests" in line for line in lines), "".join(lines)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    output = "".join(lines) + rest
    assert proc.returncode != 0
    assert "interrupted" in output
    assert "nothing left running" in output, output
    home, index, daemon_pid = parse_run(output)
    assert_nothing_left(home, index, daemon_pid)


def test_demo_keep_leaves_a_reachable_cluster() -> None:
    env = demo_env()
    result = subprocess.run(
        [sys.executable, "-m", "meshpilot", "demo", "--keep", "--requests", "10", "--timeout", "150"],
        capture_output=True,
        text=True,
        timeout=200,
        env=env,
        cwd=ROOT,
    )
    output = result.stdout + result.stderr
    home, index, daemon_pid = parse_run(output)
    try:
        assert result.returncode == 0, output
        assert f"export MESHPILOT_HOME={home}" in output
        assert "meshpilot cluster down --name demo" in output
        assert psutil.pid_exists(daemon_pid)
        # The detection assert_nothing_left relies on sees the daemon and the 4 pods while they run.
        assert len(processes_of(home)) >= 5, processes_of(home)
        kept_env = dict(env, MESHPILOT_HOME=str(home))
        pods = subprocess.run(
            [sys.executable, "-m", "meshpilot", "get", "pods", "-n", "production"],
            capture_output=True,
            text=True,
            timeout=60,
            env=kept_env,
            cwd=ROOT,
        )
        assert pods.returncode == 0, pods.stderr
        assert len(pods.stdout.strip().splitlines()) == 4  # header + 2 v1 + 1 v2
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "meshpilot", "cluster", "down", "--name", "demo"],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(env, MESHPILOT_HOME=str(home)),
            cwd=ROOT,
        )
        import shutil

        shutil.rmtree(home, ignore_errors=True)
    assert down.returncode == 0, down.stderr
    assert_nothing_left(home, index, daemon_pid)
