"""Shared fixtures.

``cluster`` (session scope): ONE real local cluster, started with ``meshpilot cluster up --no-mesh``
semantics in a temporary ``MESHPILOT_HOME`` and stopped (``cluster down``) at the end of the
session. Integration tests share it; create objects in your own namespace and delete them when done.
It yields a ``LocalCluster`` with:

- ``.name`` — the cluster's name; ``.home`` — its MESHPILOT_HOME (a temp dir);
- ``.info`` — ``meshpilot.cluster.state.ClusterInfo`` (index, ``server``, ``token``, ``state_dir``);
- ``.client`` — a ``meshpilot.client.Client`` bound to it;
- ``.env`` — environment variables that point a process at it (``MESHPILOT_HOME``, ``MESHPILOT_CONTEXT``);
- ``.cli(*args)`` — run ``meshpilot ARGS`` in-process (click's CliRunner) -> ``CliResult(exit_code,
  stdout, stderr)``; ``.cli_subprocess(*args)`` — run ``python -m meshpilot ARGS`` as a real process
  -> ``subprocess.CompletedProcess``. Both use ``.env``; neither raises on a non-zero exit.

The process-wide ``MESHPILOT_HOME`` is never changed, so tests that set their own (with
``monkeypatch.setenv``) are unaffected.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def meshpilot_home(home: Path) -> Iterator[None]:
    """Point ``meshpilot.paths`` at ``home`` for the duration of the block."""
    old = os.environ.get("MESHPILOT_HOME")
    os.environ["MESHPILOT_HOME"] = str(home)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MESHPILOT_HOME", None)
        else:
            os.environ["MESHPILOT_HOME"] = old


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@dataclass
class LocalCluster:
    name: str
    home: Path
    info: object  # meshpilot.cluster.state.ClusterInfo
    client: object = field(repr=False)  # meshpilot.client.Client

    @property
    def context(self) -> str:
        return f"meshpilot-{self.name}"

    @property
    def env(self) -> dict[str, str]:
        return {"MESHPILOT_HOME": str(self.home), "MESHPILOT_CONTEXT": self.context}

    def cli(self, *args: str, input: str | None = None) -> CliResult:
        from click.testing import CliRunner

        from meshpilot.cli.main import cli

        runner = CliRunner()
        result = runner.invoke(cli, list(args), input=input, env=self.env, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    def cli_subprocess(
        self, *args: str, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, **self.env)
        return subprocess.run(
            [sys.executable, "-m", "meshpilot", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=ROOT,
        )


def start_cluster(home: Path, name: str) -> LocalCluster:
    """``cluster up --no-mesh`` in ``home``; the caller must call ``stop_cluster``."""
    from meshpilot.client import Client
    from meshpilot.cluster import lifecycle

    with meshpilot_home(home):
        info, _ = lifecycle.up(name, mesh=False)
    return LocalCluster(name=name, home=home, info=info, client=Client(info.server, info.token))


def stop_cluster(cluster: LocalCluster) -> None:
    from meshpilot.cluster import lifecycle

    with contextlib.suppress(Exception):
        cluster.client.close()  # type: ignore[attr-defined]
    with meshpilot_home(cluster.home):
        lifecycle.down(cluster.name)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    home = tmp_path_factory.mktemp("meshpilot-home")
    local = start_cluster(home, "test")
    try:
        yield local
    finally:
        stop_cluster(local)
