"""What both sample apps need: where to listen, how to stop, which headers carry a trace.

The sample apps are ordinary programs that could run in any Kubernetes cluster, so they learn
everything from their environment (``POD_IP``, ``PORT``, ``POD_NAME``, as the local cluster sets
them and as a Downward API would on a real cluster) and depend on nothing else in meshpilot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger("meshpilot.samples")

# Headers a well-behaved service copies from its inbound request to its outbound calls so that the
# mesh can stitch the spans of one request together (the set Istio's documentation asks apps to
# propagate: W3C trace context, Zipkin B3 in both forms, and Envoy's request id).
TRACE_HEADERS: tuple[str, ...] = (
    "x-request-id",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-ot-span-context",
    "x-cloud-trace-context",
    "grpc-trace-bin",
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m)?\s*$")
_UNIT_SECONDS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_duration(text: str, default_unit: str = "ms") -> float:
    """``"20ms"``, ``"1.5s"``, ``"20"`` (in ``default_unit``) -> seconds; ValueError otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r} (expected e.g. 20ms, 1.5s)")
    value = float(match.group(1))
    unit = match.group(2) or default_unit
    return value * _UNIT_SECONDS[unit]


def parse_rate(text: str) -> float:
    """An error rate: a fraction ``0.1`` or a percentage ``10%``, in [0, 1]."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"invalid error rate {text!r} (expected a fraction like 0.1 or 10%)") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"invalid error rate {text!r}: must be between 0 and 1")
    return value


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def listen_address(default_port: int) -> tuple[str, int]:
    """``$POD_IP:$PORT``: the local cluster gives every pod its own loopback IP and port."""
    host = os.environ.get("POD_IP") or "127.0.0.1"
    port_text = os.environ.get("PORT") or str(default_port)
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"invalid PORT {port_text!r}") from None
    return host, port


def pod_name(default: str) -> str:
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or default


def bound_socket(host: str, port: int) -> socket.socket:
    """A listening socket, created before the event loop serves on it, so a port clash fails fast."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def serve(
    app: web.Application,
    host: str,
    port: int,
    name: str,
    on_draining: Callable[[], None],
    drain_seconds: float,
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then drain like a good Kubernetes citizen.

    On SIGTERM the app first reports not-ready (so a readiness probe takes it out of rotation), keeps
    serving for ``drain_seconds`` so requests already routed to it still land, then stops accepting
    and lets in-flight requests finish before exiting 0.
    """
    # Handlers first: a SIGTERM that arrives while starting up must drain, not kill.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sock = bound_socket(host, port)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=10.0)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    actual = sock.getsockname()
    print(f"{name} listening on http://{actual[0]}:{actual[1]}", flush=True)
    if on_ready is not None:
        await on_ready()

    await stop.wait()
    print(f"{name} received shutdown signal, draining", flush=True)
    on_draining()
    if drain_seconds > 0:
        await asyncio.sleep(drain_seconds)
    await runner.cleanup()
    print(f"{name} stopped", flush=True)


def run(main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main`` on uvloop when available; exit 2 with one line on a configuration error."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop

        runner: Callable[[Awaitable[None]], None] = uvloop.run  # type: ignore[assignment]
    except ImportError:  # pragma: no cover - uvloop is a dependency, but the apps stand alone
        runner = asyncio.run  # type: ignore[assignment]
    try:
        runner(main())
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
