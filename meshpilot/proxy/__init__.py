"""The sidecar and gateway proxy: uvloop + httptools, configured over xDS (``meshpilot.xds``).

Run it with ``python -m meshpilot.proxy`` (sidecar, configuration from the control plane) or
``python -m meshpilot.proxy --bootstrap FILE`` (static configuration, for tests and benchmarks).
"""

from __future__ import annotations

from meshpilot.proxy.config import ClusterState, ListenerConfig, Snapshot
from meshpilot.proxy.router import ConfigError, RequestView, RouteTable, compile_route_config
from meshpilot.proxy.server import Identity, Proxy, Settings, identity_from_env

__all__ = [
    "ClusterState",
    "ConfigError",
    "Identity",
    "ListenerConfig",
    "Proxy",
    "RequestView",
    "RouteTable",
    "Settings",
    "Snapshot",
    "compile_route_config",
    "identity_from_env",
]
