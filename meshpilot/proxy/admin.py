"""The admin endpoints of Envoy that istioctl and Prometheus use (15000, and 15090 for stats).

Served by the same protocol class as traffic, answered with local replies: no second HTTP stack
in the process, and nothing here runs on the data path.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meshpilot.proxy.server import Proxy

_LEVELS = ("trace", "debug", "info", "warning", "error", "critical", "off")
_PY_LEVEL = {"trace": 5, "debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50, "off": 100}

Reply = tuple[int, str, bytes]


def _json(obj: object) -> Reply:
    return 200, "application/json", (json.dumps(obj, indent=2) + "\n").encode()


def handle(proxy: Proxy, method: str, path: str, query: dict[str, list[str]]) -> Reply:
    if path == "/ready":
        if proxy.draining:
            return 503, "text/plain", b"DRAINING\n"
        return (200, "text/plain", b"LIVE\n") if proxy.ready else (503, "text/plain", b"PRE_INITIALIZING\n")
    if path == "/stats/prometheus":
        body = "".join([*proxy.metrics.exposition(), *proxy.counters.prometheus(proxy.cluster_counters())])
        return 200, "text/plain; version=0.0.4", body.encode()
    if path == "/stats":
        if query.get("format") == ["json"]:
            return _json(
                {
                    "stats": [
                        {"name": k, "value": v}
                        for k, v in sorted(proxy.counters.merged(proxy.cluster_counters()).items())
                    ]
                }
            )
        lines = proxy.counters.text(proxy.cluster_counters())
        for (reporter, code), n in sorted(proxy.metrics.totals().items()):
            lines += f"istio.requests_total.reporter.{reporter}.response_code.{code}: {n}\n"
        return 200, "text/plain", lines.encode()
    if path == "/config_dump":
        dump = proxy.config_dump()
        wanted = query.get("resource")
        if wanted:
            dump["configs"] = [c for c in dump["configs"] if wanted[0].lower() in c["@type"].lower()]
        return _json(dump)
    if path == "/clusters":
        if query.get("format") == ["json"]:
            return _json(proxy.clusters_json())
        return 200, "text/plain", proxy.clusters_text().encode()
    if path == "/listeners":
        return _json({"listeners": proxy.bound, "pools": [repr(p) for p in proxy.pools.values()]})
    if path == "/server_info":
        state = "DRAINING" if proxy.draining else "LIVE" if proxy.ready else "PRE_INITIALIZING"
        return _json({"state": state, "node": {"id": proxy.identity.node_id}, "command_line_options": {}})
    if path == "/quitquitquit":
        if method != "POST":
            return 405, "text/plain", b"POST required\n"
        proxy.quit()
        return 200, "text/plain", b"OK\n"
    if path == "/logging":
        logger = logging.getLogger("meshpilot.proxy")
        if method == "POST" and query.get("level"):
            level = query["level"][0]
            if level not in _LEVELS:
                return 400, "text/plain", f"unknown level {level!r}; one of {', '.join(_LEVELS)}\n".encode()
            logger.setLevel(_PY_LEVEL[level])
        current = logging.getLevelName(logger.getEffectiveLevel()).lower()
        return 200, "text/plain", f"active loggers:\n  meshpilot.proxy: {current}\n".encode()
    if path == "/":
        paths = "/clusters /config_dump /listeners /logging /quitquitquit /ready /server_info /stats /stats/prometheus"
        return 200, "text/plain", ("admin commands are:\n  " + "\n  ".join(paths.split()) + "\n").encode()
    return 404, "text/plain", b"invalid path\n"
