"""``bench matrix``: the runner on plain rows (fast), and the whole thing on a local mesh (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench_helpers import ROOT, EchoProcess, echo  # noqa: F401  (fixture)

from meshpilot.bench import matrix as mx


def test_runner_measures_rows_in_random_order_with_overhead_intervals(echo: EchoProcess) -> None:  # noqa: F811
    rows = [
        mx.Row("direct", "direct", url=echo.url),
        mx.Row("slower", "slower by 5 ms", url=echo.url + "?delay=5ms", pids=[echo.proc.pid]),
        mx.Row("absent", "not built", available=False, note="not available yet"),
    ]
    calls: list[str] = []
    rows[1].setup = lambda: calls.append("setup")
    rows[1].teardown = lambda: calls.append("teardown")
    plan = mx.Plan(rate=100, duration=1.0, repeats=2, connections=4, search_steps=2, search_start=100,
                   search_duration=0.5, seed=3, iterations=300)  # fmt: skip
    result = mx.run_matrix(rows, plan)
    assert [sorted(o) for o in result.order] == [["direct", "slower"]] * 2
    assert calls == ["setup", "teardown"] * 3  # two repeats and the rate search
    by_key = {s.row.key: s for s in result.rows}
    assert by_key["direct"].count == by_key["slower"].count == 200
    assert not by_key["absent"].runs
    p50 = next(d for d in result.deltas["slower"] if d.percentile == 50)
    assert p50.low <= p50.delta <= p50.high
    assert 0.003 < p50.delta < 0.015  # the 5 ms delay shows as overhead
    assert by_key["slower"].cpu_per_krps is not None and by_key["slower"].rss_mb
    assert by_key["direct"].max_rate and by_key["direct"].probes
    doc = mx.to_json(result)
    assert [r["Row"] for r in doc["Rows"]] == ["direct", "slower", "absent"]
    assert doc["Rows"][2] == {
        "Row": "absent",
        "Title": "not built",
        "Available": False,
        "Note": "not available yet",
    }
    page = mx.to_html(result)
    assert page.count("<svg") == 2
    assert "<script" not in page and "https://" not in page  # opens offline
    table = mx.table_rows(result)
    assert table[0][4] == "baseline" and table[2][-1] == "not available yet"


@pytest.mark.slow
def test_quick_matrix_on_a_local_mesh(tmp_path: Path) -> None:
    env = dict(os.environ, MESHPILOT_HOME=str(tmp_path / "home"), COLUMNS="200")
    start = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "meshpilot", "bench", "matrix", "--quick", "--cluster", "benchmx",
         "--json", str(tmp_path / "m.json"), "--html", str(tmp_path / "m.html")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert elapsed < 120, elapsed
    doc = json.loads((tmp_path / "m.json").read_text())
    rows = {row["Row"]: row for row in doc["Rows"]}
    assert list(rows) == ["no-mesh", "sidecars", "mtls", "telemetry"]
    for key in ("no-mesh", "sidecars", "telemetry"):
        row = rows[key]
        assert row["Count"] == 2 * 200, key  # 2 repeats x 100 rps x 2 s
        assert row["ErrorRate"] < 0.01, key
        assert 0 < row["Percentiles"]["p50"] <= row["Percentiles"]["p99"] < 1, key
    assert rows["mtls"]["Available"] is False and "not available" in rows["mtls"]["Note"]
    assert rows["sidecars"]["ProxyCPUCoresPer1000RPS"] > 0
    assert rows["sidecars"]["ProxyPeakRSSMiB"] > 0
    assert [d["Percentile"] for d in rows["sidecars"]["Deltas"]] == [50, 95, 99]
    assert "mesh overhead at 100 requests/s" in r.stdout
    assert "<svg" in (tmp_path / "m.html").read_text()
    # the workloads and the cluster it started are gone
    down = subprocess.run(
        [sys.executable, "-m", "meshpilot", "cluster", "list"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert "Running" not in down.stdout
