"""The handle on a real local cluster that the test fixtures hand out (``tests/conftest.py``'s
``cluster``, and ``tests/e2e``'s ``Mesh``, which extends it): kept in a plain module so both can
import it (two ``conftest`` modules cannot import each other).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    info: Any  # meshpilot.cluster.state.ClusterInfo
    client: Any = field(repr=False)  # meshpilot.client.Client

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
