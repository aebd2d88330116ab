"""``meshpilot bench load`` end to end: real worker processes against the real echo server."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bench_helpers import (
    ROOT,
    EchoProcess,
    bench_cli,
    echo,  # noqa: F401  (fixture)
    load_json,
    percentile,
    start_echo_server,
    stop_echo_server,
)

FIELDS = json.loads((Path(__file__).parent / "fortio_result_fields.json").read_text())
JSON_TYPES: dict[str, Any] = {
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
    "object": dict,
    "array": list,
    "null": type(None),
    "histogram": dict,
}


def _is(value: Any, kinds: list[str]) -> bool:
    for kind in kinds:
        expected = JSON_TYPES[kind]
        if kind in ("integer", "number") and isinstance(value, bool):
            continue
        if isinstance(value, expected):
            return True
    return False


def _wakeup_lateness() -> float:
    """P90 of how late this process wakes from a 5 ms sleep: the machine's scheduling noise."""
    late = []
    for _ in range(60):
        t = time.perf_counter()
        time.sleep(0.005)
        late.append(time.perf_counter() - t - 0.005)
    return sorted(late)[int(0.9 * len(late))]


def test_fixed_delay_percentiles_are_accurate() -> None:
    """Against a fixed 10 ms delay, P50/P75/P90 are within 1 ms + 1 %.

    A millisecond is only measurable when the OS wakes processes within a fraction of one: on this
    shared machine other suites can delay every wake-up by several ms. So each attempt first
    measures the machine's wake-up lateness (before and after the run); every attempt must never report less than the delay
    (under-reporting would be the generator's fault), one attempt made on a quiet machine must be
    within the bound, and the test is skipped (saying why) if the machine is never quiet for 60 s.
    """
    misses = []
    quiet_attempts = 0
    noisiest = 0.0
    server = start_echo_server(high_priority=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lateness = _wakeup_lateness()
            noisiest = max(noisiest, lateness)
            doc, _ = load_json(
                "-qps", "100", "-t", "1s", "-c", "8", "--workers", "1", server.url + "?delay=10ms", high_priority=True
            )  # fmt: skip
            assert doc["DurationHistogram"]["Count"] == 100
            values = {
                (key, p): percentile(doc, p, key)
                for p in (50, 75, 90)
                for key in ("DurationHistogram", "UncorrectedDurationHistogram")
            }
            assert min(values.values()) >= 0.010 - 1e-6, values
            bad = {k: v for k, v in values.items() if abs(v - 0.010) > 0.001 + 0.01 * 0.010}
            if not bad:
                return
            after = _wakeup_lateness()
            noisiest = max(noisiest, after)
            if max(lateness, after) <= 0.0003:  # quiet before and after the run
                quiet_attempts += 1
                misses.append(bad)
                if quiet_attempts >= 5:
                    break
    finally:
        stop_echo_server(server)
    if not quiet_attempts:
        pytest.skip(
            f"machine too busy to check 1 ms accuracy (P90 wake-up lateness up to {noisiest * 1e3:.2f} ms)"
        )
    pytest.fail(f"percentiles off by more than 1 ms + 1 % on a quiet machine: {misses}")


def test_target_rate_is_held_across_workers(echo: EchoProcess) -> None:  # noqa: F811
    doc, _ = load_json("-qps", "400", "-t", "2s", "-c", "4", "--workers", "2", echo.url)
    assert doc["DurationHistogram"]["Count"] == 800
    assert doc["RetCodes"] == {"200": 800}
    assert abs(doc["ActualQPS"] - 400) <= 4
    assert doc["Workers"] == 2
    assert doc["SocketCount"] == 4


def test_a_server_stall_shows_in_corrected_p99_and_hides_in_uncorrected() -> None:
    server = start_echo_server()  # its own server: the stall blocks it
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshpilot", "bench", "load", "-json", "-", "-qps", "200", "-t", "3s",
             "-c", "4", "--workers", "1", server.url],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # "Starting ..." is printed just before the workers start
                if proc.stderr.readline().startswith("Starting at 200 qps"):
                    break
            time.sleep(1.0)
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
                s.sendall(b"GET /?stall=1s HTTP/1.1\r\nHost: x\r\n\r\n")
                s.recv(4096)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    finally:
        stop_echo_server(server)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    corrected = percentile(doc, 99)
    uncorrected = percentile(doc, 99, "UncorrectedDurationHistogram")
    # ~200 of 600 sends were due during the stall: a third of the corrected latencies are large
    assert corrected >= 0.5, corrected
    assert percentile(doc, 90) >= 0.2
    assert uncorrected < 0.1, uncorrected
    assert doc["LateSends"] >= 100
    assert doc["CoordinatedOmissionCorrected"] is True
    assert doc["DurationHistogram"]["Max"] >= 0.9


