"""The cluster daemon: ``python -m meshpilot.cluster.daemon --name NAME``.

One process per cluster holds the store, the controllers (with the process runtime and the
service proxy) and the API server in one asyncio loop. SIGTERM is an orderly shutdown that stops
every pod; SIGKILL (or a crash) leaves the pods running in their own sessions, and the next daemon
re-adopts them from what the store recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys
from typing import Any

from meshpilot.cluster import admission, state
from meshpilot.cluster.apiserver import ApiServer
from meshpilot.cluster.state import ClusterInfo
from meshpilot.store import AlreadyExists, NotFound, Store

log = logging.getLogger("meshpilot.cluster.daemon")

EXIT_ADDRESS_IN_USE = 3
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _namespace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def bootstrap(store: Store, info: ClusterInfo) -> None:
    """Objects every cluster has: the system namespaces and the ``kubernetes`` Service in default."""
    for name in SYSTEM_NAMESPACES:
        with contextlib.suppress(AlreadyExists):
            store.create(("", "namespaces"), _namespace(name))
    try:
        existing = store.get(("", "services"), "default", "kubernetes")
        cluster_ip = str((existing.get("spec") or {}).get("clusterIP") or "")
        if cluster_ip and ipaddress.IPv4Address(cluster_ip) not in info.service_network:
            # recorded under another address plan (the cluster's index changed): give it a new IP
            store.delete(("", "services"), "default", "kubernetes")
            raise NotFound("kubernetes service re-created")
    except NotFound:
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": info.api_port}],
                "sessionAffinity": "None",
            },
        }
        admitted = admission.admit(store, info, ("", "services"), service, "CREATE")
        with contextlib.suppress(AlreadyExists):
            store.create(("", "services"), admitted)
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [
            {
                "addresses": [{"ip": info.api_host}],
                "ports": [{"name": "https", "port": info.api_port, "protocol": "TCP"}],
            }
        ],
    }
    try:
        current = store.get(("", "endpoints"), "default", "kubernetes")
        if current.get("subsets") != endpoints["subsets"]:
            current["subsets"] = endpoints["subsets"]
            store.update(("", "endpoints"), current)
    except NotFound:
        store.create(("", "endpoints"), endpoints)


async def run(info: ClusterInfo) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code."""
    from meshpilot.cluster.controllers import ControllerManager

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    # Claim the API address before touching the store: if another cluster holds it, this daemon
    # must fail without having written objects (a Service's ClusterIP) for an address plan it
    # will not get.
    try:
        listener = socket.create_server((info.api_host, info.api_port))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", info.api_host, info.api_port, exc)
        return EXIT_ADDRESS_IN_USE
    secure: tuple[socket.socket, ssl.SSLContext] | None = None
    if info.tls_cert_file.exists() and info.tls_key_file.exists():
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(info.tls_cert_file, info.tls_key_file)
        try:
            secure = (socket.create_server((info.api_host, info.secure_port)), context)
        except OSError as exc:
            listener.close()
            log.error("cannot listen on %s:%d: %s", info.api_host, info.secure_port, exc)
            return EXIT_ADDRESS_IN_USE
    store = Store(info.store_path)
    bootstrap(store, info)
    manager = ControllerManager(store, info)
    api = ApiServer(store, info)
    try:
        await manager.start()
        await api.start(info.api_host, info.api_port, sock=listener, secure=secure)
    except BaseException:
        log.exception("daemon failed to start")
        with contextlib.suppress(Exception):
            await api.stop()
        with contextlib.suppress(Exception):
            await manager.stop(stop_pods=False)
        listener.close()
        if secure is not None:
            secure[0].close()
        store.close()
        return 1
    info.pid_file.write_text(f"{os.getpid()}\n")
    log.info("cluster %s serving on %s (pid %d)", info.name, info.server, os.getpid())
    try:
        await stopping.wait()
    finally:
        log.info("cluster %s shutting down: stopping pods", info.name)
        await api.stop()
        try:
            await manager.stop(stop_pods=True)
        except Exception:
            log.exception("controllers did not stop cleanly")
        store.close()
        with contextlib.suppress(FileNotFoundError):
            if info.pid_file.read_text().strip() == str(os.getpid()):
                info.pid_file.unlink()
        log.info("cluster %s stopped", info.name)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshpilot.cluster.daemon")
    parser.add_argument(
        "--name", required=True, help="the cluster's name (its directory under $MESHPILOT_HOME)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        info = state.load(args.name)
    except FileNotFoundError:
        print(
            f"error: cluster {args.name!r} is not recorded; run `meshpilot cluster up --name {args.name}`",
            file=sys.stderr,
        )
        return 2
    try:
        import uvloop

        return uvloop.run(run(info))
    except ImportError:  # pragma: no cover - uvloop is a dependency, but the daemon works without it
        return asyncio.run(run(info))


if __name__ == "__main__":
    sys.exit(main())
