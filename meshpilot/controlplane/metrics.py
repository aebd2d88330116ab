"""istiod's own metrics in Prometheus text format (``pilot_*`` names as Istio publishes them).

A dozen series do not justify a client library at runtime; these classes render the text
exposition format directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    inner = ",".join(
        f'{n}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34)).replace(chr(10), chr(92) + "n")}"'
        for n, v in zip(names, values, strict=True)
    )
    return "{" + inner + "}"


class Counter:
    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.label_names = name, help, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, v in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {v:g}"


class Gauge(Counter):
    def set(self, value: float, *labels: str) -> None:
        self.values[labels] = value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        for labels, v in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {v:g}"


class Histogram:
    def __init__(self, name: str, help: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.buckets = name, help, buckets
        self.counts = [0] * len(buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for b, c in zip(self.buckets, self.counts, strict=True):
            le = "+Inf" if math.isinf(b) else f"{b:g}"
            yield f'{self.name}_bucket{{le="{le}"}} {c}'
        yield f'{self.name}_bucket{{le="+Inf"}} {self.count}'
        yield f"{self.name}_sum {self.sum:g}"
        yield f"{self.name}_count {self.count}"


class PilotMetrics:
    def __init__(self) -> None:
        self.pushes = Counter(
            "pilot_xds_pushes", "Pilot build and send errors for lds, rds, cds and eds.", ("type",)
        )
        self.rejects = Counter(
            "pilot_total_xds_rejects",
            "Total number of XDS responses from pilot rejected by proxy.",
            ("type",),
        )
        self.convergence = Histogram(
            "pilot_proxy_convergence_time",
            "Delay in seconds between config change and a proxy receiving all required configuration.",
            (0.1, 0.5, 1, 3, 5, 10, 20, 30),
        )
        self.ack_time = Histogram(
            "pilot_xds_ack_time",
            "Seconds between a push and the proxy's acknowledgement.",
            (0.01, 0.1, 0.5, 1, 3, 10),
        )
        self.xds = Gauge("pilot_xds", "Number of endpoints connected to this pilot using XDS.", ("version",))
        self.services = Gauge("pilot_services", "Total services known to pilot.")
        self.virt_services = Gauge("pilot_virt_services", "Total virtual services known to pilot.")
        self.push_triggers = Counter(
            "pilot_push_triggers", "Total number of times a push was triggered.", ("type",)
        )
        self.skipped = Counter(
            "pilot_xds_push_skipped", "Pushes skipped because the proxy's config did not change."
        )
        self.config_warnings = Gauge(
            "pilot_total_config_warnings", "Istio resources that could not be fully translated."
        )

    def render(self) -> str:
        lines: list[str] = []
        for m in (
            self.pushes,
            self.rejects,
            self.convergence,
            self.ack_time,
            self.xds,
            self.services,
            self.virt_services,
            self.push_triggers,
            self.skipped,
            self.config_warnings,
        ):
            lines.extend(m.render())
        return "\n".join(lines) + "\n"
