"""``python -m meshpilot.proxy``: the sidecar process.

Sidecar mode reads Istio's injected environment (POD_NAME, POD_NAMESPACE, INSTANCE_IP,
PROXY_CONFIG with ``discoveryAddress``, ISTIO_META_* / ISTIO_METAJSON_*) and takes its
configuration from the control plane. ``--bootstrap FILE`` takes a JSON file instead:

    {"node": {"id": ..., "cluster": ..., "metadata": {...}},   # optional, else from the environment
     "ip": "127.0.0.1",                                        # pod IP: admin address, upstream source
     "admin": {"address": ..., "port": 15000}, "stats": {"port": 15090},
     "proxy_settings": {"header_timeout": 30, ...},
     "discovery_address": "host:port",                         # optional: also subscribe to xDS
     "static_resources": {"listeners": [...], "routes": [...], "clusters": [...], "endpoints": [...]}}
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from typing import Any

import uvloop

from meshpilot.proxy.config import static_resources
from meshpilot.proxy.router import ConfigError
from meshpilot.proxy.server import Identity, Proxy, Settings, identity_from_env
from meshpilot.proxy.xdsclient import XdsClient
from meshpilot.tasks import spawn

log = logging.getLogger("meshpilot.proxy")


def _duration(v: Any, where: str) -> float:
    """Istio's duration strings ("5s", "500ms", "1m") or plain seconds."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(v))
    if m is None:
        raise ConfigError(f"{where}: expected a duration like 5s, got {v!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def _address(v: Any, where: str) -> tuple[str, int]:
    host, sep, port = str(v).rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"{where}: expected host:port, got {v!r}")
    return host, int(port)


def load_plan(bootstrap_path: str | None) -> dict[str, Any]:
    """Everything the process needs, resolved and validated before anything starts."""
    if bootstrap_path is not None:
        try:
            with open(bootstrap_path) as f:
                boot = json.load(f)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{bootstrap_path}: {e}") from None
        if not isinstance(boot, dict):
            raise ConfigError(f"{bootstrap_path}: expected a JSON object")
        ident = identity_from_env()
        if "node" in boot:
            node = boot["node"]
            ident = Identity(
                str(node.get("id", ident.node_id)),
                str(boot.get("ip", ident.ip)),
                dict(node.get("metadata", {})),
                str(node.get("cluster", "Kubernetes")),
            )
        elif "ip" in boot:
            ident.ip = str(boot["ip"])
        admin = boot.get("admin", {})
        stats = boot.get("stats", {"port": 15090})
        return {
            "identity": ident,
            "settings": Settings.from_dict(boot.get("proxy_settings", {})),
            "admin": (str(admin.get("address", ident.ip)), int(admin.get("port", 15000))),
            "stats_port": None if stats is None else int(stats.get("port", 15090)),
            "static": static_resources(boot),
            "xds": _address(boot["discovery_address"], "discovery_address")
            if boot.get("discovery_address")
            else None,
        }
    import os

    ident = identity_from_env()
    try:
        pc = json.loads(os.environ.get("PROXY_CONFIG") or "{}")
    except ValueError as e:
        raise ConfigError(f"PROXY_CONFIG: not JSON: {e}") from None
    if not isinstance(pc, dict) or not pc.get("discoveryAddress"):
        raise ConfigError("PROXY_CONFIG: discoveryAddress is required (or pass --bootstrap FILE)")
    settings = Settings()
    if "terminationDrainDuration" in pc:
        settings.drain_timeout = _duration(
            pc["terminationDrainDuration"], "PROXY_CONFIG.terminationDrainDuration"
        )
    return {
        "identity": ident,
        "settings": settings,
        "admin": (ident.ip, int(pc.get("proxyAdminPort", 15000))),
        "stats_port": int(pc.get("statsPort", 15090)),
        "static": {},
        "xds": _address(pc["discoveryAddress"], "PROXY_CONFIG.discoveryAddress"),
    }


async def run(plan: dict[str, Any]) -> int:
    proxy = Proxy(plan["identity"], plan["settings"])
    proxy.install_signals()
    admin_port, stats_port = await proxy.start_admin(plan["admin"][0], plan["admin"][1], plan["stats_port"])
    if plan["static"]:
        try:
            await proxy.apply(plan["static"], {t: "static" for t in plan["static"]})
        except ConfigError as e:
            print(f"meshpilot-proxy: bootstrap: {e}", file=sys.stderr)
            await proxy.stop()
            return 2
        if plan["xds"] is None:
            proxy.ready = True
    log.info(
        "proxy %s: admin %s:%d, stats %s, listeners %s",
        proxy.identity.node_id,
        plan["admin"][0],
        admin_port,
        stats_port,
        proxy.bound,
    )
    if plan["xds"] is not None:
        client = XdsClient(proxy, plan["xds"][0], plan["xds"][1], initial=plan["static"])
        task = spawn(client.run(), name="xds")
    await proxy.stopped.wait()
    if plan["xds"] is not None:
        task.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m meshpilot.proxy", description="meshpilot sidecar proxy")
    ap.add_argument("--bootstrap", help="static bootstrap JSON (instead of the sidecar environment)")
    ap.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        plan = load_plan(args.bootstrap)
    except (ConfigError, ValueError, TypeError) as e:
        print(f"meshpilot-proxy: {e}", file=sys.stderr)
        return 2
    try:
        return uvloop.run(run(plan))
    except OSError as e:
        print(f"meshpilot-proxy: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
