"""Where meshpilot keeps its state: ``$MESHPILOT_HOME``, else ``~/.meshpilot``."""

from __future__ import annotations

import os
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
