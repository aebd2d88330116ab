"""Fortio's result layouts: the text a Fortio user reads and the JSON their tools parse.

Field names, units (seconds in histograms, nanoseconds for Go durations) and line formats follow
Fortio's so existing readers keep working; what Fortio does not have (the uncorrected latency beside
the corrected one, late sends, the exact HDR histograms used by ``bench compare``) is added under new
field names that Fortio readers ignore.
"""

from __future__ import annotations

import base64
import bisect
import math
import re
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TextIO

from meshpilot.bench.histogram import Histogram
from meshpilot.bench.loadgen import LATE_SEND, LoadResult
from meshpilot.bench.schedule import format_duration
from meshpilot.bench.thresholds import Verdict

try:
    VERSION = version("meshpilot")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    VERSION = "0.0.0"

_DISPLAY_MANTISSAS = (1, 1.2, 1.4, 1.6, 1.8, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9)


def go_g(x: float) -> str:
    """Go's ``%g`` (shortest representation)."""
    if x == 0:
        return "0"
    if math.isnan(x):
        return "NaN"
    text = repr(float(x))
    if text.endswith(".0"):
        text = text[:-2]
    # Go writes exponents with at least two digits and a sign: 1e-05, 1e+21
    m = re.fullmatch(r"(-?[\d.]+)e([+-]?)(\d+)", text)
    if m:
        sign = m.group(2) or "+"
        text = f"{m.group(1)}e{sign}{int(m.group(3)):02d}"
    return text


def requested_qps(result: LoadResult) -> str:
    opts = result.opts
    if opts.stages:
        return "stages"
    return f"{opts.qps:.9g}" if opts.qps > 0 else "max"


def requested_duration(result: LoadResult) -> str:
    opts = result.opts
    if opts.stages:
        text = format_duration(opts.planned_duration)
    elif opts.exactly:
        text = f"exactly {opts.exactly} calls"
        if result.count != opts.exactly:
            text += f", interrupted after {result.count}"
    elif opts.duration > 0:
        text = format_duration(opts.duration)
    else:
        text = "until stop"
    return text


def run_id(start: datetime, labels: str) -> str:
    """Fortio's ID: the start time, then the labels with every run of non-alphanumerics as one ``_``."""
    base = start.strftime("%Y-%m-%d-%H%M%S")
    if labels:
        cleaned = re.sub(r"[^A-Za-z0-9]+", "_", labels).strip("_")
        if cleaned:
            base += "_" + cleaned
    return base[:96]


def fortio_json(result: LoadResult, verdicts: list[Verdict] | None = None) -> dict[str, Any]:
    opts = result.opts
    ps = list(opts.percentiles)
    start = datetime.fromtimestamp(result.start_time, UTC).astimezone()
    payload = base64.b64encode(opts.payload).decode() if opts.payload else None
    out: dict[str, Any] = {
        "RunType": "HTTP",
        "Labels": opts.labels,
        "StartTime": start.isoformat(),
        "RequestedQPS": requested_qps(result),
        "RequestedDuration": requested_duration(result),
        "ActualQPS": result.actual_qps,
        "ActualDuration": int(result.elapsed * 1e9),
        "NumThreads": opts.connections,
        "Version": VERSION,
        "DurationHistogram": result.corrected.to_fortio(ps),
        "ErrorsDurationHistogram": result.errors.to_fortio(ps),
        "Exactly": opts.exactly,
        "Jitter": opts.jitter,
        "Uniform": opts.uniform,
        "NoCatchUp": opts.nocatchup,
        "RunID": 0,
        "AccessLoggerInfo": "",
        "ID": run_id(start, opts.labels),
        "RetCodes": {str(code): n for code, n in sorted(result.codes.items())},
        "IPCountMap": dict(sorted(result.ip_count.items())),
        "Insecure": False,
        "MTLS": False,
        "CACert": "",
        "Cert": "",
        "Key": "",
        "UnixDomainSocket": "",
        "URL": opts.url,
        "NumConnections": 1,
        "Compression": False,
        "DisableFastClient": False,
        "HTTP10": False,
        "H2": False,
        "DisableKeepAlive": not opts.keepalive,
        "AllowHalfClose": False,
        "FollowRedirects": False,
        "Resolve": "",
        "HTTPReqTimeOut": int(opts.timeout * 1e9),
        "UserCredentials": "",
        "ContentType": opts.content_type,
        "Payload": payload,
        "MethodOverride": opts.method,
        "LogErrors": False,
        "SequentialWarmup": False,
        "ConnReuseRange": [0, 0],
        "NoResolveEachConn": False,
        "Offset": 0,
        "Resolution": 0.001,
        "Sizes": result.sizes.to_fortio(),
        "HeaderSizes": result.header_sizes.to_fortio(),
        "Sockets": result.sockets,
        "SocketCount": sum(result.sockets),
        "ConnectionStats": result.connect.to_fortio(ps),
        "AbortOn": opts.abort_on,
        # meshpilot additions
        "Generator": f"meshpilot {VERSION}",
        "CoordinatedOmissionCorrected": opts.fixed_rate,
        "UncorrectedDurationHistogram": result.uncorrected.to_fortio(ps),
        "LateSends": result.late,
        "LateSendThreshold": LATE_SEND,
        "SkippedSends": result.skipped,
        "Workers": opts.workers,
        "Stages": [{"Duration": format_duration(s.duration), "Target": s.target} for s in opts.stages],
        "AbortedOnCode": result.aborted_on,
        "Interrupted": result.interrupted,
        "HDRHistograms": {
            "DurationHistogram": result.corrected.to_compact(),
            "UncorrectedDurationHistogram": result.uncorrected.to_compact(),
            "ErrorsDurationHistogram": result.errors.to_compact(),
        },
    }
    if verdicts is not None:
        out["Thresholds"] = [
            {"Threshold": v.threshold.text, "Observed": v.observed, "Ok": v.ok} for v in verdicts
        ]
    return out


