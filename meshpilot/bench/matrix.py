"""The overhead matrix (the reference text's table 4.1): what a mesh costs, measured.

Each row is a way of reaching the same echo server: directly, through sidecars, with mTLS, with
full telemetry. For every row the matrix measures latency percentiles at a fixed rate (open loop,
coordinated omission corrected), the highest rate that still meets a latency objective (searched),
the error rate, and the CPU and memory of the row's proxies per 1,000 requests/s.

Noise on a shared machine is handled by design rather than hope: runs are repeated with the rows
in a fresh random order each round (so drift hits every row alike), the repeats' HDR histograms are
pooled exactly, and each row's overhead against the baseline comes with a bootstrap confidence
interval (see ``compare``).

This module knows nothing about clusters: a ``Row`` is an address (and optionally a proxy to send
through), the PIDs whose CPU and memory are charged to it, and setup/teardown hooks. The CLI builds
the rows on a local mesh.
"""

from __future__ import annotations

import html
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from meshpilot.bench.compare import bootstrap_percentile
from meshpilot.bench.histogram import Histogram, merge_all
from meshpilot.bench.loadgen import LoadOptions, LoadResult, run_load

PERCENTILES = (50.0, 95.0, 99.0)


@dataclass
class Row:
    key: str
    title: str
    url: str = ""
    proxy: str = ""  # "host:port" of the client-side sidecar's outbound listener, if any
    pids: list[int] = field(default_factory=list)  # proxies whose CPU/memory this row costs
    available: bool = True
    note: str = ""
    setup: Callable[[], None] | None = None
    teardown: Callable[[], None] | None = None


@dataclass
class Plan:
    rate: float = 200.0  # fixed rate for the percentile runs
    duration: float = 5.0
    repeats: int = 3
    connections: int = 8
    slo_p99: float = 0.050  # seconds: the objective the rate search must meet
    slo_errors: float = 0.01
    search_start: float = 200.0
    search_max: float = 5000.0
    search_duration: float = 2.0
    search_steps: int = 6
    seed: int | None = None
    iterations: int = 1000  # bootstrap resamples


@dataclass
class RunRecord:
    row: str
    repeat: int
    histogram: Histogram
    count: int
    errors: int
    achieved_rps: float
    late: int
    cpu_seconds: float
    rss_bytes: int
    elapsed: float


@dataclass
class Probe:
    row: str
    rate: float
    achieved: float
    p99: float
    errors: float
    ok: bool


