"""Pieces shared by Istio's kinds: workload selectors, policy target references, status."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from meshpilot.api.meta import ObjectMeta
from meshpilot.api.types import Model, invalid, pattern_str

_GROUP = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_KIND = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"


def no_wildcards(
    value: dict[str, str] | None, *, keys: bool = True, max_value: int = 63
) -> dict[str, str] | None:
    """Istio selectors match labels exactly: no "*" in keys or values, no empty keys."""
    for key, item in (value or {}).items():
        if keys and "*" in key:
            raise invalid(f'wildcard not allowed in label key match: "{key}"', [key])
        if keys and not key:
            raise invalid("label key must not be empty", [key])
        if "*" in item:
            raise invalid(f'wildcard not allowed in label value match: "{item}"', [key])
        if len(item) > max_value:
            raise invalid(f"label value must be at most {max_value} characters", [key])
    return value


class WorkloadSelector(Model):
    """``selector`` of the security/telemetry kinds (``matchLabels``)."""

    matchLabels: dict[str, str] | None = Field(default=None, max_length=4096)

    _labels = field_validator("matchLabels")(no_wildcards)


class WorkloadLabels(Model):
    """``workloadSelector`` of the networking kinds (``labels``)."""

    labels: dict[str, str] | None = Field(default=None, max_length=256)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key, item in (value or {}).items():
            if "*" in item:
                raise invalid(f'wildcard is not supported in selector: "{item}"', [key])
            if len(item) > 63:
                raise invalid("label value must be at most 63 characters", [key])
        return value


class PolicyTargetReference(Model):
    """A Gateway API object a policy attaches to (``targetRef``/``targetRefs``)."""

    kind: pattern_str(_KIND, "kind name (letters, digits and '-')", 63)  # type: ignore[valid-type]
    name: str = Field(min_length=1, max_length=253)
    group: pattern_str(_GROUP, "API group such as gateway.networking.k8s.io", 253) | None = None  # type: ignore[valid-type]
    namespace: str | None = None

    @field_validator("namespace")
    @classmethod
    def _same_namespace(cls, value: str | None) -> str | None:
        if value:
            raise invalid("cross namespace referencing is not currently supported")
        return value


def one_target(spec: Any) -> None:
    """CEL of several kinds: at most one of selector, targetRef, targetRefs."""
    present = [n for n in ("selector", "targetRef", "targetRefs") if getattr(spec, n, None) is not None]
    if len(present) > 1:
        raise invalid(
            f"only one of targetRefs or selector can be set, got {' and '.join(present)}", [present[1]]
        )


class IstioObject(Model):
    """The envelope of every Istio kind; ``status`` is written by istiod and kept as it comes."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    status: dict[str, Any] | None = None


_PORT_NAME = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$")


def check_port_map(value: dict[str, int] | None) -> dict[str, int] | None:
    """WorkloadEntry ``ports``: valid port names mapped to 1..65535."""
    for key, port in (value or {}).items():
        if len(key) >= 63 or not _PORT_NAME.match(key):
            raise invalid(f'port name must be valid: "{key}"', [key])
        if not 0 < port <= 65535:
            raise invalid(f"port must be between 1-65535, got {port}", [key])
    return value