# -- text ---------------------------------------------------------------------------------------


def banner(opts: Any, nworkers: int) -> str:
    """The first line, as Fortio prints it before a run."""
    if opts.stages:
        what = "stages " + ",".join(f"{format_duration(s.duration)}:{s.target:g}" for s in opts.stages)
        rate = "ramping"
    else:
        rate = f"{opts.qps:g}" if opts.qps > 0 else "-1"
        if opts.exactly:
            what = f"{opts.exactly} calls"
        elif opts.duration > 0:
            what = format_duration(opts.duration)
        else:
            what = "until interrupted"
    return (
        f"Fortio-compatible meshpilot {VERSION} running at {rate} queries per second, "
        f"{nworkers}->{nworkers} procs, for {what}: {opts.url}"
    )


def starting_line(opts: Any) -> str:
    c = opts.connections
    if not opts.fixed_rate:
        extra = (
            f" for exactly {opts.exactly} calls"
            if opts.exactly
            else (f" for {format_duration(opts.duration)}" if opts.duration > 0 else " until interrupted")
        )
        return f"Starting at max qps with {c} thread(s) [workers {opts.workers}]{extra}"
    if opts.stages:
        return f"Starting {len(opts.stages)} stage(s) with {c} thread(s) [workers {opts.workers}], open loop"
    if opts.exactly:
        return f"Starting at {opts.qps:g} qps with {c} thread(s) [workers {opts.workers}] : exactly {opts.exactly}"
    if opts.duration > 0:
        total = int(opts.qps * opts.duration)
        return (
            f"Starting at {opts.qps:g} qps with {c} thread(s) [workers {opts.workers}] "
            f"for {format_duration(opts.duration)} : {total // c} calls each (total {total})"
        )
    return f"Starting at {opts.qps:g} qps with {c} thread(s) [workers {opts.workers}] until interrupted"


def _counter_line(name: str, count: int, avg: float, std: float, lo: float, hi: float, total: float) -> str:
    lo, hi = round(lo, 9), round(hi, 9)
    return f"{name} : count {count} avg {avg:.8g} +/- {std:.4g} min {go_g(lo)} max {go_g(hi)} sum {total:.9g}"


