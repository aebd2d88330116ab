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
from collections.abc import Iterator
from pathlib import Path

import pytest
from _clusterhandle import LocalCluster, meshpilot_home


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
