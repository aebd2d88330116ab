"""``meshpilot demo``: the whole foundation in one command, on a cluster of its own.

It starts a local cluster in a fresh temporary ``MESHPILOT_HOME`` (so it never touches the user's
clusters), installs the mesh (istiod in istio-system), applies the sample apps shipped in the package
(``meshpilot/samples/manifests``, the same files as ``examples/``, with both namespaces labelled
``istio-injection=enabled`` so every pod gets a sidecar, and the 90/10 v1/v2 VirtualService), waits
for the pods and for every sidecar to be SYNCED, sends requests through the frontend's ClusterIP
(frontend -> its sidecar -> productcatalog's sidecar -> productcatalog), prints what it saw (which
version and pod answered, the split against the VirtualService's weights, status codes, latencies,
the sidecars' Istio metrics), and tears everything down — also on Ctrl-C, SIGTERM or an error. ``--keep``
leaves the cluster running and prints how to reach it.

The demo is a list of steps over one ``DemoRun`` so that later stages (installing the mesh,
labelling ``production`` for injection, a 90/10 VirtualService, reading Istio metrics) slot in as
extra steps and extra report sections without reshaping the rest.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

import click
import httpx
from rich.console import Console
from rich.table import Table

from meshpilot.cli import demo_mesh
from meshpilot.cli.common import CliError, Command

CLUSTER_NAME = "demo"
WATCHED_NAMESPACES = ("production", "frontend")
FRONTEND = ("frontend", "frontend")  # (namespace, service)


def packaged_manifests() -> Path:
    """The sample apps' manifests inside the installed package (identical to examples/)."""
    return Path(str(resources.files("meshpilot.samples") / "manifests"))


@dataclass
class Sample:
    """One request through the frontend, as the demo saw it."""

    status: int
    seconds: float
    version: str | None = None
    pod: str | None = None
    upstream_ms: float | None = None
    error: str | None = None


@dataclass
class DemoRun:
    """Everything one demo run knows; each step reads and extends it."""

    console: Console
    home: Path
    deadline: float
    client: Any = None  # meshpilot.client.Client once the cluster is up
    info: Any = None  # meshpilot.cluster.state.ClusterInfo
    frontend_url: str = ""
    samples: list[Sample] = field(default_factory=list)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check_deadline(self, what: str) -> None:
        if self.remaining() <= 0:
            raise CliError(f"demo timed out while {what}")


# --- steps -------------------------------------------------------------------------------------


def start_cluster(run: DemoRun) -> None:
    from meshpilot.client import Client
    from meshpilot.cluster import lifecycle

    with run.console.status("starting a local cluster..."):
        try:
            info, message = lifecycle.up(CLUSTER_NAME, mesh=True)
        except lifecycle.ClusterError as exc:
            raise CliError(f"could not start the demo cluster: {exc}") from None
    run.info = info
    run.client = Client(info.server, info.token)
    run.console.print(f"[green]✓[/] {message}")


def apply_manifests(run: DemoRun) -> None:
    from meshpilot.cli.kubectl import load_manifests

    folder = packaged_manifests()
    objects = demo_mesh.in_mesh(load_manifests([str(folder)]))
    results = run.client.apply(objects)
    run.console.print(f"[green]✓[/] applied {len(results)} objects from the packaged examples:")
    for result in results:
        group = str(result.get("apiVersion", "")).rpartition("/")[0]
        kind = str(result.get("kind", "")).lower()
        name = f"{kind}.{group}/{result.get('name')}" if group else f"{kind}/{result.get('name')}"
        run.console.print(f"    {name} {result.get('result')}")


def _deployment_progress(client: Any) -> tuple[list[tuple[str, int, int]], bool]:
    rows: list[tuple[str, int, int]] = []
    done = True
    for ns in WATCHED_NAMESPACES:
        for dep in client.list(("apps", "deployments"), ns):
            want = int(dep.get("spec", {}).get("replicas", 1))
            status = dep.get("status", {})
            ready = int(status.get("readyReplicas", 0))
            updated = int(status.get("updatedReplicas", 0))
            observed = status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
            rows.append((f"{ns}/{dep['metadata']['name']}", ready, want))
            if not (
                observed and ready >= want and updated >= want and int(status.get("replicas", 0)) == want
            ):
                done = False
    return rows, done and bool(rows)