def test_json_result_matches_fortio_schema_field_by_field(echo: EchoProcess) -> None:  # noqa: F811
    doc, _ = load_json(
        "-qps", "50", "-n", "40", "-c", "2", "--workers", "1", "-labels", "schema test", "-payload", "abc",
        "-p", "50,99.9", echo.url + "?size=100",
    )  # fmt: skip
    for name, kinds in FIELDS["result"].items():
        assert name in doc, name
        assert _is(doc[name], kinds), (name, doc[name])
    for name in ("DurationHistogram", "ErrorsDurationHistogram", "Sizes", "HeaderSizes", "ConnectionStats"):
        h = doc[name]
        for field, kinds in FIELDS["histogram"].items():
            assert field in h and _is(h[field], kinds), (name, field)
        for field, kinds in FIELDS["histogram_optional"].items():
            if field in h:
                assert _is(h[field], kinds)
        for bucket in h["Data"] or []:
            assert set(bucket) == set(FIELDS["bucket"])
            for field, kinds in FIELDS["bucket"].items():
                assert _is(bucket[field], kinds), (name, field)
        for entry in h.get("Percentiles", []):
            assert set(entry) == set(FIELDS["percentile"])
    d = doc["DurationHistogram"]
    assert d["Count"] == 40 == sum(b["Count"] for b in d["Data"])
    assert d["Data"][-1]["Percent"] == 100
    assert [p["Percentile"] for p in d["Percentiles"]] == [50, 99.9]
    assert d["Min"] <= d["Percentiles"][0]["Value"] <= d["Max"] < 1  # seconds, as Fortio
    assert doc["RunType"] == "HTTP"
    assert doc["RequestedQPS"] == "50"
    assert doc["RequestedDuration"] == "exactly 40 calls"
    assert doc["Exactly"] == 40
    assert doc["Labels"] == "schema test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d-\d{6}_schema_test", doc["ID"])
    assert doc["Payload"] == "YWJj"  # base64, as Go marshals []byte
    assert doc["HTTPReqTimeOut"] == 3_000_000_000
    assert 0.7e9 < doc["ActualDuration"] < 5e9  # nanoseconds
    assert doc["RetCodes"] == {"200": 40}
    assert doc["Sizes"]["Min"] > 100  # body plus headers
    assert doc["HeaderSizes"]["Min"] == doc["Sizes"]["Min"] - 100
    assert list(doc["IPCountMap"]) == [f"127.0.0.1:{echo.port}"]
    assert doc["ConnReuseRange"] == [0, 0]


