"""The mesh end to end on real processes: cluster daemon, istiod pods, injected sidecars, sample apps.

frontend app --$HTTP_PROXY--> frontend sidecar (outbound 15001) --> productcatalog sidecar (inbound
:8080) --> productcatalog app (internal port). Requests in these tests enter at the frontend
sidecar's outbound listener, exactly where the frontend app's own requests enter.
"""

from __future__ import annotations

import http.server
import json
import math
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest
from e2e_mesh import CATALOG_HOST, ISTIO, Mesh, wait_for
from e2e_traffic import Paced, burst, get
from prometheus_client.parser import text_string_to_metric_families

import meshpilot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CATALOG = f"http://{CATALOG_HOST}"

DESTINATION_RULE = f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: productcatalog, namespace: production}}
spec:
  host: {CATALOG_HOST}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"""


def split_vs(v1: int, v2: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: productcatalog, namespace: production}}
spec:
  hosts: [productcatalog.production.svc.cluster.local]
  http:
  - name: split
    route:
    - {{destination: {{host: {CATALOG_HOST}, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: {CATALOG_HOST}, subset: v2}}, weight: {v2}}}
"""


def binomial_interval(n: int, p: float, confidence: float) -> tuple[int, int]:
    """Smallest central interval [lo, hi] of Binomial(n, p) holding at least ``confidence``."""
    tail = (1 - confidence) / 2

    def pmf(k: int) -> float:
        return (
            math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1))
            * p**k
            * (1 - p) ** (n - k)
        )

    lo, acc = 0, 0.0
    while acc + pmf(lo) <= tail:
        acc += pmf(lo)
        lo += 1
    hi, acc = n, 0.0
    while acc + pmf(hi) <= tail:
        acc += pmf(hi)
        hi -= 1
    return lo, hi


def wait_routes(mesh: Mesh, *needles: str, absent: tuple[str, ...] = (), timeout: float = 15) -> None:
    """Until the frontend sidecar's routes contain every needle (and none of ``absent``), and every
    proxy is SYNCED again."""

    def ok() -> bool:
        text = mesh.routes_of(mesh.frontend)
        return all(n in text for n in needles) and not any(a in text for a in absent)

    wait_for(f"routes with {needles} without {absent}", ok, timeout=timeout)
    wait_for("every proxy SYNCED", mesh.all_synced, timeout=timeout)


@pytest.fixture
def subsets(mesh: Mesh) -> Iterator[None]:
    mesh.apply(DESTINATION_RULE)
    try:
        yield
    finally:
        mesh.delete("virtualservices.networking.istio.io", "productcatalog", "production")
        mesh.delete("destinationrules.networking.istio.io", "productcatalog", "production")
        wait_routes(mesh, f"outbound|80||{CATALOG_HOST}", absent=("|v1|",))


# --- the mesh is there -------------------------------------------------------------------------