def _display_rows(h: Histogram) -> list[tuple[float, float, float, int]]:
    """Fortio-looking rows (start, end, cumulative %, count) on a coarse 1-1.2-1.4...-9 grid, so the
    text stays short; the JSON keeps every HDR bucket."""
    bins: dict[int, int] = {}
    edges: list[float] = []
    decade = 1e-7
    while decade < 1e5:
        edges.extend(m * decade for m in _DISPLAY_MANTISSAS)
        decade *= 10
    for start, end, n in h.buckets():
        mid = (start + end) / 2
        i = bisect.bisect_left(edges, mid)
        bins[i] = bins.get(i, 0) + n
    rows = []
    seen = 0
    for i in sorted(bins):
        seen += bins[i]
        lo = edges[i - 1] if i > 0 else 0.0
        hi = edges[i] if i < len(edges) else h.max
        rows.append((lo, hi, 100.0 * seen / h.count, bins[i]))
    if rows:
        first = rows[0]
        rows[0] = (h.min, first[1], first[2], first[3])
        last = rows[-1]
        rows[-1] = (last[0], h.max, last[2], last[3])
    return rows


def write_histogram(out: TextIO, name: str, h: Histogram, percentiles: list[float]) -> None:
    if not h.count:
        out.write(f"{name} : no data\n")
        return
    out.write(_counter_line(name, h.count, h.mean, h.stddev, h.min, h.max, h.sum) + "\n")
    out.write("# range, mid point, percentile, count\n")
    for i, (lo, hi, pct, n) in enumerate(_display_rows(h)):
        sep = ">=" if i == 0 else ">"
        out.write(f"{sep} {lo:.6g} <= {hi:.6g} , {(lo + hi) / 2:.6g} , {pct:.2f}, {n}\n")
    for p in percentiles:
        out.write(f"# target {p:g}% {h.percentile(p):.6g}\n")


def write_text(out: TextIO, result: LoadResult, verdicts: list[Verdict] | None = None) -> None:
    opts = result.opts
    ps = list(opts.percentiles)
    out.write(
        f"Ended after {format_duration(result.elapsed)} : {result.count} calls. qps={result.actual_qps:.5g}\n"
    )
    if result.aborted_on is not None:
        out.write(f"Aborted run because of code {result.aborted_on}\n")
    write_histogram(out, "Aggregated Function Time", result.corrected, ps)
    if result.errors.count:
        e = result.errors
        out.write(_counter_line("Error cases", e.count, e.mean, e.stddev, e.min, e.max, e.sum) + "\n")
    else:
        out.write("Error cases : no data\n")
    if opts.fixed_rate:
        u = result.uncorrected
        out.write(
            "# latency above is measured from each request's intended send time (coordinated omission "
            "corrected); from the actual send time it is:\n"
        )
        if u.count:
            out.write(
                _counter_line("Uncorrected Function Time", u.count, u.mean, u.stddev, u.min, u.max, u.sum)
                + "\n"
            )
            for p in ps:
                out.write(f"# uncorrected target {p:g}% {u.percentile(p):.6g}\n")
        total_sends = result.count
        pct = 100.0 * result.late / total_sends if total_sends else 0.0
        out.write(
            f"Late sends: {result.late} ({pct:.1f} %) left more than {LATE_SEND * 1e3:g}ms after their intended time\n"
        )
        if result.skipped:
            out.write(f"Skipped sends (-nocatchup): {result.skipped}\n")
    out.write(f"Sockets used: {sum(result.sockets)} (for perfect keepalive, would be {opts.connections})\n")
    out.write(
        f"Uniform: {str(opts.uniform).lower()}, Jitter: {str(opts.jitter).lower()}, "
        f"Catchup allowed: {str(not opts.nocatchup).lower()}\n"
    )
    out.write("IP addresses distribution:\n")
    for ip, n in sorted(result.ip_count.items()):
        out.write(f"{ip}: {n}\n")
    total = result.count
    for code in sorted(result.codes):
        n = result.codes[code]
        out.write(f"Code {code:3d} : {n} ({100.0 * n / total if total else 0.0:.1f} %)\n")
    out.write(_counter_line("Response Header Sizes", *result.header_sizes.stats()) + "\n")
    out.write(_counter_line("Response Body/Total Sizes", *result.sizes.stats()) + "\n")
    warmup = 0 if (opts.exactly or not opts.warmup) else opts.connections
    out.write(
        f"All done {result.count} calls (plus {warmup} warmup) {1000.0 * result.corrected.mean:.3f} ms avg, "
        f"{result.actual_qps:.1f} qps\n"
    )
    if verdicts:
        for v in verdicts:
            out.write(f"Threshold {v.describe()}\n")
