"""``python -m meshpilot.controlplane``: istiod for the local mesh (or any Kubernetes-shaped API).

Inside a pod the API server is ``$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`` with the
bearer token in ``$MESHPILOT_TOKEN_FILE``; outside, the kubeconfig's current (or ``--context``)
context is used. It serves xDS on 15010 and the debug/monitoring port on 15014, on ``$POD_IP``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from meshpilot.client import AsyncClient, KubeconfigError
from meshpilot.controlplane.debug import start_debug
from meshpilot.controlplane.server import ControlPlane
from meshpilot.controlplane.watcher import RegistryWatcher

log = logging.getLogger("meshpilot.controlplane")


def _version() -> str:
    try:
        return version("meshpilot")
    except PackageNotFoundError:
        return "0.0.0"


def make_client(context: str | None) -> AsyncClient:
    """In-cluster credentials when the pod environment has them, else the kubeconfig."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if host and context is None:
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        scheme = os.environ.get("KUBERNETES_SERVICE_SCHEME") or ("https" if port == "443" else "http")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        token = None
        token_file = os.environ.get("MESHPILOT_TOKEN_FILE")
        if token_file:
            token = Path(token_file).read_text().strip()
        return AsyncClient(f"{scheme}://{host}:{port}", token, "istio-system")
    return AsyncClient.from_kubeconfig(context)


async def run(args: argparse.Namespace) -> int:
    pod_name = os.environ.get("POD_NAME") or f"istiod-{socket.gethostname()}"
    cp = ControlPlane(
        istiod_id=pod_name,
        version=_version(),
        revision=args.revision,
        debounce_after=args.debounce_after,
        debounce_max=args.debounce_max,
    )
    client = make_client(args.context)
    watcher = RegistryWatcher(client, cp.update, revision=args.revision, cluster_id=args.cluster_id)
    xds_port = await cp.start(args.host, args.xds_port)
    runner, debug_port = await start_debug(cp, args.host, args.debug_port)
    watcher.start()
    log.info(
        "istiod %s (revision %s): xDS on %s:%d, debug on %s:%d",
        pod_name,
        args.revision,
        args.host,
        xds_port,
        args.host,
        debug_port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("istiod %s stopping", pod_name)
        await watcher.stop()
        await runner.cleanup()
        await cp.close()
        await client.aclose()
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m meshpilot.controlplane", description=__doc__)
    p.add_argument("--host", default=os.environ.get("POD_IP") or "127.0.0.1", help="address to listen on")
    p.add_argument("--xds-port", type=int, default=15010)
    p.add_argument("--debug-port", type=int, default=15014)
    p.add_argument("--revision", default=os.environ.get("REVISION") or "default")
    p.add_argument("--cluster-id", default=os.environ.get("CLUSTER_ID") or "Kubernetes")
    p.add_argument("--context", default=None, help="kubeconfig context (outside a pod)")
    p.add_argument(
        "--debounce-after", type=float, default=float(os.environ.get("PILOT_DEBOUNCE_AFTER", "0.1"))
    )
    p.add_argument("--debounce-max", type=float, default=float(os.environ.get("PILOT_DEBOUNCE_MAX", "1.0")))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("MESHPILOT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # one line per list/watch request would drown what matters (pushes, NACKs, resyncs)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return asyncio.run(run(args))
    except KubeconfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