def test_mesh_installed_and_every_app_pod_has_a_sidecar(mesh: Mesh) -> None:
    istiod = mesh.pods(ISTIO, "app=istiod")
    assert istiod, "no istiod pod running in istio-system"
    for pod in istiod:
        assert [c["name"] for c in pod["spec"]["containers"]] == ["discovery"]  # never injected
    for pod in mesh.app_pods():
        names = [c["name"] for c in pod["spec"]["containers"]]
        assert names[-1] == "istio-proxy" and len(names) == 2, names
        assert "sidecar.istio.io/status" in pod["metadata"]["annotations"]
        app = pod["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in app["env"]}
        assert env["HTTP_PROXY"] == env["http_proxy"] == "http://$(POD_IP):15001"
        ready = {s["name"]: s["ready"] for s in pod["status"]["containerStatuses"]}
        assert ready == {names[0]: True, "istio-proxy": True}


def test_frontend_reaches_productcatalog_through_both_sidecars(mesh: Mesh) -> None:
    svc = mesh.client.get(("", "services"), "frontend", "frontend")
    frontend = mesh.frontend
    catalog = {p["metadata"]["name"]: p for p in mesh.pods("production", "app=productcatalog")}
    from_frontend = {"source_workload": "frontend", "destination_service": CATALOG_HOST}

    def counted() -> dict[str, int]:
        out = {"frontend": sum(requests_by(mesh.scrape(frontend), "source", **from_frontend).values())}
        for name, pod in catalog.items():
            out[name] = sum(requests_by(mesh.scrape(pod), "destination", **from_frontend).values())
        return out

    before = counted()
    resp = httpx.get(f"http://{svc['spec']['clusterIP']}/api/products", timeout=10, trust_env=False)
    assert resp.status_code == 200, resp.text
    upstream = resp.json()["productcatalog"]
    assert upstream["status"] == 200 and upstream["version"] in ("v1", "v2")
    # the frontend app used its sidecar ($HTTP_PROXY), not the ClusterIP
    assert upstream["via"] == f"via proxy http://{frontend['status']['podIP']}:15001"
    # its sidecar counted the call as source, the serving pod's sidecar as destination; no one else
    after = counted()
    assert {k: after[k] - before[k] for k in after} == {
        name: 1 if name in ("frontend", upstream["pod"]) else 0 for name in after
    }


# --- routing -----------------------------------------------------------------------------------


def test_weighted_split_90_10_within_binomial_interval(mesh: Mesh, subsets: None) -> None:
    mesh.apply(split_vs(90, 10))
    wait_routes(mesh, '"weight": 90', f"outbound|80|v2|{CATALOG_HOST}")
    replies = burst(mesh.frontend_proxy, f"{CATALOG}/products", n=1000, concurrency=8)
    assert Counter(r.status for r in replies) == {200: 1000}, [r.error for r in replies if r.status != 200][
        :3
    ]
    versions = Counter(r.version for r in replies)
    assert set(versions) <= {"v1", "v2"}
    lo, hi = binomial_interval(1000, 0.10, 0.999)
    assert lo <= versions["v2"] <= hi, (versions, (lo, hi))
    # subset v1 spreads over both v1 pods; subset v2 has one pod
    pods = {r.pod for r in replies if r.version == "v1"}
    assert len(pods) == 2, pods


def test_header_and_uri_matches_route_as_istio(mesh: Mesh, subsets: None) -> None:
    mesh.apply(
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productcatalog, namespace: production}
spec:
  hosts: [productcatalog]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: productcatalog, subset: v2}}]
  - name: v2-prefix
    match: [{uri: {prefix: /v2/}}]
    rewrite: {uri: /api/}
    route: [{destination: {host: productcatalog, subset: v2}}]
  - name: exact
    match: [{uri: {exact: /api/products/3}}]
    route: [{destination: {host: productcatalog, subset: v2}}]
  - name: regex
    match: [{uri: {regex: "/api/products/[0-9]{2,}"}}]
    route: [{destination: {host: productcatalog, subset: v2}}]
  - name: default
    route: [{destination: {host: productcatalog, subset: v1}}]
