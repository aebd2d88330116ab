"""Durations, stages, the open-loop send schedule and threshold expressions (no sockets)."""

from __future__ import annotations

import math

import pytest

from meshpilot.bench.schedule import RateSchedule, Stage, format_duration, parse_duration
from meshpilot.bench.thresholds import Threshold, evaluate


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("1m", 60), ("1m30s", 90), ("250ms", 0.25), ("1.5h", 5400), ("2", 2), ("500us", 5e-4)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert math.isclose(parse_duration(text), seconds)


@pytest.mark.parametrize("text", ["", "10x", "s", "-1s", "1m-3s"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_durations_print_as_go_does() -> None:
    assert [format_duration(x) for x in (5, 90, 0.25, 3600, 1.5)] == [
        "5s",
        "1m30s",
        "250ms",
        "1h0m0s",
        "1.5s",
    ]


def test_constant_rate_schedule_spaces_requests_evenly() -> None:
    s = RateSchedule.constant(100)
    assert [round(s.due(g), 9) for g in range(4)] == [0.0, 0.01, 0.02, 0.03]


def test_stages_ramp_linearly_and_integrate_to_the_expected_count() -> None:
    s = RateSchedule.from_stages([Stage.parse("10s:100"), Stage.parse("10s:100"), Stage.parse("10s:0")])
    assert s.total == pytest.approx(500 + 1000 + 500)
    assert s.rate_at(5) == pytest.approx(50)
    assert s.rate_at(15) == pytest.approx(100)
    # half of the ramp's 500 requests are due when n(t) = 50 t^2 / 10 ... = 250 -> t = sqrt(50)
    assert s.due(250) == pytest.approx(math.sqrt(50), rel=1e-9)
    assert s.due(500) == pytest.approx(10.0)
    assert s.due(1000) == pytest.approx(15.0)
    assert s.due(2000) == math.inf
    times = [s.due(g) for g in range(0, 2000, 7)]
    assert times == sorted(times)


def test_bad_stages_are_rejected() -> None:
    for text in ("100", "10s:-1", "0s:10", "abc:10"):
        with pytest.raises(ValueError):
            Stage.parse(text)


def test_thresholds_parse_k6_syntax() -> None:
    assert Threshold.parse("p99<50ms").limit == pytest.approx(0.05)
    assert Threshold.parse("p(95)<200").limit == pytest.approx(0.2)  # bare numbers are ms, as in k6
    assert Threshold.parse("errors<0.1%").limit == pytest.approx(0.001)
    assert Threshold.parse("rps>=100").op == ">="
    assert Threshold.parse("avg<=1s").metric == "avg"
    for bad in ("p99", "p99<<5", "latency<5ms", "errors<5ms", "p101<1ms", "rps>5ms"):
        with pytest.raises(ValueError):
            Threshold.parse(bad)


def test_threshold_verdicts() -> None:
    checks = [Threshold.parse(t) for t in ("p99<50ms", "p50<1ms", "errors<1%", "rps>10", "max<=0.1s")]
    verdicts = evaluate(checks, lambda p: 0.002 if p == 50 else 0.04, 0.003, 0.001, 0.1, 0.02, 50.0)
    assert [v.ok for v in verdicts] == [True, False, False, True, True]
    assert verdicts[2].describe() == "FAIL errors<1% (observed 2%)"
