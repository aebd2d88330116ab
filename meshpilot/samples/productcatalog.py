"""productcatalog: the backend of the reference text's examples, a small JSON API.

Each instance says which version it is and which pod answered, in the ``x-version`` and
``x-pod-name`` headers and in every JSON body, so that traffic splits can be observed from the
outside. Its latency and error rate are knobs (flags or ``LATENCY_MS`` / ``LATENCY_JITTER`` /
``ERROR_RATE`` in the environment) so that a Deployment can simulate a bad version for a canary.

    python -m meshpilot.samples.productcatalog --version v2 --latency 20ms --error-rate 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from meshpilot.samples._common import (
    TRACE_HEADERS,
    env_flag,
    listen_address,
    parse_duration,
    parse_rate,
    pod_name,
    run,
    serve,
)

DEFAULT_PORT = 8080

# The catalogue itself. Version v2 is the "new release" of the examples: it adds ratings, so a
# client can tell from the payload alone which version served it.
_CATALOGUE: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "Mesh-ready espresso machine", "price": 249.0, "currency": "EUR", "rating": 4.6},
    {"id": 2, "name": "Sidecar coffee grinder", "price": 89.5, "currency": "EUR", "rating": 4.2},
    {"id": 3, "name": "Control-plane kettle", "price": 39.9, "currency": "EUR", "rating": 3.9},
    {"id": 4, "name": "Canary milk frother", "price": 24.0, "currency": "EUR", "rating": 4.8},
    {"id": 5, "name": "Circuit-breaker cup set", "price": 19.0, "currency": "EUR", "rating": 4.1},
)


@dataclass
class Settings:
    """How this instance behaves; every knob has a flag and an environment variable."""

    version: str = "v1"
    latency: float = 0.0  # seconds added to every API response
    jitter: bool = False  # when set, the added latency is uniform in [latency/2, 3*latency/2]
    error_rate: float = 0.0  # fraction of API requests answered 500
    drain: float = 0.5  # seconds to keep serving after SIGTERM, reporting not-ready
    pod: str = field(default_factory=lambda: pod_name("productcatalog"))


@dataclass
class State:
    settings: Settings
    ready: bool = True
    started: float = field(default_factory=time.monotonic)
    served: int = 0
    failed: int = 0


STATE_KEY = web.AppKey("state", State)


def _products(version: str) -> list[dict[str, Any]]:
    if version == "v1":
        return [{k: v for k, v in item.items() if k != "rating"} for item in _CATALOGUE]
    return [dict(item) for item in _CATALOGUE]


@web.middleware
async def _stamp(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every response, errors included, names the version and pod and echoes the trace headers."""
    state = request.app[STATE_KEY]
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        response = web.json_response(
            _envelope(state, {"error": exc.reason, "path": request.path}), status=exc.status
        )
    response.headers["x-version"] = state.settings.version
    response.headers["x-pod-name"] = state.settings.pod
    for name in TRACE_HEADERS:
        value = request.headers.get(name)
        if value is not None:
            response.headers[name] = value
    return response


def _envelope(state: State, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "service": "productcatalog",
        "version": state.settings.version,
        "pod": state.settings.pod,
        **payload,
    }


async def _misbehave(state: State) -> bool:
    """Apply the configured latency; True when this request should fail (the error-rate knob)."""
    settings = state.settings
    if settings.latency > 0:
        delay = settings.latency
        if settings.jitter:
            delay = random.uniform(delay / 2, delay * 1.5)
        await asyncio.sleep(delay)
    return settings.error_rate > 0 and random.random() < settings.error_rate


async def list_products(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if await _misbehave(state):
        state.failed += 1
        return web.json_response(_envelope(state, {"error": "injected failure"}), status=500)
    state.served += 1
    return web.json_response(_envelope(state, {"products": _products(state.settings.version)}))


async def get_product(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    raw_id = request.match_info["id"]
    if await _misbehave(state):
        state.failed += 1
        return web.json_response(_envelope(state, {"error": "injected failure"}), status=500)
    try:
        wanted = int(raw_id)
    except ValueError:
        return web.json_response(_envelope(state, {"error": f"invalid product id {raw_id!r}"}), status=400)
    for product in _products(state.settings.version):
        if product["id"] == wanted:
            state.served += 1
            return web.json_response(_envelope(state, {"product": product}))
    return web.json_response(_envelope(state, {"error": f"product {wanted} not found"}), status=404)


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    uptime = round(time.monotonic() - state.started, 3)
    return web.json_response(
        _envelope(
            state, {"status": "ok", "uptimeSeconds": uptime, "served": state.served, "failed": state.failed}
        )
    )


async def ready(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if not state.ready:
        return web.json_response(_envelope(state, {"status": "draining"}), status=503)
    return web.json_response(_envelope(state, {"status": "ready"}))


def make_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[_stamp])
    app[STATE_KEY] = State(settings)
    for prefix in ("", "/api"):
        app.router.add_get(f"{prefix}/products", list_products)
        app.router.add_get(f"{prefix}/products/{{id}}", get_product)
    app.router.add_get("/health", health)
    app.router.add_get("/healthz", health)
    app.router.add_get("/ready", ready)
    return app


def parse_args(argv: list[str] | None = None) -> Settings:
    """Flags override the environment, which overrides the defaults."""
    parser = argparse.ArgumentParser(prog="python -m meshpilot.samples.productcatalog", description=__doc__)
    parser.add_argument("--version", default=os.environ.get("VERSION", "v1"), help="version label to report")
    parser.add_argument(
        "--latency", default=None, help="added latency per API request, e.g. 20ms (env LATENCY_MS)"
    )
    parser.add_argument(
        "--latency-jitter",
        action="store_true",
        default=env_flag("LATENCY_JITTER"),
        help="draw each added latency uniformly from [L/2, 3L/2] (env LATENCY_JITTER=1)",
    )
    parser.add_argument(
        "--error-rate", default=None, help="fraction of API requests answered 500 (env ERROR_RATE)"
    )
    parser.add_argument(
        "--drain", default=os.environ.get("DRAIN_SECONDS", "0.5"), help="seconds to drain on SIGTERM"
    )
    args = parser.parse_args(argv)
    try:
        if args.latency is not None:
            latency = parse_duration(args.latency)
        else:
            latency = parse_duration(os.environ.get("LATENCY_MS", "0"), default_unit="ms")
        error_rate = parse_rate(
            args.error_rate if args.error_rate is not None else os.environ.get("ERROR_RATE", "0")
        )
        drain = parse_duration(args.drain, default_unit="s")
    except ValueError as exc:
        parser.error(str(exc))
    return Settings(
        version=args.version, latency=latency, jitter=args.latency_jitter, error_rate=error_rate, drain=drain
    )


def main(argv: list[str] | None = None) -> None:
    settings = parse_args(argv)
    try:
        host, port = listen_address(DEFAULT_PORT)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    app = make_app(settings)
    state = app[STATE_KEY]

    def draining() -> None:
        state.ready = False

    run(
        lambda: serve(
            app, host, port, f"productcatalog {settings.version} ({settings.pod})", draining, settings.drain
        )
    )


if __name__ == "__main__":
    main()
