"""``meshpilot bench``: the load generator, the echo server and result comparison.

``bench load`` takes Fortio's flags, single dash and all (``-c 8 -qps 500 -t 30s -json out.json``),
so a Fortio command line works after replacing ``fortio load`` with ``meshpilot bench load``.
"""

from __future__ import annotations

import json
import os
import random
import socket
import sys
from typing import Any, TextIO

import click

from meshpilot.bench.schedule import Stage, parse_duration


def _duration(value: str, flag: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.ClickException(f"{flag}: {exc}") from None


def _percentiles(value: str) -> tuple[float, ...]:
    out = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            p = float(part)
        except ValueError:
            raise click.ClickException(f"-p: invalid percentile {part!r}") from None
        if not 0 < p <= 100:
            raise click.ClickException(f"-p: percentile {part} is not in (0, 100]")
        out.append(p)
    if not out:
        raise click.ClickException("-p: list can't be empty")
    return tuple(out)


@click.group()
def bench() -> None:
    """Load generation (Fortio-compatible), an echo server, and run comparison."""


@bench.command(context_settings={"show_default": True})
@click.argument("url")
@click.option("-c", "connections", type=int, default=4, help="Number of connections/goroutine/threads.")
@click.option("-qps", "qps", type=float, default=8.0, help="Queries per second, or 0 / -1 for max speed.")
@click.option("-t", "duration", default="5s", help="How long to run the test, or 0 to run until ^C.")
@click.option(
    "-n", "exactly", type=int, default=0, help="Run for exactly this number of calls instead of a duration."
)
@click.option("-p", "percentiles", default="50,75,90,99,99.9", help="List of percentiles to calculate.")
@click.option("-H", "headers", multiple=True, help="Additional header(s) 'Name: value' (repeatable).")
@click.option("-X", "method", default="", help="HTTP method to use instead of GET/POST.")
@click.option("-payload", "payload", default="", help="Payload string to send (implies POST).")
@click.option("-payload-size", "payload_size", type=int, default=0, help="Random payload of this many bytes.")
@click.option("-content-type", "content_type", default="", help="Content type (implies POST).")
@click.option("-json", "json_file", default="", help="JSON output to FILE, or - for stdout.")
@click.option("-labels", "labels", default="", help="Additional config data/labels for the result.")
@click.option("-uniform", "uniform", is_flag=True, help="Spread requests evenly (always done in open loop).")
@click.option("-jitter", "jitter", is_flag=True, help="Move each send by up to ±10 % of the interval.")
@click.option("-nocatchup", "nocatchup", is_flag=True, help="Skip sends that cannot go out on time.")
@click.option("-timeout", "timeout", default="3s", help="Timeout for each request.")
@click.option(
    "-keepalive",
    "keepalive",
    type=click.BOOL,
    default=True,
    is_flag=False,
    flag_value=True,
    help="Keep connections alive (-keepalive=false for a new connection per request).",
)
@click.option(
    "-abort-on", "abort_on", type=int, default=0, help="HTTP code that stops the run (-1: socket errors)."
)
@click.option(
    "-allow-initial-errors", "allow_initial_errors", is_flag=True, help="Don't abort on warmup errors."
)
@click.option("--workers", type=int, default=None, help="Worker processes [default: number of cores].")
@click.option(
    "--proxy",
    "proxy",
    default="",
    metavar="HOST:PORT",
    help="Send through this HTTP proxy in absolute form, as an app behind $HTTP_PROXY does; with a "
    "sidecar's outbound listener (POD_IP:15001) service names resolve as inside the mesh.",
)
@click.option(
    "--stage", "stages", multiple=True, help="k6-style stage DURATION:TARGET_RPS, repeatable (e.g. 30s:100)."
)
@click.option(
    "--threshold", "thresholds", multiple=True, help="Pass/fail criterion, e.g. 'p99<50ms', 'errors<0.1%'."
)
@click.option(
    "--progress/--no-progress", default=None, help="Live progress [default: when stdout is a terminal]."
)
def load(
    url: str,
    connections: int,
    qps: float,
    duration: str,
    exactly: int,
    percentiles: str,
    headers: tuple[str, ...],
    method: str,
    payload: str,
    payload_size: int,
    content_type: str,
    json_file: str,
    labels: str,
    uniform: bool,
    jitter: bool,
    nocatchup: bool,
    timeout: str,
    keepalive: bool,
    abort_on: int,
    allow_initial_errors: bool,
    workers: int | None,
    proxy: str,
    stages: tuple[str, ...],
    thresholds: tuple[str, ...],
    progress: bool | None,
) -> None:
    """Load test URL (Fortio's flags). At a fixed rate the run is open loop and latency is measured
    from each request's intended send time (coordinated omission corrected)."""
    from meshpilot.bench import loadgen, report
    from meshpilot.bench.thresholds import EXIT_THRESHOLDS_FAILED, Threshold, evaluate

    parsed_headers = []
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise click.ClickException(f"invalid extra header {h!r}, expecting Key: Value")
        parsed_headers.append((name.strip(), value.strip()))
    try:
        parsed_stages = tuple(Stage.parse(s) for s in stages)
        parsed_thresholds = [Threshold.parse(t) for t in thresholds]
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if payload_size < 0:
        raise click.ClickException("-payload-size must be >= 0")
    body = payload.encode() if payload else random.Random(0).randbytes(payload_size)
    try:
        opts = loadgen.LoadOptions(
            url=url,
            qps=qps,
            duration=_duration(duration, "-t"),
            exactly=exactly,
            connections=connections,
            workers=workers if workers is not None else (os.cpu_count() or 1),
            percentiles=_percentiles(percentiles),
            headers=tuple(parsed_headers),
            method=method.upper(),
            payload=body,
            content_type=content_type,
            timeout=_duration(timeout, "-timeout"),
            keepalive=keepalive,
            abort_on=abort_on,
            jitter=jitter,
            uniform=uniform,
            nocatchup=nocatchup,
            stages=parsed_stages,
            labels=labels,
            allow_initial_errors=allow_initial_errors,
            warmup=exactly == 0,  # as Fortio: no warmup calls when an exact count is asked for
            proxy=proxy,
        )
    except loadgen.LoadError as exc:
        raise click.ClickException(str(exc)) from None
    _check_resolves(opts.host, opts.port, via_proxy=bool(proxy))
    if workers is not None and workers < 1:
        raise click.ClickException("--workers must be >= 1")

    out: TextIO = sys.stderr if json_file == "-" else sys.stdout
    out.write(report.banner(opts, opts.workers) + "\n")
    out.flush()

    def started() -> None:
        # as Fortio: "Starting at ..." once the connections are warm and sending begins
        out.write(report.starting_line(opts) + "\n")
        out.flush()

    planned = opts.planned_duration
    show = progress if progress is not None else (sys.stdout.isatty() and json_file != "-")
    show = show and (planned == 0 or planned >= 2)
    try:
        if show:
            result = _run_with_progress(opts, planned, started)
        else:
            result = loadgen.run_load(opts, on_started=started)
    except loadgen.LoadError as exc:
        raise click.ClickException(f"Aborting because {exc}") from None

    verdicts = None
    if parsed_thresholds:
        h = result.corrected
        error_rate = result.error_count / result.count if result.count else 0.0
        verdicts = evaluate(
            parsed_thresholds, h.percentile, h.mean, h.min, h.max, error_rate, result.actual_qps
        )
    report.write_text(out, result, verdicts)
    out.flush()
    if json_file:
        doc = json.dumps(report.fortio_json(result, verdicts), indent=2) + "\n"
        if json_file == "-":
            sys.stdout.write(doc)
            sys.stdout.flush()
        else:
            try:
                with open(json_file, "w") as f:
                    f.write(doc)
            except OSError as exc:
                raise click.ClickException(f"unable to write {json_file}: {exc.strerror}") from None
            out.write(f"Successfully wrote {len(doc)} bytes of Json data to {json_file}\n")
    if verdicts and not all(v.ok for v in verdicts):
        sys.exit(EXIT_THRESHOLDS_FAILED)


def _check_resolves(host: str, port: int, *, via_proxy: bool) -> None:
    """Fail before the run, with the way in, when the target's name means nothing on this machine.

    The reference text's ``fortio load http://productcatalog/products`` runs inside the cluster,
    where DNS knows the Service; from the host, a local cluster's Services are reached by ClusterIP
    or by name through a sidecar, and the error should say so rather than show a resolver errno."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        if via_proxy:
            raise click.ClickException(f"--proxy: cannot resolve {host!r}") from None
        raise click.ClickException(
            f"cannot resolve {host!r} on this machine; to reach a Service of the local cluster use "
            f"its ClusterIP (meshpilot get svc NAME -n NAMESPACE -o jsonpath='{{.spec.clusterIP}}') "
            f"or its name through a sidecar (--proxy POD_IP:15001)"
        ) from None


def _run_with_progress(opts: Any, planned: float, started: Any) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from meshpilot.bench import loadgen

    console = Console()
    columns = [
        TextColumn("[bold]load"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn(
            "{task.fields[calls]} calls  {task.fields[rate]} qps  {task.fields[errors]} errors  {task.fields[late]} late"
        ),
    ]
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("load", total=planned or None, calls=0, rate="0", errors=0, late=0)

        def update(p: loadgen.Progress) -> None:
            rate = p.completed / p.elapsed if p.elapsed > 0 else 0.0
            bar.update(
                task,
                completed=min(p.elapsed, planned) if planned else p.elapsed,
                calls=p.completed,
                rate=f"{rate:.1f}",
                errors=p.errors,
                late=p.late,
            )

        return loadgen.run_load(opts, on_progress=update, on_started=started)


@bench.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=int, default=8080, show_default=True, help="Port to listen on (0 picks a free one)."
)
@click.option(
    "--max-delay", "max_delay", default="1.5s", show_default=True, help="Cap on delay= (Fortio's -maxdelay)."
)
def server(host: str, port: int, max_delay: str) -> None:
    """Echo server understanding Fortio's query arguments: delay=, status=, size=, header=, close=,
    weighted lists (status=503:5,429:1; delay=10ms:90,200ms:10), and stall=1s (pauses the server)."""
    import asyncio

    import uvloop

    from meshpilot.bench.echo import serve_forever

    cap = _duration(max_delay, "--max-delay")
    if not 0 <= port <= 65535:
        raise click.ClickException(f"--port {port} is not a valid port")
    try:
        uvloop.install()
        asyncio.run(serve_forever(host, port, cap))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        pass


@bench.command(name="compare")
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option("-p", "percentiles", default="50,90,99", show_default=True, help="Percentiles to compare.")
@click.option(
    "--tolerance", default="5%", show_default=True, help="Allowed latency increase before it counts."
)
@click.option(
    "--error-tolerance", default="0.1%", show_default=True, help="Allowed error-rate increase (absolute)."
)
@click.option(
    "--confidence", type=float, default=0.95, show_default=True, help="Confidence level of the intervals."
)
@click.option("--iterations", type=int, default=2000, show_default=True, help="Bootstrap resamples.")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Random seed (results are reproducible)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare_cmd(
    a: str,
    b: str,
    percentiles: str,
    tolerance: str,
    error_tolerance: str,
    confidence: float,
    iterations: int,
    seed: int,
    as_json: bool,
) -> None:
    """Compare run B against baseline A: percentile deltas with bootstrap confidence intervals.
    Exits 1 when B is significantly slower (or fails more) beyond the tolerance."""
    from meshpilot.bench.compare import CompareError, compare, load_result

    def fraction(text: str, flag: str) -> float:
        t = text.strip()
        try:
            value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
        except ValueError:
            raise click.ClickException(f"{flag}: invalid value {text!r} (e.g. 5% or 0.05)") from None
        if value < 0:
            raise click.ClickException(f"{flag}: must be >= 0")
        return value

    if not 0 < confidence < 1:
        raise click.ClickException("--confidence must be between 0 and 1")
    if iterations < 100:
        raise click.ClickException("--iterations must be at least 100")
    ps = list(_percentiles(percentiles))
    try:
        run_a = load_result(a)
        run_b = load_result(b)
    except CompareError as exc:
        raise click.ClickException(str(exc)) from None
    result = compare(
        run_a,
        run_b,
        ps,
        tolerance=fraction(tolerance, "--tolerance"),
        error_tolerance=fraction(error_tolerance, "--error-tolerance"),
        confidence=confidence,
        iterations=iterations,
        seed=seed,
    )
    verdict = "REGRESSION" if result.regression else "OK: no significant regression"
    if as_json:
        click.echo(
            json.dumps(
                {
                    "A": run_a.path,
                    "B": run_b.path,
                    "Confidence": confidence,
                    "Tolerance": result.tolerance,
                    "Percentiles": [
                        {
                            "Percentile": d.percentile,
                            "A": d.a,
                            "B": d.b,
                            "Delta": d.delta,
                            "Low": d.low,
                            "High": d.high,
                            "Verdict": d.verdict,
                        }
                        for d in result.deltas
                    ],
                    "ErrorRate": {
                        "A": result.error_a,
                        "B": result.error_b,
                        "Low": result.error_low,
                        "High": result.error_high,
                        "Verdict": result.error_verdict,
                    },
                    "Regression": result.regression,
                },
                indent=2,
            )
        )
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"B = {run_b.path}  vs  A = {run_a.path}")
        for col in ("metric", "A", "B", "delta", f"{confidence:.0%} CI", "verdict"):
            table.add_column(col, justify="right" if col not in ("metric", "verdict") else "left")
        for d in result.deltas:
            table.add_row(
                f"p{d.percentile:g}",
                f"{d.a * 1e3:.3f} ms",
                f"{d.b * 1e3:.3f} ms",
                f"{d.delta:+.1%}",
                f"[{d.low:+.1%}, {d.high:+.1%}]",
                d.verdict,
            )
        table.add_row(
            "errors",
            f"{result.error_a:.3%}",
            f"{result.error_b:.3%}",
            f"{result.error_b - result.error_a:+.3%}",
            f"[{result.error_low:+.3%}, {result.error_high:+.3%}]",
            result.error_verdict,
        )
        console = Console(width=max(100, Console().width))
        console.print(table)
        for run in (run_a, run_b):
            if not run.exact:
                console.print(f"note: {run.path} has no HDR histogram; using its Fortio buckets (coarser)")
        console.print(verdict)
    if result.regression:
        sys.exit(1)


# --- matrix -------------------------------------------------------------------------------------

_DIRECT_NS = "bench-direct"
_MESH_NS = "bench-mesh"
_ECHO_PORT = 8080


def _matrix_objects() -> list[dict[str, Any]]:
    """An echo server without a mesh, and an echo server plus a client pod with sidecars."""

    def deployment(name: str, namespace: str) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [
                            {
                                "name": name,
                                "image": "meshpilot",
                                "command": ["meshpilot", "bench", "server"],
                                "args": ["--host", "$(POD_IP)", "--port", "$(PORT)"],
                                "ports": [{"name": "http", "containerPort": _ECHO_PORT, "protocol": "TCP"}],
                            }
                        ]
                    },
                },
            },
        }

    def service(name: str, namespace: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {
                "selector": {"app": name},
                "ports": [{"name": "http", "port": _ECHO_PORT, "targetPort": _ECHO_PORT, "protocol": "TCP"}],
            },
        }

    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": _DIRECT_NS}},
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": _MESH_NS, "labels": {"istio-injection": "enabled"}},
        },
        deployment("echo", _DIRECT_NS),
        service("echo", _DIRECT_NS),
        deployment("echo", _MESH_NS),
        service("echo", _MESH_NS),
        deployment("client", _MESH_NS),
    ]


def _wait(what: str, check: Any, timeout: float) -> Any:
    import time

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:  # the cluster is still coming up: keep polling
            last, value = exc, None
        if value:
            return value
        time.sleep(0.2)
    raise click.ClickException(
        f"timed out after {timeout:g}s waiting for {what}" + (f" ({last})" if last else "")
    )


def _running_pod(client: Any, namespace: str, app: str) -> dict[str, Any] | None:
    for pod in client.list(("", "pods"), namespace, label_selector=f"app={app}"):
        status = pod.get("status") or {}
        if (
            status.get("phase") == "Running"
            and status.get("podIP")
            and not pod["metadata"].get("deletionTimestamp")
        ):
            statuses = status.get("containerStatuses") or []
            if statuses and all(c.get("ready") for c in statuses):
                return dict(pod)
    return None


def _container_pid(pod: dict[str, Any], container: str) -> int | None:
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        cid = str(c.get("containerID") or "")
        if c.get("name") == container and cid.startswith("meshpilot://"):
            return int(cid.removeprefix("meshpilot://").split("-", 1)[0])
    return None


@bench.command()
@click.option("--quick", is_flag=True, help="A short run (under 2 minutes), for CI.")
@click.option(
    "--cluster", "cluster_name", default="bench", show_default=True, help="Local cluster to use or create."
)
@click.option("--rate", type=float, default=None, help="Fixed rate of the percentile runs [200; quick 100].")
@click.option("-t", "--duration", "duration", default=None, help="Length of each run [5s; quick 2s].")
@click.option(
    "--repeats", type=int, default=None, help="Rounds, rows in random order each round [3; quick 2]."
)
@click.option("--slo", default="p99<50ms", show_default=True, help="Objective for the max-rate search.")
@click.option("--seed", type=int, default=None, help="Seed of the random row order.")
@click.option("--json", "json_file", default="", help="Write the result as JSON to FILE (- for stdout).")
@click.option("--html", "html_file", default="", help="Write an HTML report (self-contained) to FILE.")
@click.option("--keep", is_flag=True, help="Keep the workloads (and the cluster) afterwards.")
def matrix(
    quick: bool,
    cluster_name: str,
    rate: float | None,
    duration: str | None,
    repeats: int | None,
    slo: str,
    seed: int | None,
    json_file: str,
    html_file: str,
    keep: bool,
) -> None:
    """Measure the mesh's overhead on the local mesh (the reference's table 4.1): no mesh, sidecars
    (plaintext), mTLS, full telemetry; P50/P95/P99 at a fixed rate, the highest rate meeting an
    objective, errors, proxy CPU and memory per 1,000 requests/s, with bootstrap intervals."""
    import contextlib

    import yaml

    from meshpilot.bench import matrix as mx
    from meshpilot.bench.thresholds import Threshold
    from meshpilot.cli.mesh import install_into
    from meshpilot.client import ApiError, Client
    from meshpilot.cluster import lifecycle, state

    try:
        objective = Threshold.parse(slo)
    except ValueError as exc:
        raise click.ClickException(f"--slo: {exc}") from None
    if objective.metric != "p99" or objective.op not in ("<", "<="):
        raise click.ClickException("--slo must be of the form p99<DURATION (e.g. p99<50ms)")
    plan = mx.Plan(seed=seed, slo_p99=objective.limit)
    if quick:
        plan.rate, plan.duration, plan.repeats = 100.0, 2.0, 2
        plan.search_start, plan.search_duration, plan.search_steps = 200.0, 1.0, 3
        plan.connections, plan.iterations = 4, 500
    if rate is not None:
        if rate <= 0:
            raise click.ClickException("--rate must be > 0")
        plan.rate = rate
    if duration is not None:
        plan.duration = _duration(duration, "--duration")
        if plan.duration <= 0:
            raise click.ClickException("--duration must be > 0")
    if repeats is not None:
        if repeats < 1:
            raise click.ClickException("--repeats must be >= 1")
        plan.repeats = repeats
    out: TextIO = sys.stderr if json_file == "-" else sys.stdout

    def log(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    try:
        was_running = lifecycle.daemon_pid(state.load(cluster_name)) is not None
    except (FileNotFoundError, OSError):
        was_running = False
    log(f"bringing up cluster {cluster_name} with the mesh ...")
    try:
        info, _message = lifecycle.up(cluster_name, mesh=True)
    except Exception as exc:
        raise click.ClickException(f"cannot start cluster {cluster_name}: {exc}") from None
    client = Client(info.server, info.token)
    objects = _matrix_objects()
    mesh_cm: dict[str, Any] | None = None
    try:
        install_into(client, cluster_id=cluster_name)
        _wait("istiod", lambda: _running_pod(client, "istio-system", "istiod"), 120)
        from meshpilot.api import load_objects

        client.apply(load_objects(yaml.safe_dump_all(objects), "bench-matrix.yaml"))
        direct = _wait("the echo pod without a mesh", lambda: _running_pod(client, _DIRECT_NS, "echo"), 120)
        echo = _wait("the echo pod with a sidecar", lambda: _running_pod(client, _MESH_NS, "echo"), 120)
        cli_pod = _wait(
            "the client pod with a sidecar", lambda: _running_pod(client, _MESH_NS, "client"), 120
        )
        import httpx

        target = f"http://echo.{_MESH_NS}.svc.cluster.local:{_ECHO_PORT}/"
        proxy = f"{cli_pod['status']['podIP']}:15001"
        with httpx.Client(proxy=f"http://{proxy}", timeout=5, trust_env=False) as h:
            _wait("traffic through the sidecars", lambda: h.get(target).status_code == 200, 120)
        sidecar_pids = [
            p for p in (_container_pid(echo, "istio-proxy"), _container_pid(cli_pod, "istio-proxy")) if p
        ]
        admin_urls = [f"http://{pod['status']['podIP']}:15000/config_dump" for pod in (echo, cli_pod)]

        mesh_cm = dict(client.get(("", "configmaps"), "istio", "istio-system"))
        original_mesh = str((mesh_cm.get("data") or {}).get("mesh") or "")

        def access_log_everywhere(on: bool) -> bool:
            with httpx.Client(timeout=5, trust_env=False) as h:
                return all(("access_log" in h.get(u).text) == on for u in admin_urls)

        def telemetry_on() -> None:
            doc = yaml.safe_load(original_mesh) or {}
            doc["accessLogFile"] = "/dev/stdout"
            client.patch(("", "configmaps"), "istio", {"data": {"mesh": yaml.safe_dump(doc)}}, "istio-system")
            _wait("access logging to reach both sidecars", lambda: access_log_everywhere(True), 60)

        def telemetry_off() -> None:
            client.patch(("", "configmaps"), "istio", {"data": {"mesh": original_mesh}}, "istio-system")
            _wait("access logging to be removed from both sidecars", lambda: access_log_everywhere(False), 60)

        rows = [
            mx.Row(
                "no-mesh",
                "no mesh (client → server)",
                url=f"http://{direct['status']['podIP']}:{_ECHO_PORT}/",
            ),
            mx.Row("sidecars", "sidecars, plaintext", url=target, proxy=proxy, pids=sidecar_pids),
            mx.Row(
                "mtls",
                "sidecars, mTLS",
                available=False,
                note="mTLS is not available yet: the proxy has no TLS between sidecars",
            ),
            mx.Row(
                "telemetry",
                "sidecars, full telemetry",
                url=target,
                proxy=proxy,
                pids=sidecar_pids,
                note="metrics + access log (meshConfig.accessLogFile) + x-request-id",
                setup=telemetry_on,
                teardown=telemetry_off,
            ),
        ]
        log(
            f"measuring: {plan.rate:g} rps x {plan.duration:g}s x {plan.repeats} repeats, "
            f"then a max-rate search (p99 <= {plan.slo_p99 * 1e3:g} ms)"
        )
        result = mx.run_matrix(rows, plan, log)
    except ApiError as exc:
        raise click.ClickException(f"cluster API error: {exc}") from None
    finally:
        if not keep:
            for ns in (_DIRECT_NS, _MESH_NS):
                with contextlib.suppress(Exception):
                    client.delete(("", "namespaces"), ns)
        client.close()
        if not keep and not was_running:
            with contextlib.suppress(Exception):
                lifecycle.down(cluster_name)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"mesh overhead at {plan.rate:g} requests/s (local mesh, {result.elapsed:.0f} s)")
    for col in mx.TABLE_HEADER:
        table.add_column(col, justify="left" if col in ("setup", "note") else "right")
    for row in mx.table_rows(result):
        table.add_row(*row)
    Console(file=out, width=200).print(table)
    doc = mx.to_json(result)
    if json_file == "-":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif json_file:
        with open(json_file, "w") as f:
            json.dump(doc, f, indent=2)
        log(f"wrote {json_file}")
    if html_file:
        with open(html_file, "w") as f:
            f.write(mx.to_html(result))
        log(f"wrote {html_file}")