"""
    )
    wait_routes(mesh, "end-user", '"regex"')
    proxy = mesh.frontend_proxy

    def versions(
        path: str, headers: dict[str, str] | None = None, n: int = 10
    ) -> Counter[tuple[int, str | None]]:
        return Counter((r.status, r.version) for r in burst(proxy, f"{CATALOG}{path}", n, headers, 4))

    # header match: exact value, header names case-insensitive, values case-sensitive
    assert versions("/api/products", {"end-user": "jason"}) == {(200, "v2"): 10}
    assert versions("/api/products", {"End-User": "jason"}) == {(200, "v2"): 10}
    assert versions("/api/products", {"end-user": "Jason"}) == {(200, "v1"): 10}
    assert versions("/api/products") == {(200, "v1"): 10}
    # prefix + rewrite: /v2/products only exists on the app as /api/products, so 200 proves the rewrite
    assert versions("/v2/products") == {(200, "v2"): 10}
    assert versions("/v2") == {(404, "v1"): 10}  # prefix "/v2/" does not match "/v2"
    # exact ignores the query string, as Envoy's path match does
    assert versions("/api/products/3") == {(200, "v2"): 10}
    assert versions("/api/products/3?currency=EUR") == {(200, "v2"): 10}
    assert versions("/api/products/4") == {(200, "v1"): 10}
    # regex must match the whole path
    assert versions("/api/products/12") == {(404, "v2"): 10}
    assert versions("/api/products/1") == {(200, "v1"): 10}
    assert versions("/api/products/12/x") == {(404, "v1"): 10}
    # first match wins: the header rule comes before the rewrite rule, so no rewrite happens
    assert versions("/v2/products", {"end-user": "jason"}) == {(404, "v2"): 10}


# --- outside the mesh --------------------------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A plain HTTP server outside the mesh that answers with what it received."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        type(self).seen.append({"path": self.path, "host": self.headers.get("Host", "")})
        body = json.dumps({"external": True, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def external() -> Iterator[tuple[str, int]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_service_entry_reaches_a_local_external_server(mesh: Mesh, external: tuple[str, int]) -> None:
    ip, port = external
    mesh.apply(
        f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: payments, namespace: frontend}}
spec:
  hosts: [api.payments.example]
  location: MESH_EXTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {ip}, ports: {{http: {port}}}}}]
"""
    )
    try:
        wait_routes(mesh, "api.payments.example")
        _Recorder.seen.clear()
        reply = get(mesh.frontend_proxy, "http://api.payments.example/charge?id=7")
        assert reply.status == 200, reply
        assert json.loads(reply.body) == {"external": True, "path": "/charge?id=7"}
        assert _Recorder.seen == [{"path": "/charge?id=7", "host": "api.payments.example"}]
        families = parse(mesh.scrape(mesh.frontend))
        external_series = [
            s.labels
            for s in families["istio_requests"].samples
            if s.name == "istio_requests_total"
            and s.labels["destination_service"] == "api.payments.example"
            and s.labels["reporter"] == "source"
        ]
        assert external_series
        assert {labels["destination_workload"] for labels in external_series} == {"unknown"}
    finally:
        mesh.delete("serviceentries.networking.istio.io", "payments", "frontend")
        wait_routes(mesh, CATALOG_HOST, absent=("api.payments.example",))


def set_outbound_policy(mesh: Mesh, mode: str) -> None:
    cm = mesh.client.get(("", "configmaps"), "istio", ISTIO)
    text = cm["data"]["mesh"]
    current = "REGISTRY_ONLY" if "REGISTRY_ONLY" in text else "ALLOW_ANY"
    mesh.client.patch(("", "configmaps"), "istio", {"data": {"mesh": text.replace(current, mode)}}, ISTIO)


def test_unknown_hosts_pass_through_or_are_blocked_per_outbound_policy(
    mesh: Mesh, external: tuple[str, int]
) -> None:
    ip, port = external
    proxy = mesh.frontend_proxy
    unknown = f"http://{ip}:{port}/direct"  # not a Service, not a ServiceEntry
    # ALLOW_ANY (the installed default): passes through to the original destination
    _Recorder.seen.clear()
    reply = get(proxy, unknown)
    assert reply.status == 200 and _Recorder.seen == [{"path": "/direct", "host": f"{ip}:{port}"}]
    set_outbound_policy(mesh, "REGISTRY_ONLY")
    try:
        wait_routes(mesh, CATALOG_HOST, absent=("allow_any",))
        _Recorder.seen.clear()
        # REGISTRY_ONLY: HTTP to a host outside the registry gets Envoy's no-route answer, 404
        # with flag NR, on a port with routes (80) as on any other port
        for url in ("http://unknown.example/", unknown):
            reply = get(proxy, url)
            assert reply.status == 404, url
        assert _Recorder.seen == []  # nothing leaked out
        blackholed = {
            s.labels["destination_service"]
            for s in parse(mesh.scrape(mesh.frontend))["istio_requests"].samples
            if s.name == "istio_requests_total"
            and s.labels["destination_service_name"] == "BlackHoleCluster"
            and (s.labels["response_code"], s.labels["response_flags"]) == ("404", "NR")
        }
        assert {"unknown.example", ip} <= blackholed, blackholed
        # registered services keep working
        assert get(proxy, f"{CATALOG}/products").status == 200
    finally:
        set_outbound_policy(mesh, "ALLOW_ANY")
        wait_routes(mesh, "allow_any")
    _Recorder.seen.clear()
    assert get(proxy, unknown).status == 200 and len(_Recorder.seen) == 1