def test_text_output_uses_fortio_layout(echo: EchoProcess) -> None:  # noqa: F811
    r = bench_cli(
        "load", "-qps", "200", "-t", "1s", "-c", "2", "--workers", "1", "-allow-initial-errors", echo.url + "?status=503:10"
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("Fortio-compatible meshpilot ")
    assert re.search(
        r"^Aggregated Function Time : count 200 avg [\d.e-]+ \+/- [\d.e-]+ min [\d.e-]+ max [\d.e-]+ sum [\d.e-]+$",
        out,
        re.M,
    )
    assert re.search(r"^# range, mid point, percentile, count$", out, re.M)
    assert re.search(r"^>= [\d.e-]+ <= [\d.e-]+ , [\d.e-]+ , [\d.]+, \d+$", out, re.M)
    assert re.search(r"^# target 50% [\d.e-]+$", out, re.M)
    assert re.search(r"^# target 99.9% [\d.e-]+$", out, re.M)
    assert re.search(r"^Code 200 : \d+ \(\d+\.\d %\)$", out, re.M)
    assert re.search(r"^Code 503 : \d+ \(\d+\.\d %\)$", out, re.M)
    assert re.search(r"^Response Header Sizes : count 200 avg ", out, re.M)
    assert re.search(r"^Response Body/Total Sizes : count 200 avg ", out, re.M)
    assert re.search(r"^Late sends: \d+ ", out, re.M)
    assert re.search(r"^All done 200 calls \(plus 2 warmup\) [\d.]+ ms avg, [\d.]+ qps$", out, re.M)


def test_thresholds_set_the_exit_code(echo: EchoProcess) -> None:  # noqa: F811
    args = ["load", "-qps", "100", "-t", "1s", "-c", "2", "--workers", "1", echo.url]
    ok = bench_cli(*args, "--threshold", "p99<10s", "--threshold", "errors<0.1%", "--threshold", "rps>10")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Threshold ok   p99<10s" in ok.stdout
    breach = bench_cli(*args, "--threshold", "p99<10s", "--threshold", "p50<0.001ms")
    assert breach.returncode == 99
    assert "Threshold FAIL p50<0.001ms" in breach.stdout
    errors = bench_cli(
        *args[:-1], echo.url + "?status=500", "-allow-initial-errors", "--threshold", "errors<1%"
    )
    assert errors.returncode == 99
    bad = bench_cli(*args, "--threshold", "p99 below 5")
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("Error: invalid threshold")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_stages_ramp_and_hold(echo: EchoProcess) -> None:  # noqa: F811
    doc, _ = load_json("--stage", "1s:100", "--stage", "1s:100", "-c", "4", "--workers", "2", echo.url)
    # ramp 0 -> 100 rps over 1 s (50 requests), then hold 100 rps for 1 s (100 requests)
    assert doc["DurationHistogram"]["Count"] == 150
    assert doc["Stages"] == [{"Duration": "1s", "Target": 100.0}, {"Duration": "1s", "Target": 100.0}]
    assert 1.8e9 < doc["ActualDuration"] < 2.6e9


def test_exact_count_at_max_speed(echo: EchoProcess) -> None:  # noqa: F811
    doc, _ = load_json("-qps", "0", "-n", "500", "-c", "4", "--workers", "2", echo.url)
    assert doc["DurationHistogram"]["Count"] == 500
    assert doc["RequestedQPS"] == "max"
    assert doc["RequestedDuration"] == "exactly 500 calls"
    assert doc["CoordinatedOmissionCorrected"] is False


def test_abort_on_stops_the_run(echo: EchoProcess) -> None:  # noqa: F811
    doc, _ = load_json(
        "-qps", "200", "-t", "5s", "-c", "2", "--workers", "1", "-abort-on", "503", "-allow-initial-errors",
        echo.url + "?status=503:20",
    )  # fmt: skip
    assert doc["AbortedOnCode"] == 503
    assert doc["AbortOn"] == 503
    assert doc["DurationHistogram"]["Count"] < 500
    assert doc["ActualDuration"] < 3e9


def test_keepalive_false_opens_a_connection_per_request(echo: EchoProcess) -> None:  # noqa: F811
    doc, _ = load_json("-qps", "50", "-n", "20", "-c", "1", "--workers", "1", "-keepalive=false", echo.url)
    assert doc["DisableKeepAlive"] is True
    assert doc["DurationHistogram"]["Count"] == 20
    assert doc["SocketCount"] >= 20


def test_unreachable_target_fails_with_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        r = bench_cli(
            "load", "-qps", "10", "-t", "1s", "-c", "1", "--workers", "1", f"http://127.0.0.1:{port}/"
        )
    assert r.returncode == 1
    assert r.stderr.strip().startswith("Error: Aborting because error -1 for")
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["https://127.0.0.1:1/"], "unsupported URL scheme"),
        (["-t", "ten", "http://127.0.0.1:1/"], "-t: invalid duration"),
        (["-c", "0", "http://127.0.0.1:1/"], "-c must be at least 1"),
        (["-p", "50,x", "http://127.0.0.1:1/"], "-p: invalid percentile"),
        (["--stage", "30s", "http://127.0.0.1:1/"], "invalid stage"),
        (["-H", "NoColon", "http://127.0.0.1:1/"], "invalid extra header"),
        (["-X", "HEAD", "http://127.0.0.1:1/"], "-X HEAD is not supported"),
    ],
)
def test_bad_input_is_rejected_before_running(args: list[str], message: str) -> None:
    r = bench_cli("load", *args)
    assert r.returncode == 1
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_interrupt_stops_the_run_and_still_reports(echo: EchoProcess) -> None:  # noqa: F811
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "meshpilot", "bench", "load", "-qps", "100", "-t", "0", "-c", "2", "--workers", "2",
         "-json", "-", echo.url],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the banner lines come first (on stderr with -json -)
            if proc.stderr.readline().startswith("Starting at 100 qps"):
                break
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert doc["Interrupted"] is True
    assert doc["RequestedDuration"] == "until stop"
    assert doc["DurationHistogram"]["Count"] > 20
    assert "All done" in err
