"""Istio metric recording: the per-request fast path files every request under Istio's labels."""

from __future__ import annotations

from meshpilot.proxy.stats import IstioMetrics, peer_key, workload_view


def test_recorded_requests_land_in_the_series_istio_names():
    m = IstioMetrics()
    src = workload_view({"WORKLOAD_NAME": "frontend", "NAMESPACE": "default", "LABELS": {"app": "frontend"}})
    key = peer_key("source", src, None, "svc.default.svc.cluster.local", "svc", "default", "unknown")
    for _ in range(3):
        m.record(key, 200, "", 0.7, 0, 3)
    m.record(key, 503, "UH", 0.1, 10, 0)
    m.record(key, 503, "UH", 2.0, 10, 0)
    assert m.totals() == {("source", "200"): 3, ("source", "503"): 2}
    text = "".join(m.exposition())
    assert 'response_code="200",grpc_response_status="",response_flags="-"} 3\n' in text
    assert 'response_code="503",grpc_response_status="",response_flags="UH"} 2\n' in text
    # duration buckets: 0.7 ms is above the 0.5 bucket and inside the 1 ms one
    assert 'response_flags="-",le="0.5"} 0\n' in text and 'response_flags="-",le="1"} 3\n' in text
    assert "istio_request_bytes_sum{" in text and 'response_flags="UH"} 20\n' in text


def test_workload_view_takes_hostile_peer_metadata_as_absent() -> None:
    # The destination side decodes whatever a client sent in x-envoy-peer-metadata.
    for meta in ({"LABELS": "x"}, {"LABELS": ["app"]}, {"LABELS": {"app": 7}}, {"NAMESPACE": {"a": 1}}):
        view = workload_view(meta)
        assert all(isinstance(v, str) for v in view.values()), meta
        assert view["app"] == "unknown" and view["namespace"] == "unknown"
    assert workload_view({"LABELS": {"app": "reviews"}, "NAMESPACE": "prod"})["app"] == "reviews"
