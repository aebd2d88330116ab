"""The mesh-wide settings istiod reads from the ``istio`` ConfigMap (key ``mesh``) in istio-system.

Only the fields the translator acts on are kept; the rest of the document is preserved in
``raw`` so that debug endpoints can show what was read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from meshpilot.controlplane._util import ConfigError, parse_duration

OutboundMode = Literal["ALLOW_ANY", "REGISTRY_ONLY"]

ROOT_NAMESPACE = "istio-system"


@dataclass(frozen=True)
class MeshConfig:
    access_log_file: str = ""
    access_log_format: str = ""
    access_log_encoding: Literal["TEXT", "JSON"] = "TEXT"
    outbound_mode: OutboundMode = "ALLOW_ANY"
    connect_timeout: float = 10.0
    root_namespace: str = ROOT_NAMESPACE
    trust_domain: str = "cluster.local"
    default_config: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


def parse_mesh(text: str | None) -> MeshConfig:
    """Parse the ``mesh`` YAML document; an empty or missing document gives Istio's defaults."""
    if not text or not text.strip():
        return MeshConfig()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"mesh config is not valid YAML: {exc}") from exc
    if doc is None:
        return MeshConfig()
    if not isinstance(doc, Mapping):
        raise ConfigError("mesh config must be a mapping")
    encoding = str(doc.get("accessLogEncoding") or "TEXT").upper()
    if encoding not in ("TEXT", "JSON"):
        raise ConfigError(f"accessLogEncoding must be TEXT or JSON, got {encoding!r}")
    policy = doc.get("outboundTrafficPolicy") or {}
    mode = str(policy.get("mode") or "ALLOW_ANY").upper() if isinstance(policy, Mapping) else "ALLOW_ANY"
    if mode not in ("ALLOW_ANY", "REGISTRY_ONLY"):
        raise ConfigError(f"outboundTrafficPolicy.mode must be ALLOW_ANY or REGISTRY_ONLY, got {mode!r}")
    default_config = doc.get("defaultConfig") or {}
    return MeshConfig(
        access_log_file=str(doc.get("accessLogFile") or ""),
        access_log_format=str(doc.get("accessLogFormat") or ""),
        access_log_encoding="JSON" if encoding == "JSON" else "TEXT",
        outbound_mode="REGISTRY_ONLY" if mode == "REGISTRY_ONLY" else "ALLOW_ANY",
        connect_timeout=parse_duration(doc["connectTimeout"]) if doc.get("connectTimeout") else 10.0,
        root_namespace=str(doc.get("rootNamespace") or ROOT_NAMESPACE),
        trust_domain=str(doc.get("trustDomain") or "cluster.local"),
        default_config=default_config if isinstance(default_config, Mapping) else {},
        raw=doc,
    )
