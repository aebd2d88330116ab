"""Shared fixtures for the bench tests: a real echo server process and a CLI runner.

Module-scoped (not a conftest) so that the name does not clash with other test packages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class EchoProcess:
    proc: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def priority_prefix() -> list[str]:
    """Timing-accuracy tests need the CPU when they ask for it; on a shared machine a raised
    priority (only possible as root) keeps other people's busy processes from adding latency."""
    if os.geteuid() == 0:
        return ["nice", "-n", "-10"]
    return []


def start_echo_server(high_priority: bool = False) -> EchoProcess:
    prefix = priority_prefix() if high_priority else []
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "meshpilot", "bench", "server", "--port", "0", "--host", "127.0.0.1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "listening on" in line or not line:
            break
    if "listening on" not in line:
        proc.kill()
        proc.wait(5)
        raise RuntimeError(f"echo server did not start: {line!r}")
    return EchoProcess(proc, int(line.rsplit(":", 1)[1]))


def stop_echo_server(server: EchoProcess) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(5)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(5)
    if server.proc.stdout is not None:
        server.proc.stdout.close()


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoProcess]:
    server = start_echo_server()
    try:
        yield server
    finally:
        stop_echo_server(server)


def bench_cli(
    *args: str, timeout: float = 60, high_priority: bool = False
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200")
    prefix = priority_prefix() if high_priority else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "meshpilot", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def load_json(
    *args: str, timeout: float = 60, high_priority: bool = False
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """Run ``bench load ... -json -`` and parse the result (text goes to stderr, as with Fortio)."""
    result = bench_cli("load", "-json", "-", *args, timeout=timeout, high_priority=high_priority)
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout), result


def percentile(doc: dict[str, Any], p: float, key: str = "DurationHistogram") -> float:
    for entry in doc[key]["Percentiles"]:
        if entry["Percentile"] == p:
            return float(entry["Value"])
    raise KeyError(p)