class _ProcessSampler:
    """CPU time and peak RSS of a set of processes over one run (psutil, ~5 samples/s)."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = []
        for pid in pids:
            try:
                self.procs.append(psutil.Process(pid))
            except psutil.Error:
                continue
        self.cpu0 = self._cpu()
        self.rss_peak = self._rss()

    def _cpu(self) -> float:
        total = 0.0
        for p in self.procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def _rss(self) -> int:
        total = 0
        for p in self.procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def sample(self) -> None:
        self.rss_peak = max(self.rss_peak, self._rss())

    def cpu_used(self) -> float:
        return self._cpu() - self.cpu0


def _options(row: Row, rate: float, duration: float, connections: int) -> LoadOptions:
    return LoadOptions(
        url=row.url,
        qps=rate,
        duration=duration,
        connections=connections,
        workers=1,
        proxy=row.proxy,
        percentiles=PERCENTILES,
        timeout=5.0,
        allow_initial_errors=True,
    )


def measure(row: Row, rate: float, duration: float, connections: int, repeat: int) -> RunRecord:
    sampler = _ProcessSampler(row.pids)
    last = [0.0]

    def on_progress(_: Any) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.2:
            last[0] = now
            sampler.sample()

    result: LoadResult = run_load(_options(row, rate, duration, connections), on_progress=on_progress)
    sampler.sample()
    return RunRecord(
        row=row.key,
        repeat=repeat,
        histogram=result.corrected,
        count=result.count,
        errors=result.error_count,
        achieved_rps=result.actual_qps,
        late=result.late,
        cpu_seconds=sampler.cpu_used(),
        rss_bytes=sampler.rss_peak,
        elapsed=result.elapsed,
    )


def search_max_rate(row: Row, plan: Plan, log: Callable[[str], None]) -> tuple[float, list[Probe]]:
    """Highest rate meeting the objective: double from ``search_start`` until a probe fails, then
    bisect between the last pass and the first failure, ``search_steps`` probes in all."""
    probes: list[Probe] = []

    def probe(rate: float) -> bool:
        r = measure(row, rate, plan.search_duration, plan.connections, -1)
        err = r.errors / r.count if r.count else 1.0
        p99 = r.histogram.percentile(99) if r.count else math.inf
        ok = p99 <= plan.slo_p99 and err <= plan.slo_errors and r.achieved_rps >= 0.95 * rate
        probes.append(Probe(row.key, rate, r.achieved_rps, p99, err, ok))
        log(
            f"  search {row.key}: {rate:.0f} rps -> p99 {p99 * 1e3:.1f} ms, errors {err:.2%}, {'ok' if ok else 'miss'}"
        )
        return ok

    good, bad = 0.0, math.inf
    rate = plan.search_start
    for _ in range(plan.search_steps):
        if probe(rate):
            good = rate
        else:
            bad = rate
        if bad == math.inf:  # still climbing: double until the objective is missed
            if rate >= plan.search_max:
                break
            rate = min(rate * 2, plan.search_max)
        elif good == 0.0:  # even the first probe missed: go down
            rate = bad / 2
        else:
            if (bad - good) / good < 0.1:
                break
            rate = (good + bad) / 2
    return good, probes


@dataclass
class RowSummary:
    row: Row
    runs: list[RunRecord]
    pooled: Histogram
    max_rate: float | None
    probes: list[Probe]

    @property
    def count(self) -> int:
        return sum(r.count for r in self.runs)

    @property
    def error_rate(self) -> float:
        return sum(r.errors for r in self.runs) / self.count if self.count else 0.0

    @property
    def achieved_rps(self) -> float:
        return sum(r.achieved_rps for r in self.runs) / len(self.runs) if self.runs else 0.0

    @property
    def cpu_per_krps(self) -> float | None:
        """Proxy CPU, in cores, per 1,000 requests/s."""
        if not self.row.pids or not self.runs:
            return None
        per = [r.cpu_seconds / r.elapsed / (r.achieved_rps / 1000) for r in self.runs if r.achieved_rps > 0]
        return sum(per) / len(per) if per else None

    @property
    def rss_mb(self) -> float | None:
        if not self.row.pids or not self.runs:
            return None
        return max(r.rss_bytes for r in self.runs) / 2**20


@dataclass
class Delta:
    percentile: float
    delta: float  # seconds, row minus baseline
    low: float
    high: float


@dataclass
class MatrixResult:
    plan: Plan
    rows: list[RowSummary]
    order: list[list[str]]  # the randomized order of each repeat
    deltas: dict[str, list[Delta]]
    started: float
    elapsed: float


def run_matrix(rows: list[Row], plan: Plan, log: Callable[[str], None] = lambda _: None) -> MatrixResult:
    rng = random.Random(plan.seed)
    started = time.time()
    t0 = time.monotonic()
    measured = [r for r in rows if r.available]
    runs: dict[str, list[RunRecord]] = {r.key: [] for r in rows}
    order: list[list[str]] = []
    for repeat in range(plan.repeats):
        sequence = measured[:]
        rng.shuffle(sequence)
        order.append([r.key for r in sequence])
        for row in sequence:
            if row.setup is not None:
                row.setup()
            try:
                record = measure(row, plan.rate, plan.duration, plan.connections, repeat)
            finally:
                if row.teardown is not None:
                    row.teardown()
            runs[row.key].append(record)
            log(
                f"repeat {repeat + 1}/{plan.repeats} {row.key}: p50 {record.histogram.percentile(50) * 1e3:.2f} ms, "
                f"p99 {record.histogram.percentile(99) * 1e3:.2f} ms, {record.achieved_rps:.0f} rps"
            )
    max_rates: dict[str, tuple[float, list[Probe]]] = {}
    if plan.search_steps > 0:
        for row in rng.sample(measured, len(measured)):
            if row.setup is not None:
                row.setup()
            try:
                max_rates[row.key] = search_max_rate(row, plan, log)
            finally:
                if row.teardown is not None:
                    row.teardown()
    summaries = []
    for row in rows:
        pooled = merge_all(r.histogram for r in runs[row.key])
        best, probes = max_rates.get(row.key, (None, []))
        summaries.append(RowSummary(row, runs[row.key], pooled, best, probes))
    deltas: dict[str, list[Delta]] = {}
    baseline = summaries[0] if summaries and summaries[0].runs else None
    if baseline is not None:
        brng = random.Random(plan.seed)
        for s in summaries[1:]:
            if not s.runs:
                continue
            out = []
            for p in PERCENTILES:
                a = bootstrap_percentile(baseline.pooled, p, plan.iterations, brng)
                b = bootstrap_percentile(s.pooled, p, plan.iterations, brng)
                diffs = sorted(y - x for x, y in zip(a, b, strict=True))
                out.append(
                    Delta(
                        p,
                        s.pooled.percentile(p) - baseline.pooled.percentile(p),
                        diffs[int(0.025 * len(diffs))],
                        diffs[min(len(diffs) - 1, int(0.975 * len(diffs)))],
                    )
                )
            deltas[s.row.key] = out
    return MatrixResult(plan, summaries, order, deltas, started, time.monotonic() - t0)


# -- reports ------------------------------------------------------------------------------------


def to_json(result: MatrixResult) -> dict[str, Any]:
    plan = result.plan
    rows = []
    for s in result.rows:
        entry: dict[str, Any] = {"Row": s.row.key, "Title": s.row.title, "Available": s.row.available}
        if s.row.note:
            entry["Note"] = s.row.note
        if s.runs:
            entry.update(
                {
                    "Percentiles": {f"p{p:g}": s.pooled.percentile(p) for p in PERCENTILES},
                    "Count": s.count,
                    "ErrorRate": s.error_rate,
                    "AchievedRPS": s.achieved_rps,
                    "MaxRateMeetingSLO": s.max_rate,
                    "ProxyCPUCoresPer1000RPS": s.cpu_per_krps,
                    "ProxyPeakRSSMiB": s.rss_mb,
                    "Runs": [
                        {
                            "Repeat": r.repeat,
                            "p50": r.histogram.percentile(50),
                            "p99": r.histogram.percentile(99),
                            "AchievedRPS": r.achieved_rps,
                            "Errors": r.errors,
                            "LateSends": r.late,
                            "ProxyCPUSeconds": r.cpu_seconds,
                        }
                        for r in s.runs
                    ],
                    "Search": [
                        {
                            "Rate": p.rate,
                            "Achieved": p.achieved,
                            "p99": p.p99,
                            "ErrorRate": p.errors,
                            "Ok": p.ok,
                        }
                        for p in s.probes
                    ],
                    "Deltas": [
                        {"Percentile": d.percentile, "Delta": d.delta, "Low": d.low, "High": d.high}
                        for d in result.deltas.get(s.row.key, [])
                    ],
                    "HDRHistogram": s.pooled.to_compact(),
                }
            )
        rows.append(entry)
    return {
        "Kind": "MeshOverheadMatrix",
        "StartTime": result.started,
        "ElapsedSeconds": result.elapsed,
        "Plan": {
            "Rate": plan.rate,
            "Duration": plan.duration,
            "Repeats": plan.repeats,
            "Connections": plan.connections,
            "SLO": {"p99": plan.slo_p99, "ErrorRate": plan.slo_errors},
        },
        "Order": result.order,
        "Rows": rows,
    }


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x * 1e3:.2f}"


def table_rows(result: MatrixResult) -> list[list[str]]:
    """Rows of the terminal table: one per matrix row, values as strings."""
    out = []
    for s in result.rows:
        if not s.runs:
            out.append([s.row.title, "—", "—", "—", "—", "—", "—", "—", s.row.note or "not measured"])
            continue
        deltas = {d.percentile: d for d in result.deltas.get(s.row.key, [])}
        d99 = deltas.get(99.0)
        overhead = (
            "baseline"
            if d99 is None
            else f"{d99.delta * 1e3:+.2f} [{d99.low * 1e3:+.2f}, {d99.high * 1e3:+.2f}]"
        )
        cpu = "—" if s.cpu_per_krps is None else f"{s.cpu_per_krps:.2f}"
        rss = "—" if s.rss_mb is None else f"{s.rss_mb:.0f}"
        out.append(
            [
                s.row.title,
                _ms(s.pooled.percentile(50)),
                _ms(s.pooled.percentile(95)),
                _ms(s.pooled.percentile(99)),
                overhead,
                "—" if s.max_rate is None else f"{s.max_rate:.0f}",
                f"{s.error_rate:.2%}",
                f"{cpu} / {rss}",
                s.row.note,
            ]
        )
    return out


TABLE_HEADER = [
    "setup",
    "P50 ms",
    "P95 ms",
    "P99 ms",
    "P99 overhead ms [95% CI]",
    "max rps @SLO",
    "errors",
    "proxy cores per 1k rps / RSS MiB",
    "note",
]

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def _svg_spectrum(result: MatrixResult) -> str:
    """Latency by percentile on a log(1/(1-p)) axis, one line per row, as HdrHistogram plots it."""
    w, h, pad = 640, 320, 50
    ps = [50, 75, 90, 95, 99, 99.5, 99.9]
    series = [(s, [s.pooled.percentile(p) for p in ps]) for s in result.rows if s.runs]
    if not series:
        return ""
    ymax = max(max(v) for _, v in series) * 1.1 or 1.0

    def x(p: float) -> float:
        return pad + (w - 2 * pad) * math.log10(1 / (1 - p / 100)) / 3

    def y(v: float) -> float:
        return h - pad - (h - 2 * pad) * v / ymax

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-size="11">']
    parts.append(f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#333"/>')
    parts.append(f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#333"/>')
    for p in ps:
        parts.append(f'<text x="{x(p):.1f}" y="{h - pad + 15}" text-anchor="middle">p{p:g}</text>')
    for i in range(5):
        v = ymax * i / 4
        parts.append(f'<text x="{pad - 5}" y="{y(v) + 4:.1f}" text-anchor="end">{v * 1e3:.1f}</text>')
    parts.append(f'<text x="12" y="{pad - 15}">ms</text>')
    for i, (s, values) in enumerate(series):
        color = _COLORS[i % len(_COLORS)]
        points = " ".join(f"{x(p):.1f},{y(v):.1f}" for p, v in zip(ps, values, strict=True))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        parts.append(
            f'<text x="{w - pad + 5}" y="{pad + 14 * i}" fill="{color}">{html.escape(s.row.key)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _svg_load(result: MatrixResult) -> str:
    """P99 against offered load, from the rate-search probes."""
    w, h, pad = 640, 320, 50
    series = [(s, sorted(s.probes, key=lambda p: p.rate)) for s in result.rows if s.probes]
    if not series:
        return ""
    finite = [p.p99 for _, ps in series for p in ps if math.isfinite(p.p99)]
    ymax = (max(finite) if finite else 1.0) * 1.1
    xmax = max(p.rate for _, ps in series for p in ps) * 1.05

    def x(v: float) -> float:
        return pad + (w - 2 * pad) * v / xmax

    def y(v: float) -> float:
        return h - pad - (h - 2 * pad) * min(v, ymax) / ymax

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-size="11">']
    parts.append(f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#333"/>')
    parts.append(f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#333"/>')
    slo = result.plan.slo_p99
    if slo < ymax:
        parts.append(
            f'<line x1="{pad}" y1="{y(slo):.1f}" x2="{w - pad}" y2="{y(slo):.1f}" stroke="#999" stroke-dasharray="4"/>'
        )
        parts.append(f'<text x="{w - pad}" y="{y(slo) - 4:.1f}" text-anchor="end">SLO p99</text>')
    for i in range(5):
        v = ymax * i / 4
        parts.append(f'<text x="{pad - 5}" y="{y(v) + 4:.1f}" text-anchor="end">{v * 1e3:.0f}</text>')
        r = xmax * i / 4
        parts.append(f'<text x="{x(r):.1f}" y="{h - pad + 15}" text-anchor="middle">{r:.0f}</text>')
    parts.append(f'<text x="12" y="{pad - 15}">p99 ms</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle">offered requests/s</text>')
    for i, (s, probes) in enumerate(series):
        color = _COLORS[i % len(_COLORS)]
        points = " ".join(f"{x(p.rate):.1f},{y(p.p99):.1f}" for p in probes)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        for p in probes:
            parts.append(f'<circle cx="{x(p.rate):.1f}" cy="{y(p.p99):.1f}" r="3" fill="{color}"/>')
        parts.append(
            f'<text x="{w - pad + 5}" y="{pad + 14 * i}" fill="{color}">{html.escape(s.row.key)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def to_html(result: MatrixResult) -> str:
    """A self-contained page (inline SVG, no scripts, no network)."""
    plan = result.plan
    head = "".join(f"<th>{html.escape(c)}</th>" for c in TABLE_HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table_rows(result)
    )
    doc = json.dumps(to_json(result), indent=1)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>meshpilot bench matrix</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,td:last-child{{text-align:left}}</style>
</head><body>
<h1>Mesh overhead matrix</h1>
<p>{plan.rate:g} requests/s for {plan.duration:g} s, {plan.repeats} repeats in randomized order,
{plan.connections} connections; latency measured from each request's intended send time.
SLO for the rate search: p99 &lt;= {plan.slo_p99 * 1e3:g} ms and errors &lt;= {plan.slo_errors:.1%}.
Overheads are against the first row, with 95% bootstrap intervals from the pooled histograms.</p>
<table><tr>{head}</tr>{body}</table>
<h2>Percentile spectrum</h2>{_svg_spectrum(result)}
<h2>Latency against load</h2>{_svg_load(result) or "<p>no rate search was run</p>"}
<h2>Data</h2><pre>{html.escape(doc)}</pre>
</body></html>
"""
