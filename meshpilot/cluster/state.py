"""What identifies one local cluster: its name, index, addresses and where it keeps its state."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClusterInfo:
    """Cluster index N owns 127.N.0.0/16: API at 127.N.0.1, pods 127.N.1-127.x, services 127.N.128-255.x."""

    name: str
    index: int
    state_dir: Path
    token: str
    api_port: int = 6443

    @property
    def api_host(self) -> str:
        return f"127.{self.index}.0.1"

    @property
    def server(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def pod_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"127.{self.index}.0.0/17")

    @property
    def service_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"127.{self.index}.128.0/17")

    @property
    def pods_dir(self) -> Path:
        return self.state_dir / "pods"