def _endpoint_count(client: Any, namespace: str, name: str) -> int:
    from meshpilot.client import ApiError

    try:
        ep = client.get(("", "endpoints"), name, namespace)
    except ApiError:
        return 0
    return sum(len(s.get("addresses") or []) for s in ep.get("subsets") or [])


def wait_until_ready(run: DemoRun) -> None:
    """Every Deployment fully ready and both Services with endpoints, or a clear timeout."""
    last = ""
    with run.console.status("waiting for the pods to become ready...") as status:
        while True:
            rows, done = _deployment_progress(run.client)
            catalog = _endpoint_count(run.client, "production", "productcatalog")
            front = _endpoint_count(run.client, *FRONTEND)
            summary = ", ".join(f"{name} {ready}/{want}" for name, ready, want in rows)
            text = f"waiting for the pods to become ready: {summary or 'no deployments yet'}"
            if text != last:
                status.update(text)
                if not run.console.is_terminal:
                    run.console.print(f"  {text}")  # no spinner in a log: one line per change instead
                last = text
            if done and catalog > 0 and front > 0:
                break
            if run.remaining() <= 0:
                raise CliError(
                    f"demo timed out waiting for the sample apps: {summary}; see `meshpilot get pods -A`"
                )
            time.sleep(0.3)
    run.console.print(f"[green]✓[/] ready: {summary}")
    demo_mesh.wait_synced(run.client, run.console, run.remaining)
    svc = run.client.get(("", "services"), FRONTEND[1], FRONTEND[0])
    port = (svc["spec"].get("ports") or [{}])[0].get("port", 80)
    run.frontend_url = f"http://{svc['spec']['clusterIP']}:{port}"


def send_traffic(run: DemoRun, requests: int) -> None:
    """GET /api/products through the frontend's ClusterIP, one request id each."""
    url = run.frontend_url + "/api/products"
    run.console.print(f"[green]→[/] sending {requests} requests to {url}")
    with httpx.Client(timeout=10.0, trust_env=False) as http:
        for i in range(requests):
            run.check_deadline("sending requests")
            started = time.perf_counter()
            try:
                resp = http.get(url, headers={"x-request-id": f"meshpilot-demo-{i}"})
            except httpx.HTTPError as exc:
                run.samples.append(Sample(0, time.perf_counter() - started, error=type(exc).__name__))
                continue
            elapsed = time.perf_counter() - started
            try:
                body = resp.json()
            except ValueError:
                body = {}
            upstream = body.get("productcatalog") or {} if isinstance(body, dict) else {}
            run.samples.append(
                Sample(
                    status=resp.status_code,
                    seconds=elapsed,
                    version=upstream.get("version"),
                    pod=upstream.get("pod"),
                    upstream_ms=upstream.get("latencyMs"),
                    error=upstream.get("error") if resp.status_code >= 400 else None,
                )
            )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def report(run: DemoRun) -> bool:
    """Print what the traffic showed; True when every request succeeded."""
    samples = run.samples
    console = run.console
    ok = [s for s in samples if 200 <= s.status < 300]
    versions = Counter(s.version or "?" for s in ok)
    table = Table(title="productcatalog versions seen through the frontend")
    table.add_column("version")
    table.add_column("requests", justify="right")
    table.add_column("share", justify="right")
    table.add_column("pods")
    for version, count in sorted(versions.items()):
        pods = sorted({s.pod or "?" for s in ok if (s.version or "?") == version})
        table.add_row(version, str(count), f"{100 * count / max(len(ok), 1):.1f}%", ", ".join(pods))
    console.print(table)
    codes = Counter(s.status for s in samples)
    console.print(
        "status codes: " + ", ".join(f"{code or 'no response'}×{n}" for code, n in sorted(codes.items()))
    )
    if samples:
        total_ms = [s.seconds * 1000 for s in samples]
        upstream = [s.upstream_ms for s in ok if s.upstream_ms is not None]
        lat = Table(title="latency (ms)")
        for col in ("measured", "mean", "p50", "p90", "p99", "max"):
            lat.add_column(col, justify="right" if col != "measured" else "left")
        for label, values in (
            ("client → frontend → productcatalog", total_ms),
            ("frontend → productcatalog", upstream),
        ):
            if values:
                lat.add_row(
                    label,
                    f"{statistics.fmean(values):.1f}",
                    f"{percentile(values, 50):.1f}",
                    f"{percentile(values, 90):.1f}",
                    f"{percentile(values, 99):.1f}",
                    f"{max(values):.1f}",
                )
        console.print(lat)
    failures = [s for s in samples if not 200 <= s.status < 300]
    for s in failures[:5]:
        console.print(f"[red]failed[/] status={s.status or '-'} error={s.error}")
    return bool(samples) and not failures