def test_known_host_without_a_matching_route_is_404_nr(mesh: Mesh, subsets: None) -> None:
    mesh.apply(
        f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: productcatalog, namespace: production}}
spec:
  hosts: [{CATALOG_HOST}]
  http:
  - match: [{{headers: {{x-canary: {{exact: "1"}}}}}}]
    route: [{{destination: {{host: {CATALOG_HOST}, subset: v2}}}}]
"""
    )
    wait_routes(mesh, "x-canary", absent=(f'"cluster": "outbound|80||{CATALOG_HOST}"',))
    before = requests_by(mesh.scrape(mesh.frontend), "source", destination_service=CATALOG_HOST)
    assert get(mesh.frontend_proxy, f"{CATALOG}/products", {"x-canary": "1"}).status == 200
    assert get(mesh.frontend_proxy, f"{CATALOG}/products").status == 404
    after = requests_by(mesh.scrape(mesh.frontend), "source", destination_service=CATALOG_HOST)
    assert after - before == Counter({("200", "-"): 1, ("404", "NR"): 1})


# --- telemetry ---------------------------------------------------------------------------------


def parse(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def requests_by(text: str, reporter: str, **labels: str) -> Counter[tuple[str, str]]:
    """istio_requests_total summed per (response_code, response_flags) for one reporter."""
    out: Counter[tuple[str, str]] = Counter()
    family = parse(text).get("istio_requests")
    for s in family.samples if family else []:
        if s.name != "istio_requests_total" or s.labels["reporter"] != reporter:
            continue
        if all(s.labels.get(k) == v for k, v in labels.items()):
            out[(s.labels["response_code"], s.labels["response_flags"])] += int(s.value)
    return out


def test_sidecar_metrics_count_exactly_the_requests_sent(mesh: Mesh) -> None:
    frontend = mesh.frontend
    catalog = mesh.pods("production", "app=productcatalog")
    from_frontend = {"source_workload": "frontend", "source_workload_namespace": "frontend"}
    to_catalog = {"destination_service": CATALOG_HOST, "destination_app": "productcatalog"}

    def snapshot() -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
        src = requests_by(mesh.scrape(frontend), "source", **from_frontend, **to_catalog)
        dst: Counter[tuple[str, str]] = Counter()
        for pod in catalog:
            dst += requests_by(mesh.scrape(pod), "destination", **from_frontend, **to_catalog)
        return src, dst

    src0, dst0 = snapshot()
    ok = burst(mesh.frontend_proxy, f"{CATALOG}/products", n=37, concurrency=4)
    missing = burst(mesh.frontend_proxy, f"{CATALOG}/no-such-page", n=11, concurrency=4)
    assert [r.status for r in ok] == [200] * 37 and [r.status for r in missing] == [404] * 11
    src1, dst1 = snapshot()
    expected = Counter({("200", "-"): 37, ("404", "-"): 11})
    assert src1 - src0 == expected
    assert dst1 - dst0 == expected
    # both reporters agree on the identities and the cluster of either end
    for pod, reporter in [(frontend, "source"), *((p, "destination") for p in catalog)]:
        for s in parse(mesh.scrape(pod))["istio_requests"].samples:
            labels = s.labels
            if (
                labels["reporter"] != reporter
                or labels["destination_service"] != CATALOG_HOST
                or labels["response_flags"] != "-"  # e.g. NR (no route: no upstream workload)
            ):
                continue
            assert labels["source_workload"] == "frontend"
            assert labels["source_app"] == "frontend" and labels["source_version"] == "v1"
            assert labels["destination_workload"] in ("productcatalog-v1", "productcatalog-v2")
            assert labels["destination_service_name"] == "productcatalog"
            assert labels["destination_service_namespace"] == "production"
            assert labels["source_cluster"] == labels["destination_cluster"] == mesh.name, labels
    # Istio's other standard metrics exist with the same labels and the histogram's buckets
    families = parse(mesh.scrape(frontend))
    for name in ("istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"):
        assert name in families, sorted(families)
    buckets = {
        float(s.labels["le"])
        for s in families["istio_request_duration_milliseconds"].samples
        if s.name.endswith("_bucket")
    }
    istio_buckets = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000]
    assert set(istio_buckets) | {math.inf} <= buckets, sorted(buckets)


# --- diagnostics -------------------------------------------------------------------------------


def test_proxy_status_and_proxy_config_show_the_mesh(mesh: Mesh, subsets: None) -> None:
    mesh.apply(split_vs(90, 10))
    wait_routes(mesh, '"weight": 90')
    rows = mesh.proxy_status()
    istiod = {p["metadata"]["name"] for p in mesh.pods(ISTIO, "app=istiod")}
    for pod in mesh.app_pods():
        name = f"{pod['metadata']['name']}.{pod['metadata']['namespace']}"
        assert rows[name][1:5] == ["SYNCED"] * 4, (name, rows[name])
        assert rows[name][5] in istiod
        assert rows[name][6] == meshpilot.__version__  # VERSION: the injected ISTIO_META_ISTIO_VERSION
    target = f"{mesh.frontend['metadata']['name']}.frontend"

    result = mesh.cli("proxy-config", "cluster", target)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "SERVICE",
        "FQDN",
        "PORT",
        "SUBSET",
        "DIRECTION",
        "TYPE",
        "DESTINATION",
        "RULE",
    ]
    table = [line.split() for line in lines[1:]]
    assert [CATALOG_HOST, "80", "-", "outbound", "EDS", "productcatalog.production"] in table, lines
    assert [CATALOG_HOST, "80", "v1", "outbound", "EDS", "productcatalog.production"] in table, lines
    assert [CATALOG_HOST, "80", "v2", "outbound", "EDS", "productcatalog.production"] in table, lines
    assert any(row[:2] == ["PassthroughCluster", "-"] for row in table)

    result = mesh.cli("proxy-config", "route", target)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "VHOST", "NAME", "DOMAINS", "MATCH", "VIRTUAL", "SERVICE"]
    catalog_rows = [line.split() for line in lines[1:] if f"{CATALOG_HOST}:80" in line]
    assert catalog_rows and all(r[0] == "80" and r[-1] == "productcatalog.production" for r in catalog_rows)

    result = mesh.cli("proxy-config", "route", target, "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert f"outbound|80|v2|{CATALOG_HOST}" in result.stdout

    result = mesh.cli("proxy-config", "endpoint", target, "--fqdn", CATALOG_HOST)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ENDPOINT", "STATUS", "OUTLIER", "CHECK", "CLUSTER"]
    rows = {tuple(line.split()) for line in lines[1:]}
    for pod in mesh.pods("production", "app=productcatalog"):
        ip, version = pod["status"]["podIP"], pod["metadata"]["labels"]["version"]
        assert (f"{ip}:8080", "HEALTHY", "OK", f"outbound|80||{CATALOG_HOST}") in rows, lines
        assert (f"{ip}:8080", "HEALTHY", "OK", f"outbound|80|{version}|{CATALOG_HOST}") in rows, lines


# --- changes under load --------------------------------------------------------------------------


def test_virtualservice_change_under_200_rps_loses_nothing(mesh: Mesh, subsets: None) -> None:
    mesh.apply(split_vs(100, 0))
    wait_routes(mesh, '"weight": 100')
    with Paced(mesh.frontend_proxy, f"{CATALOG}/products", rate=200) as load:
        time.sleep(1.5)
        changed_at = time.monotonic()
        mesh.apply(split_vs(0, 100))
        wait_for(
            "the new routes in the frontend sidecar",
            lambda: (
                f'"name": "outbound|80|v2|{CATALOG_HOST}", "weight": 100' in mesh.routes_of(mesh.frontend)
            ),
            timeout=2,
            interval=0.05,
        )
        wait_for("every proxy SYNCED", mesh.all_synced, timeout=max(0.1, 2 - (time.monotonic() - changed_at)))
        synced_in = time.monotonic() - changed_at
        time.sleep(1.5)
    replies = load.replies
    assert synced_in <= 2.0
    failed = [r for r in replies if r.status != 200]
    assert not failed, failed[:3]
    duration = max(r.at for r in replies) - min(r.at for r in replies)
    assert len(replies) / duration >= 150, (len(replies), duration)  # the load really was ~200/s
    before = [r.version for r in replies if r.at < changed_at]
    after = [r.version for r in replies if r.at > changed_at + synced_in]
    assert set(before) == {"v1"} and set(after) == {"v2"}, (Counter(before), Counter(after))


def istiod_down(mesh: Mesh) -> bool:
    try:
        return not mesh.syncz()
    except httpx.HTTPError:
        return True


def test_istiod_killed_during_traffic_then_proxies_resync(mesh: Mesh, subsets: None) -> None:
    mesh.apply(split_vs(100, 0))
    wait_routes(mesh, '"weight": 100', f"outbound|80|v1|{CATALOG_HOST}")
    (old,) = mesh.pods(ISTIO, "app=istiod")
    pid = int(old["status"]["containerStatuses"][0]["containerID"].removeprefix("meshpilot://").split("-")[0])
    with Paced(mesh.frontend_proxy, f"{CATALOG}/products", rate=100) as load:
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        wait_for("istiod to be gone", lambda: istiod_down(mesh), timeout=10, interval=0.05)
        time.sleep(1.0)  # traffic on the last configuration, with no control plane
        wait_for("istiod back and every proxy SYNCED", mesh.all_synced, timeout=30)
        time.sleep(0.5)
    replies = load.replies
    assert len(replies) > 150
    failed = [r for r in replies if r.status != 200]
    assert not failed, failed[:3]
    # the new istiod serves live config: a change made after the restart reaches the proxies
    mesh.apply(split_vs(0, 100))
    wait_routes(mesh, f'"name": "outbound|80|v2|{CATALOG_HOST}", "weight": 100', timeout=10)
    assert {r.version for r in burst(mesh.frontend_proxy, f"{CATALOG}/products", n=20)} == {"v2"}


# --- rejected config, consistent hashing, header edits, access log ---------------------------------


def test_config_the_proxy_rejects_is_nacked_and_old_routes_keep_serving(mesh: Mesh, subsets: None) -> None:
    mesh.apply(split_vs(100, 0))
    wait_routes(mesh, '"weight": 100', f"outbound|80|v1|{CATALOG_HOST}")
    good_routes = mesh.routes_of(mesh.frontend)
    mesh.apply(
        f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: productcatalog, namespace: production}}
spec:
  hosts: [{CATALOG_HOST}]
  http:
  - match: [{{uri: {{regex: "/api/(["}}}}]
    route: [{{destination: {{host: {CATALOG_HOST}, subset: v2}}}}]
  - route: [{{destination: {{host: {CATALOG_HOST}, subset: v2}}}}]
"""
    )
    target = f"{mesh.frontend['metadata']['name']}.frontend"

    def nacked() -> bool:
        entry = next(e for e in mesh.syncz() if target in e["proxy"])
        rds = entry["types"]["rds"]
        return bool(rds["nacked_nonce"]) and "regex" in rds["error"]

    wait_for("the frontend sidecar to NACK the routes", nacked, timeout=10)
    assert mesh.proxy_status()[target][4].startswith("STALE")  # RDS
    assert mesh.routes_of(mesh.frontend) == good_routes  # the last good config, untouched
    assert {r.version for r in burst(mesh.frontend_proxy, f"{CATALOG}/products", n=30)} == {"v1"}
    # a fixed config is accepted and every proxy is SYNCED again
    mesh.apply(split_vs(0, 100))
    wait_routes(mesh, f'"name": "outbound|80|v2|{CATALOG_HOST}", "weight": 100')
    assert {r.version for r in burst(mesh.frontend_proxy, f"{CATALOG}/products", n=30)} == {"v2"}


