"""The mesh half of ``meshpilot demo``: istiod, sidecars, the 90/10 VirtualService and Istio's metrics.

Kept apart from ``demo.py`` (the demo's skeleton) so that each stage reads on its own: install the
control plane and wait for it, put the sample namespaces in the mesh, wait until every sidecar is
SYNCED with istiod, then — after the traffic — compare the split the VirtualService asked for with
the split the frontend saw, and print ``istio_requests_total`` / ``istio_request_duration_milliseconds``
as scraped from the sidecars themselves (the source reporter in the frontend's sidecar, the
destination reporter in each productcatalog sidecar), just as Prometheus would scrape them.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from meshpilot.cli.common import CliError
from meshpilot.cli.mesh import ISTIO_NAMESPACE, SYNCZ_PORT, install_into, istiod_pods

MESH_NAMESPACES = ("production", "frontend")
CATALOG = ("production", "productcatalog")  # (namespace, VirtualService/Service name)
STATS_PORT = 15090

Remaining = Callable[[], float]


def install(client: Any, cluster_id: str, console: Console, remaining: Remaining) -> None:
    """``meshpilot install`` for the demo cluster, then wait until an istiod pod is ready."""
    results = install_into(client, cluster_id=cluster_id)
    created = sum(1 for r in results if r.get("result") == "created")
    with console.status("waiting for istiod...") as status:
        while True:
            dep = client.get(("apps", "deployments"), "istiod", ISTIO_NAMESPACE)
            ready = int((dep.get("status") or {}).get("readyReplicas", 0) or 0)
            pods = istiod_pods(client)
            if ready >= 1 and pods:
                break
            if remaining() <= 0:
                raise CliError("demo timed out waiting for istiod; see `meshpilot get pods -n istio-system`")
            status.update(f"waiting for istiod: {ready} ready")
            time.sleep(0.3)
    names = ", ".join(p["metadata"]["name"] for p in pods)
    console.print(
        f"[green]✓[/] mesh installed ({created} objects): istiod ready in {ISTIO_NAMESPACE} ({names})"
    )


def in_mesh(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sample objects with their namespaces labelled ``istio-injection=enabled`` (a copy)."""
    out = []
    for obj in objects:
        obj = copy.deepcopy(obj)
        meta = obj.get("metadata") or {}
        if obj.get("kind") == "Namespace" and meta.get("name") in MESH_NAMESPACES:
            meta.setdefault("labels", {})["istio-injection"] = "enabled"
        out.append(obj)
    return out


def _get_json(http: httpx.Client, url: str) -> Any:
    resp = http.get(url)
    resp.raise_for_status()
    return resp.json()


def sync_status(client: Any) -> tuple[int, int]:
    """(sidecars SYNCED on CDS, LDS, EDS and RDS; app pods in the mesh namespaces)."""
    pods = [
        p
        for ns in MESH_NAMESPACES
        for p in client.list(("", "pods"), ns)
        if (p.get("status") or {}).get("phase") == "Running"
    ]
    wanted = {f"{p['metadata']['name']}.{p['metadata']['namespace']}" for p in pods}
    synced: set[str] = set()
    with httpx.Client(timeout=3.0, trust_env=False) as http:
        for istiod in istiod_pods(client):
            url = f"http://{istiod['status']['podIP']}:{SYNCZ_PORT}/debug/syncz"
            try:
                entries = _get_json(http, url)
            except (httpx.HTTPError, ValueError):
                continue
            for e in entries:
                parts = str(e.get("proxy", "")).split("~")
                types = e.get("types") or {}
                if len(parts) == 4 and all(
                    (types.get(t) or {}).get("status") == "SYNCED" for t in ("cds", "lds", "eds", "rds")
                ):
                    synced.add(parts[2])
    return len(wanted & synced), len(wanted)


def wait_synced(client: Any, console: Console, remaining: Remaining) -> None:
    """Every app pod's sidecar has ACKed istiod's latest config (``meshpilot proxy-status``: SYNCED)."""
    with console.status("waiting for every sidecar to be SYNCED with istiod...") as status:
        while True:
            synced, total = sync_status(client)
            if total and synced == total:
                break
            if remaining() <= 0:
                raise CliError(
                    f"demo timed out: {synced}/{total} sidecars SYNCED; see `meshpilot proxy-status`"
                )
            status.update(f"waiting for the sidecars: {synced}/{total} SYNCED")
            time.sleep(0.3)
    console.print(f"[green]✓[/] {total} sidecars SYNCED with istiod (CDS, LDS, EDS, RDS)")


# --- after the traffic ---------------------------------------------------------------------------


