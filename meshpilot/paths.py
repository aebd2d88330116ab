"""Where meshpilot keeps its state: ``$MESHPILOT_HOME``, else ``~/.meshpilot``; and how processes
take turns changing it."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def home() -> Path:
    root = os.environ.get("MESHPILOT_HOME")
    path = Path(root) if root else Path.home() / ".meshpilot"
    path.mkdir(parents=True, exist_ok=True)
    return path


def kubeconfig_path() -> Path:
    """The kubeconfig-style file (clusters, users, contexts, current-context)."""
    return home() / "kubeconfig"


def cluster_dir(name: str) -> Path:
    """Everything one local cluster owns: its store, daemon pid and log, pod logs."""
    path = home() / "clusters" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing) for the block: state files
    are shared by every meshpilot process of the machine (CLI runs, daemons, tests in parallel)."""
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