# --- running it --------------------------------------------------------------------------------


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so the teardown in ``finally`` always runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _demo_home(keep: dict[str, bool]) -> Iterator[Path]:
    """A fresh MESHPILOT_HOME for this process and everything it starts; removed unless kept."""
    home = Path(tempfile.mkdtemp(prefix="meshpilot-demo-"))
    old = os.environ.get("MESHPILOT_HOME")
    os.environ["MESHPILOT_HOME"] = str(home)
    try:
        yield home
    finally:
        if old is None:
            os.environ.pop("MESHPILOT_HOME", None)
        else:
            os.environ["MESHPILOT_HOME"] = old
        if not keep["keep"]:
            shutil.rmtree(home, ignore_errors=True)


def _teardown(run: DemoRun) -> None:
    from meshpilot.cluster import lifecycle

    if run.client is not None:
        with contextlib.suppress(Exception):
            run.client.close()
    with run.console.status("tearing the demo cluster down..."):
        try:
            message = lifecycle.down(CLUSTER_NAME)
        except lifecycle.ClusterError as exc:
            if "does not exist" in str(exc):
                return
            run.console.print(f"[red]teardown problem:[/] {exc}")
            return
    run.console.print(f"[green]✓[/] {message}; nothing left running")


def _print_keep_instructions(run: DemoRun) -> None:
    home = run.home
    console = run.console
    console.print("\n[bold]The demo cluster keeps running.[/] To use it:")
    console.print(f"  export MESHPILOT_HOME={home}")
    console.print("  meshpilot get pods -A -o wide")
    console.print("  meshpilot proxy-status")
    console.print("  meshpilot get virtualservice productcatalog -n production -o yaml")
    if run.frontend_url:
        console.print(f"  curl {run.frontend_url}/api/products")
    console.print(f"  meshpilot cluster down --name {CLUSTER_NAME} && rm -rf {home}")


@click.command(cls=Command)
@click.option("--keep", is_flag=True, help="leave the cluster running afterwards and print how to reach it")
@click.option("--requests", "requests", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option(
    "--timeout",
    type=click.FloatRange(10, 3600),
    default=180.0,
    show_default=True,
    help="seconds for the whole demo",
)
def demo(keep: bool, requests: int, timeout: float) -> None:
    """Start a throwaway cluster, deploy the sample apps, send traffic, show what happened, clean up."""
    console = Console(highlight=False)
    console.rule("[bold]meshpilot demo")
    succeeded = False
    keeping = {"keep": keep}
    with _terminate_as_interrupt(), _demo_home(keeping) as home:
        run = DemoRun(console=console, home=home, deadline=time.monotonic() + timeout)
        console.print(f"state directory (temporary): {home}")
        try:
            start_cluster(run)
            demo_mesh.install(run.client, run.info.name, console, run.remaining)
            apply_manifests(run)
            wait_until_ready(run)
            send_traffic(run, requests)
            succeeded = report(run)
            demo_mesh.print_split(
                console,
                demo_mesh.route_weights(run.client),
                Counter(s.version or "?" for s in run.samples if 200 <= s.status < 300),
            )
            demo_mesh.print_metrics(console, demo_mesh.sidecar_metrics(run.client))
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            keeping["keep"] = False
        finally:
            if keeping["keep"] and run.info is not None:
                _print_keep_instructions(run)
            else:
                keeping["keep"] = False
                # Also when starting failed half-way: a daemon may exist even without run.info.
                _teardown(run)
    if not succeeded:
        raise CliError("the demo did not complete cleanly (see above)")
    console.print("[bold green]demo complete[/]")
