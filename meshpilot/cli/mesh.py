"""``meshpilot install``, ``proxy-status`` and ``proxy-config``: istioctl's mesh commands.

``install`` applies the control plane's manifests through the cluster API. ``proxy-status`` asks
every istiod pod for ``/debug/syncz`` (port 15014, via the pod IP) and prints istioctl's table.
``proxy-config`` reads a sidecar's admin ``/config_dump`` (port 15000, via the pod IP) and prints
istioctl's columns, or the raw resources with ``-o json``.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click
import httpx
import yaml

from meshpilot.cli.common import context_name, fail, reports_errors
from meshpilot.cli.printers import format_table
from meshpilot.client import Client
from meshpilot.controlplane.install import InstallError, manifests

ISTIO_NAMESPACE = "istio-system"
SYNCZ_PORT = 15014
ADMIN_PORT = 15000

CLUSTERS_DUMP = "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"
LISTENERS_DUMP = "type.googleapis.com/envoy.admin.v3.ListenersConfigDump"
ROUTES_DUMP = "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"
ENDPOINTS_DUMP = "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump"
BOOTSTRAP_DUMP = "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"


def _client(ctx: click.Context, context: str | None) -> Client:
    return Client.from_kubeconfig(context=context_name(ctx, context))


# --- install ------------------------------------------------------------------------------------


def install_into(
    client: Client, revision: str | None = None, cluster_id: str | None = None
) -> list[dict[str, Any]]:
    """Apply the control plane of ``revision`` (default: "default"); the apply results per object.

    ``cluster_id`` should be the id the injector gives sidecars (the local cluster's name).
    """
    return client.apply(manifests(revision, cluster_id))


def _deployment_ready(client: Client, name: str) -> bool:
    dep = client.get(("apps", "deployments"), name, ISTIO_NAMESPACE)
    want = int((dep.get("spec") or {}).get("replicas", 1) or 0)
    have = int((dep.get("status") or {}).get("readyReplicas", 0) or 0)
    return have >= want > 0


@click.command()
@click.option(
    "--revision", "-r", default=None, metavar="REV", help="control plane revision (canary upgrades)"
)
@click.option("--wait/--no-wait", default=True, help="wait until istiod is ready")
@click.option("--timeout", default=120.0, show_default=True, help="seconds to wait for readiness")
@click.option(
    "--cluster-id",
    default=None,
    help="cluster id in telemetry (default: the local cluster's name, as injected)",
)
@click.option("--context", "context", default=None, metavar="NAME", help="kubeconfig context")
@click.pass_context
@reports_errors
def install(
    ctx: click.Context,
    revision: str | None,
    wait: bool,
    timeout: float,
    cluster_id: str | None,
    context: str | None,
) -> None:
    """Install the control plane (istiod) into istio-system."""
    try:
        objects = manifests(revision)
    except InstallError as exc:
        fail(str(exc))
    from meshpilot.client.kubeconfig import credentials

    creds = credentials(context_name(ctx, context))
    if cluster_id is None and creds.context.startswith("meshpilot-"):
        cluster_id = creds.context.removeprefix("meshpilot-")  # the injector's ISTIO_META_CLUSTER_ID
    with Client(creds.server, creds.token, creds.namespace, ca_data=creds.ca_data) as client:
        for result in install_into(client, revision, cluster_id):
            kind = str(result.get("kind", "")).lower()
            click.echo(f"{kind}/{result.get('name')} {result.get('result')}")
        name = next(o["metadata"]["name"] for o in objects if o["kind"] == "Deployment")
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while not _deployment_ready(client, name):
            if time.monotonic() > deadline:
                fail(f"deployment {ISTIO_NAMESPACE}/{name} not ready after {timeout:g}s")
            time.sleep(0.5)
        click.echo(f"✔ Istiod ({name}, revision {revision or 'default'}) is ready")


# --- proxy-status ---------------------------------------------------------------------------------


def _pod_ip(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("podIP") or "")


def istiod_pods(client: Client, revision: str | None = None) -> list[dict[str, Any]]:
    selector = "app=istiod" + (f",istio.io/rev={revision}" if revision else "")
    pods = client.list(("", "pods"), ISTIO_NAMESPACE, label_selector=selector)
    return [p for p in pods if _pod_ip(p) and (p.get("status") or {}).get("phase") == "Running"]


def status_rows(entries: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    """istioctl's proxy-status rows from /debug/syncz entries."""
    rows = []
    for e in entries:
        proxy = str(e.get("proxy", ""))
        parts = proxy.split("~")
        name = parts[2] if len(parts) == 4 else proxy
        types = e.get("types") or {}
        rows.append(
            [
                name,
                str(e.get("cluster_id") or "Kubernetes"),
                *(str((types.get(t) or {}).get("status", "NOT SENT")) for t in ("cds", "lds", "eds", "rds")),
                str(e.get("istiod", "")),
                str(e.get("istio_version") or "-"),
            ]
        )
    return sorted(rows)


def _proxy_matches(proxy_id: str, wanted: str) -> bool:
    """``POD`` or ``POD.NAMESPACE`` against a node id ``sidecar~ip~pod.ns~domain``."""
    parts = proxy_id.split("~")
    name = parts[2] if len(parts) == 4 else proxy_id
    return wanted in (name, name.rpartition(".")[0], proxy_id)


STATUS_HEADERS = ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ISTIOD", "VERSION"]


@click.command("proxy-status")
@click.argument("pod", required=False, metavar="[POD[.NAMESPACE]]")
@click.option("--revision", "-r", default=None, metavar="REV", help="only this control plane revision")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@click.option("--context", "context", default=None, metavar="NAME", help="kubeconfig context")
@click.pass_context
@reports_errors
def proxy_status(
    ctx: click.Context, pod: str | None, revision: str | None, output: str, context: str | None
) -> None:
    """Sync status of every proxy with its control plane (SYNCED / NOT SENT / STALE).

    With POD[.NAMESPACE]: compare what istiod sent that proxy with what it runs (istioctl's diff).
    """
    with _client(ctx, context) as client:
        pods = istiod_pods(client, revision)
    if not pods:
        fail(f"no running istiod pods in {ISTIO_NAMESPACE} (install one with: meshpilot install)")
    entries: list[dict[str, Any]] = []
    for p in pods:
        url = f"http://{_pod_ip(p)}:{SYNCZ_PORT}/debug/syncz"
        try:
            r = httpx.get(url, timeout=5.0)
            r.raise_for_status()
            entries.extend(r.json())
        except (httpx.HTTPError, ValueError) as exc:
            click.echo(f"warning: {p['metadata']['name']}: cannot read {url}: {exc}", err=True)
    if pod:
        _compare_with_istiod(ctx, context, pod, entries, output)
        return
    if output == "json":
        click.echo(json.dumps(entries, indent=2))
        return
    click.echo(format_table(STATUS_HEADERS, status_rows(entries)))


COMPARED = (("Clusters", CLUSTERS_DUMP), ("Listeners", LISTENERS_DUMP), ("Routes", ROUTES_DUMP))


def config_diff(istiod: Mapping[str, Any], envoy: Mapping[str, Any]) -> list[tuple[str, bool, str]]:
    """istioctl's ``proxy-status POD``: per type, whether the proxy runs what istiod sent, and a diff."""
    getters = {"Clusters": clusters_of, "Listeners": listeners_of, "Routes": routes_of}
    out = []
    for title, _ in COMPARED:
        want = _canonical(getters[title](istiod))
        have = _canonical(getters[title](envoy))
        diff = "\n".join(
            difflib.unified_diff(
                want.splitlines(), have.splitlines(), f"Istiod {title}", f"Envoy {title}", lineterm=""
            )
        )
        out.append((title, want == have, diff))
    return out


def _canonical(resources: Sequence[Mapping[str, Any]]) -> str:
    key = "name"
    items = sorted(resources, key=lambda r: str(r.get(key, "")))
    return json.dumps(items, indent=1, sort_keys=True)


def _compare_with_istiod(
    ctx: click.Context, context: str | None, pod: str, entries: list[dict[str, Any]], output: str
) -> None:
    matching = [e for e in entries if _proxy_matches(str(e.get("proxy", "")), pod)]
    if not matching:
        fail(f"proxy {pod} is not connected to any istiod (see: meshpilot proxy-status)")
    entry = matching[-1]
    with _client(ctx, context) as client:
        istiod = next((p for p in istiod_pods(client) if p["metadata"]["name"] == entry.get("istiod")), None)
        if istiod is None:
            fail(f"istiod pod {entry.get('istiod')} is not running")
        target = _find_pod(client, pod, None)
    url = f"http://{_pod_ip(istiod)}:{SYNCZ_PORT}/debug/config_dump"
    try:
        r = httpx.get(url, params={"proxyID": str(entry["proxy"])}, timeout=10.0)
        r.raise_for_status()
        sent = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        fail(f"cannot read {url}: {exc}")
    running = _admin_get(_pod_ip(target), "/config_dump")
    results = config_diff(sent, running)
    if output == "json":
        click.echo(json.dumps([{"type": t, "match": ok, "diff": d} for t, ok, d in results], indent=2))
        return
    for title, ok, diff in results:
        if ok:
            click.echo(f"{title} Match")
        else:
            click.echo(f"{title} Don't Match")
            click.echo(diff)


# --- proxy-config -------------------------------------------------------------------------------------


def section(dump: Mapping[str, Any], type_url: str) -> Mapping[str, Any]:
    for c in dump.get("configs") or ():
        if isinstance(c, Mapping) and c.get("@type") == type_url:
            return c
    return {}


def _entries(sec: Mapping[str, Any], suffix: str) -> list[Any]:
    out: list[Any] = []
    for prefix in ("static", "dynamic", "dynamic_active"):
        out.extend(sec.get(f"{prefix}_{suffix}") or ())
    return out


def clusters_of(dump: Mapping[str, Any]) -> list[dict[str, Any]]:
    sec = section(dump, CLUSTERS_DUMP)
    return [
        e["cluster"]
        for e in _dedupe(_entries(sec, "clusters") + _entries(sec, "active_clusters"))
        if "cluster" in e
    ]


def _dedupe(items: list[Any]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = json.dumps(item, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def listeners_of(dump: Mapping[str, Any]) -> list[dict[str, Any]]:
    sec = section(dump, LISTENERS_DUMP)
    out = []
    for e in _dedupe(_entries(sec, "listeners")):
        listener = (e.get("active_state") or {}).get("listener") or e.get("listener")
        if listener:
            out.append(listener)
    return out


def routes_of(dump: Mapping[str, Any]) -> list[dict[str, Any]]:
    sec = section(dump, ROUTES_DUMP)
    return [e["route_config"] for e in _dedupe(_entries(sec, "route_configs")) if "route_config" in e]


def endpoints_of(dump: Mapping[str, Any]) -> list[dict[str, Any]]:
    sec = section(dump, ENDPOINTS_DUMP)
    loads = [
        e["endpoint_config"] for e in _dedupe(_entries(sec, "endpoint_configs")) if "endpoint_config" in e
    ]
    known = {c.get("cluster_name") for c in loads}
    for c in clusters_of(dump):
        la = c.get("load_assignment")
        if la and la.get("cluster_name") not in known:
            loads.append(la)
    return loads


def _config_ref(metadata: Any) -> str:
    """``name.namespace`` of the Istio resource behind a route or cluster, else ``-``."""
    path = ((metadata or {}).get("istio") or {}).get("config") if isinstance(metadata, Mapping) else None
    if not path:
        return "-"
    parts = str(path).strip("/").split("/")
    if "namespaces" in parts and len(parts) >= parts.index("namespaces") + 4:
        i = parts.index("namespaces")
        return f"{parts[i + 3]}.{parts[i + 1]}"
    return str(path)


def _cluster_order(c: Mapping[str, Any]) -> tuple[str, int, str, str]:
    """istioctl's order: by service FQDN, then port (numerically), subset, direction."""
    parts = str(c.get("name", "")).split("|")
    if len(parts) != 4:
        return (parts[0], 0, "", "")
    return (parts[3], int(parts[1]) if parts[1].isdigit() else 0, parts[2], parts[0])


def cluster_rows(clusters: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for c in sorted(clusters, key=_cluster_order):
        name = str(c.get("name", ""))
        parts = name.split("|")
        if len(parts) == 4:
            direction, port, subset, fqdn = parts
        else:
            direction, port, subset, fqdn = "-", "-", "-", name
        rows.append(
            [
                fqdn,
                port or "-",
                subset or "-",
                direction,
                str(c.get("type", "")),
                _config_ref(c.get("metadata")),
            ]
        )
    return rows


CLUSTER_HEADERS = ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"]


def listener_rows(
    listeners: Sequence[Mapping[str, Any]], routes: Sequence[Mapping[str, Any]]
) -> list[list[str]]:
    rows = []
    for x in sorted(listeners, key=lambda x: (int(x.get("port", 0)), str(x.get("name")))):
        address, port = str(x.get("address", "")), str(x.get("port", ""))
        if x.get("route_config_name"):
            rows.append([address, port, "ALL", f"Route: {x['route_config_name']}"])
            continue
        if x.get("traffic_direction") == "OUTBOUND":
            # virtualOutbound routes each destination port by its own route table
            for r in sorted(routes, key=lambda r: int(r["name"]) if str(r.get("name")).isdigit() else 0):
                rows.append([address, port, f"Port: {r.get('name')}", f"Route: {r.get('name')}"])
        rows.append([address, port, "ALL", f"Cluster: {x['cluster']}" if x.get("cluster") else "-"])
    return rows


LISTENER_HEADERS = ["ADDRESSES", "PORT", "MATCH", "DESTINATION"]


def _domains_text(domains: Sequence[str]) -> str:
    names = []
    for d in domains:
        host, _, port = d.rpartition(":")
        base = host if port.isdigit() and host else d
        if base not in names:
            names.append(base)
    if len(names) <= 2:
        return ", ".join(names)
    return f"{', '.join(names[:2])} + {len(names) - 2} more..."


def _match_text(match: Mapping[str, Any]) -> str:
    if "prefix" in match:
        return f"{match['prefix']}*"
    if "path" in match:
        return str(match["path"])
    if "safe_regex" in match:
        return f"regex {match['safe_regex']}"
    return "/*"


def route_rows(routes: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for rc in routes:
        for vh in rc.get("virtual_hosts") or ():
            for r in vh.get("routes") or ():
                rows.append(
                    [
                        str(rc.get("name", "")),
                        str(vh.get("name", "")),
                        _domains_text(vh.get("domains") or ()),
                        _match_text(r.get("match") or {}),
                        _config_ref(r.get("metadata")),
                    ]
                )
    return rows


ROUTE_HEADERS = ["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"]


def endpoint_rows(status: Mapping[str, Any] | None, loads: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """From the admin ``/clusters?format=json`` when available (health, outlier), else from EDS."""
    rows = []
    if status and status.get("cluster_statuses"):
        for c in status["cluster_statuses"]:
            for h in c.get("host_statuses") or ():
                sa = (h.get("address") or {}).get("socket_address") or {}
                health = h.get("health_status") or {}
                rows.append(
                    [
                        f"{sa.get('address')}:{sa.get('port_value')}",
                        str(health.get("eds_health_status", "HEALTHY")),
                        "FAILED" if health.get("failed_outlier_check") else "OK",
                        str(c.get("name", "")),
                    ]
                )
        return sorted(rows, key=lambda r: (_cluster_order({"name": r[3]}), r[0]))
    for load in loads:
        for group in load.get("endpoints") or ():
            for ep in group.get("lb_endpoints") or ():
                rows.append(
                    [
                        f"{ep.get('address')}:{ep.get('port')}",
                        str(ep.get("health_status", "HEALTHY")),
                        "OK",
                        str(load.get("cluster_name", "")),
                    ]
                )
    return sorted(rows, key=lambda r: (_cluster_order({"name": r[3]}), r[0]))


ENDPOINT_HEADERS = ["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]


def _find_pod(client: Client, target: str, namespace: str | None) -> dict[str, Any]:
    name, ns = target, namespace
    if "." in target and namespace is None:
        name, _, ns = target.partition(".")
    pod = client.get(("", "pods"), name, ns or client.namespace)
    if not _pod_ip(pod):
        fail(f"pod {name} has no IP yet")
    if not any(c.get("name") == "istio-proxy" for c in (pod.get("spec") or {}).get("containers") or ()):
        fail(f"pod {name}.{ns or client.namespace} has no istio-proxy sidecar")
    return pod


def _admin_get(ip: str, path: str) -> Any:
    url = f"http://{ip}:{ADMIN_PORT}{path}"
    try:
        r = httpx.get(url, timeout=10.0)
        r.raise_for_status()
        return r.json()
    except (httpx.HTTPError, ValueError) as exc:
        fail(f"cannot read the proxy's admin {url}: {exc}")


def _dump(output: str, value: Any) -> None:
    if output == "yaml":
        click.echo(yaml.safe_dump(value, sort_keys=False).rstrip())
    else:
        click.echo(json.dumps(value, indent=2))


@click.command("proxy-config")
@click.argument("what", type=click.Choice(["cluster", "listener", "route", "endpoint", "bootstrap", "all"]))
@click.argument("pod")
@click.option("-n", "--namespace", default=None, help="the pod's namespace (or POD.NAMESPACE)")
@click.option("-o", "--output", type=click.Choice(["short", "json", "yaml"]), default="short")
@click.option("--fqdn", default=None, help="clusters/endpoints of this service FQDN only")
@click.option("--port", default=None, type=int, help="clusters of this port only")
@click.option("--direction", type=click.Choice(["inbound", "outbound"]), default=None)
@click.option("--cluster", "cluster_name", default=None, help="endpoints of this cluster name only")
@click.option("--name", "route_name", default=None, help="routes of this route table name only")
@click.option("--context", "context", default=None, metavar="NAME", help="kubeconfig context")
@click.pass_context
@reports_errors
def proxy_config(
    ctx: click.Context,
    what: str,
    pod: str,
    namespace: str | None,
    output: str,
    fqdn: str | None,
    port: int | None,
    direction: str | None,
    cluster_name: str | None,
    route_name: str | None,
    context: str | None,
) -> None:
    """A sidecar's configuration, as istioctl proxy-config shows it (POD[.NAMESPACE])."""
    with _client(ctx, context) as client:
        target = _find_pod(client, pod, namespace)
    ip = _pod_ip(target)
    dump = _admin_get(ip, "/config_dump")

    clusters = clusters_of(dump)
    if fqdn or port or direction:

        def keep(name: str) -> bool:
            parts = name.split("|")
            if len(parts) != 4:
                return not (fqdn or port or direction)
            return (
                (not fqdn or parts[3] == fqdn)
                and (not port or parts[1] == str(port))
                and (not direction or parts[0] == direction)
            )

        clusters = [c for c in clusters if keep(str(c.get("name", "")))]
    listeners, routes = listeners_of(dump), routes_of(dump)
    loads = endpoints_of(dump)
    if fqdn:
        loads = [x for x in loads if str(x.get("cluster_name", "")).endswith(f"|{fqdn}")]
    if cluster_name:
        loads = [x for x in loads if x.get("cluster_name") == cluster_name]
    if route_name and what == "route":  # listener rows still need every route table
        routes = [r for r in routes if r.get("name") == route_name]

    if what == "bootstrap":
        # istioctl prints the whole BootstrapConfigDump, so scripts read `.bootstrap.<field>`
        boot = {k: v for k, v in section(dump, BOOTSTRAP_DUMP).items() if k != "@type"}
        _dump(output if output != "short" else "json", boot or {"bootstrap": {}})
        return
    if output != "short":
        value: Any = {
            "cluster": clusters,
            "listener": listeners,
            "route": routes,
            "endpoint": loads,
            "all": dump,
        }[what]
        _dump(output, value)
        return
    blocks: list[str] = []
    if what in ("cluster", "all"):
        blocks.append(format_table(CLUSTER_HEADERS, cluster_rows(clusters)))
    if what in ("listener", "all"):
        blocks.append(format_table(LISTENER_HEADERS, listener_rows(listeners, routes)))
    if what in ("route", "all"):
        blocks.append(format_table(ROUTE_HEADERS, route_rows(routes)))
    if what in ("endpoint", "all"):
        status = _admin_get(ip, "/clusters?format=json")
        rows = endpoint_rows(status, loads)
        if fqdn:
            rows = [r for r in rows if r[3].endswith(f"|{fqdn}")]
        if cluster_name:
            rows = [r for r in rows if r[3] == cluster_name]
        blocks.append(format_table(ENDPOINT_HEADERS, rows))
    click.echo("\n\n".join(blocks))
