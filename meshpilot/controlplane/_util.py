"""Small parsers shared by the translator: Istio durations, label selection, object identity.

Istio config spells durations as protobuf ``Duration`` strings (``"1.5s"``, ``"100ms"``, ``"1m"``)
and selects workloads with plain ``key: value`` maps; both turn up in every resource kind, so they
live here once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


class ConfigError(ValueError):
    """A field of an Istio resource that cannot be translated (the resource is skipped)."""


# What malformed config raises while being read; the object is then skipped with a warning.
BAD_CONFIG = (ConfigError, ValueError, TypeError, KeyError, AttributeError)


def parse_duration(value: Any) -> float:
    """Seconds from ``"10s"``, ``"1m30s"``, ``"250ms"`` or a bare number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"invalid duration {value!r}")
    pos = 0
    total = 0.0
    for m in _DURATION.finditer(value):
        if m.start() != pos:
            raise ConfigError(f"invalid duration {value!r}")
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(value):
        raise ConfigError(f"invalid duration {value!r}")
    return total


def as_list(value: Any) -> list[Any]:
    """A list field of config as a list; anything else (absent, null, a stray scalar) as empty."""
    return value if isinstance(value, list) else list(value) if isinstance(value, tuple) else []


def labels_match(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """Istio's ``matchLabels``-style selection: every selector pair present; empty selects all."""
    if not selector:
        return True
    return all(labels.get(k) == v for k, v in selector.items())


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("name", ""))


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("namespace") or "default")


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = meta(obj).get("labels")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    ann = meta(obj).get("annotations")
    return {str(k): str(v) for k, v in ann.items()} if isinstance(ann, Mapping) else {}


def spec_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def key_of(kind: str, obj: Mapping[str, Any]) -> str:
    """``Kind/namespace/name``: how a push names what changed and what a proxy depended on."""
    return f"{kind}/{namespace_of(obj)}/{name_of(obj)}"


def creation_order(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """Istio resolves conflicts by age: the oldest resource wins, then namespace/name."""
    return (str(meta(obj).get("creationTimestamp") or ""), namespace_of(obj), name_of(obj))
