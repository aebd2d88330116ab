"""Istio's standard metrics and a few Envoy-style counters, kept cheap on the hot path.

A request adds to one dict entry keyed by its label tuple: the workload part of the key is
computed once per endpoint (source side) or per peer-metadata header value (destination side)
and cached, so recording costs a tuple, a dict lookup and three bisects. Exposition walks the
dicts when Prometheus scrapes.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Final

# Istio's (Envoy's default) boundaries for istio_request_duration_milliseconds, 0.5 ms first.
DURATION_BUCKETS: Final = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000,
)  # fmt: skip
# Istio's default boundaries for istio_request_bytes / istio_response_bytes (powers of ten).
BYTES_BUCKETS: Final = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000)

# The workload half of the label set, in exposition order.
PEER_LABELS: Final = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
    "connection_security_policy",
)
# The per-request half.
REQUEST_LABELS: Final = ("response_code", "grpc_response_status", "response_flags")

PeerKey = tuple[str, ...]


def workload_view(meta: Mapping[str, Any]) -> dict[str, str]:
    """Istio's workload attributes from a node's or an endpoint's metadata (Istio's key names).

    On the destination side ``meta`` is whatever a client put in x-envoy-peer-metadata, so any
    value that is not a string (or LABELS that is not a mapping) counts as absent."""
    labels = _mapping(meta.get("LABELS")) or _mapping(meta.get("labels"))

    def pick(m: Mapping[str, Any], *keys: str) -> str:
        for k in keys:
            v = m.get(k)
            if isinstance(v, str) and v:
                return v
        return ""

    app = pick(labels, "app", "app.kubernetes.io/name")
    version = pick(labels, "version", "app.kubernetes.io/version")
    workload = pick(meta, "WORKLOAD_NAME", "workload")
    ns = pick(meta, "NAMESPACE", "namespace")
    sa = pick(meta, "SERVICE_ACCOUNT", "service_account")
    return {
        "workload": workload or "unknown",
        "namespace": ns or "unknown",
        "app": app or "unknown",
        "version": version or "unknown",
        "canonical_service": pick(labels, "service.istio.io/canonical-name") or app or workload or "unknown",
        "canonical_revision": pick(labels, "service.istio.io/canonical-revision") or version or "latest",
        "cluster": pick(meta, "CLUSTER_ID", "cluster") or "unknown",
        # The principal is known only once mTLS lands; until then Istio reports "unknown".
        "principal": "unknown",
        "service_account": sa,
    }


def _mapping(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def peer_key(
    reporter: str,
    source: Mapping[str, str] | None,
    destination: Mapping[str, str] | None,
    service_host: str,
    service_name: str,
    service_namespace: str,
    security_policy: str,
) -> PeerKey:
    s = source or {}
    d = destination or {}

    def g(m: Mapping[str, str], k: str) -> str:
        return m.get(k) or "unknown"

    return (
        reporter,
        g(s, "workload"),
        g(s, "namespace"),
        g(s, "principal"),
        g(s, "app"),
        g(s, "version"),
        g(s, "canonical_service"),
        s.get("canonical_revision") or "latest",
        g(s, "cluster"),
        g(d, "workload"),
        g(d, "namespace"),
        g(d, "principal"),
        g(d, "app"),
        g(d, "version"),
        service_host or "unknown",
        service_name or "unknown",
        service_namespace or "unknown",
        g(d, "canonical_service"),
        d.get("canonical_revision") or "latest",
        g(d, "cluster"),
        "http",
        security_policy,
    )


class _Series:
    __slots__ = ("count", "dur", "dur_sum", "req", "req_sum", "resp", "resp_sum")

    def __init__(self) -> None:
        self.count = 0
        self.dur = [0] * (len(DURATION_BUCKETS) + 1)
        self.dur_sum = 0.0
        self.req = [0] * (len(BYTES_BUCKETS) + 1)
        self.req_sum = 0
        self.resp = [0] * (len(BYTES_BUCKETS) + 1)
        self.resp_sum = 0


_bisect_left: Final = bisect.bisect_left
_DURATION_BOUNDS: Final = tuple(float(b) for b in DURATION_BUCKETS)  # float vs float compares faster

# A peer's series keyed by what a request has at hand: the int status code, or (code, flags)
# when Envoy set response flags.
SeriesTable = dict[int | tuple[int, str], _Series]


class IstioMetrics:
    def __init__(self) -> None:
        self._series: dict[tuple[PeerKey, str, str, str], _Series] = {}
        self._tables: dict[PeerKey, SeriesTable] = {}

    def table(self, peer: PeerKey) -> SeriesTable:
        """The per-peer index of ``peer``'s series; callers cache it next to the peer key, so a
        request never hashes the 22-label key."""
        t = self._tables.get(peer)
        if t is None:
            t = self._tables[peer] = {}
        return t

    def record(
        self, peer: PeerKey, code: int, flags: str, duration_ms: float, req_bytes: int, resp_bytes: int
    ) -> None:
        self.record_in(self.table(peer), peer, code, flags, duration_ms, req_bytes, resp_bytes)

    def record_in(
        self,
        table: SeriesTable,
        peer: PeerKey,
        code: int,
        flags: str,
        duration_ms: float,
        req_bytes: int,
        resp_bytes: int,
    ) -> None:
        k: int | tuple[int, str] = (code, flags) if flags else code
        s = table.get(k)
        if s is None:
            key = (peer, str(code), flags or "-", "")  # grpc_response_status: empty for plain HTTP, as Istio
            s = self._series.get(key)
            if s is None:
                s = self._series[key] = _Series()
            table[k] = s
        s.count += 1
        s.dur[_bisect_left(_DURATION_BOUNDS, duration_ms)] += 1
        s.dur_sum += duration_ms
        s.req[_bisect_left(BYTES_BUCKETS, req_bytes) if req_bytes else 0] += 1  # most requests: no body
        s.req_sum += req_bytes
        s.resp[_bisect_left(BYTES_BUCKETS, resp_bytes)] += 1
        s.resp_sum += resp_bytes

    def exposition(self) -> Iterable[str]:
        items = list(self._series.items())
        labels = [
            ",".join(
                f'{n}="{_escape(v)}"'
                for n, v in zip((*PEER_LABELS, *REQUEST_LABELS), (*peer, code, grpc, flags), strict=True)
            )
            for (peer, code, flags, grpc), _ in items
        ]
        yield "# HELP istio_requests_total Total requests handled by an Istio proxy.\n"
        yield "# TYPE istio_requests_total counter\n"
        for lab, (_, s) in zip(labels, items, strict=True):
            yield f"istio_requests_total{{{lab}}} {s.count}\n"
        for (name, bounds), help_, attr in zip(
            HISTOGRAMS,
            (
                "Request duration in milliseconds.",
                "Request body size in bytes.",
                "Response body size in bytes.",
            ),
            ("dur", "req", "resp"),
            strict=True,
        ):
            yield f"# HELP {name} {help_}\n# TYPE {name} histogram\n"
            for lab, (_, s) in zip(labels, items, strict=True):
                counts = getattr(s, attr)
                acc = 0
                for b, c in zip(bounds, counts, strict=False):
                    acc += c
                    yield f'{name}_bucket{{{lab},le="{b}"}} {acc}\n'
                yield f'{name}_bucket{{{lab},le="+Inf"}} {s.count}\n'
                yield f"{name}_sum{{{lab}}} {getattr(s, attr + '_sum')}\n"
                yield f"{name}_count{{{lab}}} {s.count}\n"

    def totals(self) -> dict[tuple[str, str], int]:
        """(reporter, response_code) -> requests, for the admin page."""
        out: dict[tuple[str, str], int] = defaultdict(int)
        for (peer, code, _, _), s in self._series.items():
            out[(peer[0], code)] += s.count
        return dict(out)


# The histograms this proxy exports and their boundaries, in exposition order.
HISTOGRAMS: Final = (
    ("istio_request_duration_milliseconds", DURATION_BUCKETS),
    ("istio_request_bytes", BYTES_BUCKETS),
    ("istio_response_bytes", BYTES_BUCKETS),
)


def stats_config() -> dict[str, Any]:
    """The bootstrap's ``stats_config`` (Envoy's StatsConfig) as this proxy really behaves.

    The labels of the Istio metrics are kept natively (no tag extraction from flattened names), so
    each ``stats_tags`` entry names a label that ``istio_requests_total`` and the three histograms
    carry, and Envoy's default tags are not used. ``histogram_bucket_settings`` gives each
    histogram's boundaries. There is no ``stats_matcher``: every stat is kept, and the mesh
    config's ``proxyStatsMatcher`` is not applied (``meshpilot.api.enforcement`` warns about it).
    """
    return {
        "stats_tags": [{"tag_name": name} for name in (*PEER_LABELS, *REQUEST_LABELS)],
        "use_all_default_tags": False,
        "histogram_bucket_settings": [
            {"match": {"exact": name}, "buckets": list(bounds)} for name, bounds in HISTOGRAMS
        ],
    }


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Counters:
    """Envoy-style named counters and gauges (``cluster.<name>.upstream_rq_total``) for ``/stats``."""

    def __init__(self) -> None:
        self.values: dict[str, int] = defaultdict(int)

    def inc(self, name: str, n: int = 1) -> None:
        self.values[name] += n

    def merged(self, extra: Mapping[str, int]) -> dict[str, int]:
        return {**self.values, **extra}

    def text(self, extra: Mapping[str, int]) -> str:
        return "".join(f"{k}: {v}\n" for k, v in sorted(self.merged(extra).items()))

    def prometheus(self, extra: Mapping[str, int]) -> Iterable[str]:
        """``cluster.<name>.<stat>`` -> ``envoy_cluster_<stat>{cluster_name="<name>"}``, as Envoy does."""
        by_metric: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
        for k, v in sorted(self.merged(extra).items()):
            for scope, label in (("cluster.", "cluster_name"), ("listener.", "envoy_listener_address")):
                if k.startswith(scope):
                    inner, _, stat = k[len(scope) :].rpartition(".")
                    by_metric[f"envoy_{scope[:-1]}_{stat}"].append((label, inner, v))
                    break
            else:
                by_metric["envoy_" + k.replace(".", "_")].append(("", "", v))
        for metric, rows in by_metric.items():
            kind = "gauge" if metric.endswith(("_active", "_live", "_ready")) else "counter"
            yield f"# TYPE {metric} {kind}\n"
            for label, value, v in rows:
                yield f'{metric}{{{label}="{_escape(value)}"}} {v}\n' if label else f"{metric} {v}\n"