def route_weights(client: Any) -> dict[str, int]:
    """subset -> weight of the catalogue VirtualService's first route (empty when there is none)."""
    from meshpilot.client import ApiError

    try:
        vs = client.get(("networking.istio.io", "virtualservices"), CATALOG[1], CATALOG[0])
    except ApiError:
        return {}
    http_routes = (vs.get("spec") or {}).get("http") or []
    if not http_routes:
        return {}
    out: dict[str, int] = {}
    destinations = http_routes[0].get("route") or []
    for d in destinations:
        subset = str((d.get("destination") or {}).get("subset") or "-")
        out[subset] = int(d.get("weight", 100 if len(destinations) == 1 else 0))
    return out


def binomial_interval(n: int, p: float, confidence: float = 0.999) -> tuple[int, int]:
    """Central interval of Binomial(n, p) that holds at least ``confidence`` of the mass."""
    if n <= 0 or p <= 0 or p >= 1:
        k = 0 if p <= 0 else n
        return k, k
    tail = (1 - confidence) / 2

    def pmf(k: int) -> float:
        log = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        return math.exp(log + k * math.log(p) + (n - k) * math.log1p(-p))

    lo, acc = 0, 0.0
    while lo < n and acc + pmf(lo) <= tail:
        acc += pmf(lo)
        lo += 1
    hi, acc = n, 0.0
    while hi > 0 and acc + pmf(hi) <= tail:
        acc += pmf(hi)
        hi -= 1
    return lo, hi


def print_split(console: Console, weights: dict[str, int], observed: Counter[str]) -> None:
    """What the VirtualService asked for against what the frontend saw, with the binomial bounds."""
    if not weights:
        return
    n = sum(observed.values())
    total_weight = sum(weights.values()) or 1
    table = Table(title=f"VirtualService {CATALOG[0]}/{CATALOG[1]}: asked vs observed ({n} requests)")
    for col in ("subset", "weight", "observed", "share", "99.9% binomial range", "verdict"):
        table.add_column(col, justify="left" if col in ("subset", "verdict") else "right")
    for subset, weight in sorted(weights.items()):
        p = weight / total_weight
        seen = observed.get(subset, 0)
        lo, hi = binomial_interval(n, p)
        verdict = "[green]as configured[/]" if lo <= seen <= hi else "[red]outside the range[/]"
        table.add_row(
            subset, f"{weight}%", str(seen), f"{100 * seen / max(n, 1):.1f}%", f"{lo}–{hi}", verdict
        )
    console.print(table)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_samples(text: str, names: set[str]) -> list[tuple[str, dict[str, str], float]]:
    """The labelled samples of ``names`` in a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _SAMPLE.match(line)
        if m is None or m.group(1) not in names:
            continue
        labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(m.group(2))}
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def sidecar_metrics(client: Any) -> list[list[str]]:
    """Rows (reporter, scraped from, destination version, code, requests, mean ms) for frontend ->
    productcatalog, scraped from every sidecar's :15090/stats/prometheus."""
    names = {
        "istio_requests_total",
        "istio_request_duration_milliseconds_sum",
        "istio_request_duration_milliseconds_count",
    }
    rows: list[list[str]] = []
    with httpx.Client(timeout=3.0, trust_env=False) as http:
        for ns in ("frontend", "production"):
            reporter = "source" if ns == "frontend" else "destination"
            for pod in client.list(("", "pods"), ns):
                ip = (pod.get("status") or {}).get("podIP")
                if not ip:
                    continue
                try:
                    resp = http.get(f"http://{ip}:{STATS_PORT}/stats/prometheus")
                    resp.raise_for_status()
                except httpx.HTTPError:
                    continue
                requests: Counter[tuple[str, str]] = Counter()
                ms: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
                for name, labels, value in parse_samples(resp.text, names):
                    if (
                        labels.get("reporter") != reporter
                        or labels.get("source_workload") != "frontend"
                        or labels.get("destination_service_name") != CATALOG[1]
                    ):
                        continue
                    version = labels.get("destination_version", "unknown")
                    if name == "istio_requests_total":
                        requests[(version, labels.get("response_code", "-"))] += int(value)
                    else:
                        ms[version][0 if name.endswith("_sum") else 1] += value
                for (version, code), count in sorted(requests.items()):
                    total_ms, n = ms[version]
                    mean = f"{total_ms / n:.2f}" if n else "-"
                    rows.append([reporter, pod["metadata"]["name"], version, code, str(count), mean])
    return rows


def print_metrics(console: Console, rows: list[list[str]]) -> None:
    table = Table(title="Istio metrics from the sidecars: frontend → productcatalog (istio_requests_total)")
    for col in ("reporter", "scraped from", "destination_version", "response_code", "requests", "mean ms"):
        table.add_column(col, justify="right" if col in ("requests", "mean ms") else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    by_reporter = Counter[str]()
    for row in rows:
        by_reporter[row[0]] += int(row[4])
    console.print(
        "requests counted: "
        + ", ".join(f"reporter={r} {by_reporter[r]}" for r in ("source", "destination"))
        + " (each request is counted once by the frontend's sidecar and once by the productcatalog"
        " sidecar that served it)"
    )
