"""What identifies one local cluster: its name, index, addresses and where it keeps its state.

``cluster.json`` in the cluster's directory is the record that survives the daemon: the CLI
writes it before starting the daemon, the daemon reads it, and ``cluster list`` reads every one.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshpilot import paths

CLUSTER_FILE = "cluster.json"


@dataclass(frozen=True)
class ClusterInfo:
    """Cluster index N owns 127.N.0.0/16: API at 127.N.0.1, pods 127.N.1-127.x, services 127.N.128-255.x."""

    name: str
    index: int
    state_dir: Path
    token: str
    api_port: int = 6443
    mesh: bool = True

    @property
    def api_host(self) -> str:
        return f"127.{self.index}.0.1"

    @property
    def server(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def secure_port(self) -> int:
        """HTTPS twin of the API port, for clients that send tokens only over TLS (kubectl)."""
        return self.api_port + 1

    @property
    def secure_server(self) -> str:
        return f"https://{self.api_host}:{self.secure_port}"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "ca.crt"

    @property
    def tls_cert_file(self) -> Path:
        return self.state_dir / "apiserver.crt"

    @property
    def tls_key_file(self) -> Path:
        return self.state_dir / "apiserver.key"

    @property
    def pod_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"127.{self.index}.0.0/17")

    @property
    def service_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"127.{self.index}.128.0/17")

    @property
    def pods_dir(self) -> Path:
        return self.state_dir / "pods"

    @property
    def store_path(self) -> Path:
        return self.state_dir / "store.db"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "daemon.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "daemon.log"

    @property
    def token_file(self) -> Path:
        """The bearer token alone, mode 0600: containers get its path as ``MESHPILOT_TOKEN_FILE``."""
        return self.state_dir / "token"

    @property
    def context(self) -> str:
        return context_name(self.name)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "index": self.index,
            "server": self.server,
            "apiPort": self.api_port,
            "token": self.token,
            "mesh": self.mesh,
        }

    def save(self) -> None:
        """Write cluster.json and the token file (both private to the user)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _write_private(self.state_dir / CLUSTER_FILE, json.dumps(self.to_json(), indent=2) + "\n")
        _write_private(self.token_file, self.token + "\n")


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def context_name(cluster_name: str) -> str:
    return f"meshpilot-{cluster_name}"


def load(name: str) -> ClusterInfo:
    """The recorded cluster ``name``; ``FileNotFoundError`` when there is none."""
    state_dir = paths.home() / "clusters" / name
    data = json.loads((state_dir / CLUSTER_FILE).read_text())
    return ClusterInfo(
        name=str(data["name"]),
        index=int(data["index"]),
        state_dir=state_dir,
        token=str(data["token"]),
        api_port=int(data.get("apiPort", 6443)),
        mesh=bool(data.get("mesh", True)),
    )


def recorded() -> list[ClusterInfo]:
    """Every cluster recorded under ``$MESHPILOT_HOME``, by name."""
    root = paths.home() / "clusters"
    out = []
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if (entry / CLUSTER_FILE).is_file():
                try:
                    out.append(load(entry.name))
                except (OSError, ValueError, KeyError):
                    continue
    return out