def test_consistent_hash_keeps_a_header_value_on_one_pod(mesh: Mesh) -> None:
    mesh.apply(
        f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: productcatalog, namespace: production}}
spec:
  host: {CATALOG_HOST}
  trafficPolicy:
    loadBalancer:
      consistentHash: {{httpHeaderName: x-user}}
"""
    )
    try:
        wait_routes(mesh, "x-user")
        pods_per_user = {
            user: {r.pod for r in burst(mesh.frontend_proxy, f"{CATALOG}/products", 15, {"x-user": user}, 3)}
            for user in (f"user-{i}" for i in range(12))
        }
        assert all(len(pods) == 1 for pods in pods_per_user.values()), pods_per_user
        # and the users spread over the pods: 12 users on one of 3 pods would be a broken hash
        assert len(set().union(*pods_per_user.values())) >= 2, pods_per_user
    finally:
        mesh.delete("destinationrules.networking.istio.io", "productcatalog", "production")
        wait_routes(mesh, CATALOG_HOST, absent=("x-user",))


def test_redirect_and_header_edits(mesh: Mesh, subsets: None) -> None:
    mesh.apply(
        f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: productcatalog, namespace: production}}
spec:
  hosts: [{CATALOG_HOST}]
  http:
  - match: [{{uri: {{prefix: /old/}}}}]
    redirect: {{uri: /api/products, authority: shop.example, redirectCode: 308}}
  - route:
    - destination: {{host: {CATALOG_HOST}, subset: v2}}
      headers:
        response: {{set: {{x-served-by: mesh-v2}}, remove: [x-pod-name]}}
    headers:
      request: {{set: {{traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01}}}}
      response: {{add: {{x-route: canary}}}}
"""
    )
    wait_routes(mesh, "redirect", "x-served-by")
    import asyncio

    import aiohttp

    async def fetch(path: str) -> tuple[int, dict[str, str]]:
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            session.get(f"{CATALOG}{path}", proxy=mesh.frontend_proxy, allow_redirects=False) as resp,
        ):
            await resp.read()
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}

    status, headers = asyncio.run(fetch("/old/anything"))
    assert status == 308 and headers["location"] == "http://shop.example/api/products", headers
    status, headers = asyncio.run(fetch("/api/products"))
    assert status == 200 and headers["x-version"] == "v2"
    assert headers["x-served-by"] == "mesh-v2" and headers["x-route"] == "canary"
    assert "x-pod-name" not in headers
    # the request header set by the route reached the app (it echoes trace headers back)
    assert headers["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_access_log_lines_parse_back_into_their_fields(mesh: Mesh) -> None:
    from meshpilot.proxy.accesslog import parse_text_line

    cm = mesh.client.get(("", "configmaps"), "istio", ISTIO)
    original = cm["data"]["mesh"]
    turned_on = original.replace('accessLogFile: ""', "accessLogFile: /dev/stdout")
    assert turned_on != original, original
    mesh.client.patch(("", "configmaps"), "istio", {"data": {"mesh": turned_on}}, ISTIO)
    frontend = mesh.frontend
    log = (
        mesh.home
        / "clusters"
        / mesh.name
        / "pods"
        / "frontend"
        / frontend["metadata"]["name"]
        / "istio-proxy.log"
    )
    try:
        wait_for(
            "access logging in the frontend sidecar's listeners",
            lambda: "/dev/stdout" in json.dumps(mesh.config_dump(frontend)),
            timeout=10,
        )
        request_id = f"e2e-access-log-{time.monotonic_ns()}"
        reply = get(mesh.frontend_proxy, f"{CATALOG}/products?probe=1", {"x-request-id": request_id})
        assert reply.status == 200

        def line() -> str | None:
            return next((ln for ln in log.read_text().splitlines() if request_id in ln), None)

        fields = parse_text_line(wait_for("the access log line", line, timeout=5))
        assert fields["REQ(:METHOD)"] == "GET"
        assert fields["REQ(X-ENVOY-ORIGINAL-PATH?:PATH)"] == "/products?probe=1"
        assert fields["RESPONSE_CODE"] == "200" and fields["RESPONSE_FLAGS"] == "-"
        assert fields["REQ(X-REQUEST-ID)"] == request_id
        assert fields["REQ(:AUTHORITY)"] == CATALOG_HOST
        assert fields["UPSTREAM_CLUSTER"] == f"outbound|80||{CATALOG_HOST}"
    finally:
        mesh.client.patch(("", "configmaps"), "istio", {"data": {"mesh": original}}, ISTIO)
        wait_for(
            "access logging off again",
            lambda: "/dev/stdout" not in json.dumps(mesh.config_dump(frontend)),
            timeout=10,
        )


def test_istiod_pod_deleted_during_traffic_proxies_move_to_the_new_pod(mesh: Mesh, subsets: None) -> None:
    mesh.apply(split_vs(100, 0))
    wait_routes(mesh, '"weight": 100', f"outbound|80|v1|{CATALOG_HOST}")
    (old,) = mesh.pods(ISTIO, "app=istiod")
    old_name = old["metadata"]["name"]
    with Paced(mesh.frontend_proxy, f"{CATALOG}/products", rate=100) as load:
        time.sleep(0.5)
        mesh.client.delete(("", "pods"), old_name, ISTIO, grace_period_seconds=0)

        def moved() -> bool:
            pods = mesh.pods(ISTIO, "app=istiod")
            if [p["metadata"]["name"] for p in pods] == [old_name] or not pods:
                return False
            rows = mesh.proxy_status()
            return mesh.all_synced() and all(row[5] != old_name for row in rows.values())

        wait_for("a new istiod pod with every proxy SYNCED to it", moved, timeout=45, interval=0.3)
    failed = [r for r in load.replies if r.status != 200]
    assert len(load.replies) > 100 and not failed, failed[:3]
    (new,) = mesh.pods(ISTIO, "app=istiod")
    assert new["metadata"]["name"] != old_name
    mesh.apply(split_vs(0, 100))
    wait_routes(mesh, f'"name": "outbound|80|v2|{CATALOG_HOST}", "weight": 100', timeout=10)
    assert {r.version for r in burst(mesh.frontend_proxy, f"{CATALOG}/products", n=20)} == {"v2"}


def test_service_names_resolve_as_kubernetes_dns_would(mesh: Mesh) -> None:
    svc = mesh.client.get(("", "services"), "productcatalog", "production")
    names = [
        "productcatalog.production",
        "productcatalog.production.svc",
        CATALOG_HOST,
        svc["spec"]["clusterIP"],
        f"{CATALOG_HOST}:80",
    ]
    for name in names:
        reply = get(mesh.frontend_proxy, f"http://{name}/products")
        assert reply.status == 200 and reply.version in ("v1", "v2"), (name, reply)
    # the bare name is the caller's own namespace: from production it is the catalogue ...
    v2 = mesh.pod("production", "version=v2")
    reply = get(f"http://{v2['status']['podIP']}:15001", "http://productcatalog/products")
    assert reply.status == 200 and reply.version in ("v1", "v2"), reply
    # ... and from frontend it is not (no such Service there), so it never reaches the catalogue
    reply = get(mesh.frontend_proxy, "http://productcatalog/products")
    assert reply.version is None and reply.status != 200, reply
