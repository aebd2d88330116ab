"""``bench compare``: bootstrap confidence intervals and the regression verdict."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from bench_helpers import bench_cli

from meshpilot.bench.compare import bootstrap_percentile, compare, load_result
from meshpilot.bench.histogram import Histogram


def _result(path: Path, latencies: list[float], errors: int = 0, hdr: bool = True) -> Path:
    h = Histogram()
    for v in latencies:
        h.record(v)
    doc: dict[str, Any] = {
        "RunType": "HTTP",
        "ActualQPS": 100.0,
        "DurationHistogram": h.to_fortio([50, 90, 99]),
        "RetCodes": {"200": len(latencies) - errors, **({"503": errors} if errors else {})},
    }
    if hdr:
        doc["HDRHistograms"] = {"DurationHistogram": h.to_compact()}
    path.write_text(json.dumps(doc))
    return path


def _latencies(seed: int, scale: float = 1.0, n: int = 5000) -> list[float]:
    rng = random.Random(seed)
    return [scale * (0.005 + rng.expovariate(1 / 0.003)) for _ in range(n)]


def test_bootstrap_of_a_percentile_is_centred_and_tight() -> None:
    h = Histogram()
    for v in _latencies(1, n=20000):
        h.record(v)
    draws = sorted(bootstrap_percentile(h, 50, 1000, random.Random(0)))
    p50 = h.percentile(50)
    assert draws[25] < p50 < draws[975]
    assert (draws[975] - draws[25]) / p50 < 0.05  # 20 000 samples pin the median to a few percent


def test_same_distribution_is_not_a_regression(tmp_path: Path) -> None:
    a = load_result(_result(tmp_path / "a.json", _latencies(1)))
    b = load_result(_result(tmp_path / "b.json", _latencies(2)))
    result = compare(a, b, [50, 90, 99])
    assert not result.regression
    for d in result.deltas:
        assert d.low <= 0.05 and d.verdict != "regression"


def test_thirty_percent_slower_is_a_regression_with_an_interval_around_it(tmp_path: Path) -> None:
    a = load_result(_result(tmp_path / "a.json", _latencies(1)))
    b = load_result(_result(tmp_path / "b.json", _latencies(2, scale=1.3)))
    result = compare(a, b, [50, 90, 99])
    assert result.regression
    p50 = result.deltas[0]
    assert p50.verdict == "regression"
    assert p50.low < 0.30 < p50.high
    faster = compare(b, a, [50, 90])
    assert not faster.regression
    assert {d.verdict for d in faster.deltas} == {"improvement"}


def test_error_rate_increase_is_a_regression(tmp_path: Path) -> None:
    a = load_result(_result(tmp_path / "a.json", _latencies(1)))
    b = load_result(_result(tmp_path / "b.json", _latencies(2), errors=250))
    result = compare(a, b, [50])
    assert result.error_verdict == "regression"
    assert result.regression


def test_cli_exit_codes_and_table(tmp_path: Path) -> None:
    a = _result(tmp_path / "a.json", _latencies(1))
    same = _result(tmp_path / "same.json", _latencies(2))
    slow = _result(tmp_path / "slow.json", _latencies(2, scale=1.3))
    ok = bench_cli("compare", str(a), str(same))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "no significant regression" in ok.stdout
    bad = bench_cli("compare", str(a), str(slow), "--json")
    assert bad.returncode == 1
    doc = json.loads(bad.stdout)
    assert doc["Regression"] is True
    assert [p["Percentile"] for p in doc["Percentiles"]] == [50, 90, 99]
    assert doc["Percentiles"][0]["Verdict"] == "regression"
    # a generous tolerance turns the same data into a pass
    assert bench_cli("compare", str(a), str(slow), "--tolerance", "50%").returncode == 0


def test_fortio_files_without_hdr_histograms_are_compared_from_their_buckets(tmp_path: Path) -> None:
    a = _result(tmp_path / "a.json", _latencies(1), hdr=False)
    b = _result(tmp_path / "b.json", _latencies(2, scale=1.3), hdr=False)
    r = bench_cli("compare", str(a), str(b))
    assert r.returncode == 1
    assert "has no HDR histogram" in r.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not JSON"), ('{"RetCodes": {}}', "no DurationHistogram"), (None, "No such file")],
)
def test_bad_files_get_one_line_errors(tmp_path: Path, content: str | None, message: str) -> None:
    good = _result(tmp_path / "good.json", _latencies(1))
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    r = bench_cli("compare", str(good), str(bad))
    assert r.returncode == 1
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
