"""The per-proxy side of the discovery stream, without sockets.

Each connected proxy has one ``ProxyConnection``. It turns DiscoveryRequests into responses
(subscribe -> send; ACK -> record; NACK -> record the error and keep the proxy on its last good
version) and pushes new configuration only for the types whose content changed. Versions and
nonces per type give istioctl's sync states:

- NOT SENT: nothing of that type was ever sent on this connection;
- SYNCED: the last response sent was acknowledged;
- STALE: the last response sent was not (yet) acknowledged, or it was rejected (NACK).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from meshpilot.controlplane.translate import ProxyConfig
from meshpilot.xds.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    PUSH_ORDER,
    ROUTE_TYPE,
    SHORT_NAMES,
    DiscoveryRequest,
    DiscoveryResponse,
    Node,
)

XDS_TYPES = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)


def content_hash(resources: list[Any]) -> str:
    return hashlib.sha256(json.dumps(resources, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _in_push_order(types: list[str]) -> list[str]:
    return sorted(types, key=lambda t: PUSH_ORDER.index(t) if t in PUSH_ORDER else len(PUSH_ORDER))


def sync_status(sent_nonce: str, acked_nonce: str) -> str:
    """istioctl's per-type status from the nonces of the last sent and last acked responses."""
    if not sent_nonce:
        return "NOT SENT"
    if sent_nonce == acked_nonce:
        return "SYNCED"
    if not acked_nonce:
        return "STALE (Never Acknowledged)"
    return "STALE"


@dataclass
class TypeState:
    subscribed: bool = False
    sent_version: str = ""
    sent_nonce: str = ""
    sent_hash: str = ""
    sent_at: float = 0.0
    acked_version: str = ""
    acked_nonce: str = ""
    nacked_nonce: str = ""
    error: str = ""
    pushes: int = 0


@dataclass
class Event:
    """What a request meant, for metrics: ``ack`` (with convergence seconds) or ``nack``."""

    kind: str
    type_url: str
    seconds: float = 0.0


@dataclass
class ProxyConnection:
    conn_id: str
    node: Node
    connected_at: float
    types: dict[str, TypeState] = field(default_factory=dict)
    config: ProxyConfig | None = None
    hashes: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    @property
    def proxy_id(self) -> str:
        return self.node["id"]

    def __repr__(self) -> str:
        states = " ".join(f"{SHORT_NAMES[t]}={self.status(t)}" for t in XDS_TYPES)
        return f"<ProxyConnection {self.proxy_id} [{states}]>"

    def status(self, type_url: str) -> str:
        st = self.types.get(type_url)
        return sync_status(st.sent_nonce if st else "", st.acked_nonce if st else "")

    def set_config(self, config: ProxyConfig) -> list[str]:
        """Install a new config; the types whose content changed (in push order)."""
        self.config = config
        changed = []
        for type_url, resources in config.by_type().items():
            h = content_hash(resources)
            if self.hashes.get(type_url) != h:
                self.hashes[type_url] = h
                changed.append(type_url)
        return [t for t in PUSH_ORDER if t in changed]

    def _response(
        self, type_url: str, version: str, now: float, control_plane: dict[str, str]
    ) -> DiscoveryResponse:
        st = self.types.setdefault(type_url, TypeState())
        resources = self.config.by_type().get(type_url, []) if self.config is not None else []
        nonce = uuid.uuid4().hex
        st.sent_version = version
        st.sent_nonce = nonce
        st.sent_hash = self.hashes.get(type_url, content_hash(resources))
        st.sent_at = now
        st.pushes += 1
        return {
            "type_url": type_url,
            "version_info": version,
            "nonce": nonce,
            "resources": resources,
            "control_plane": control_plane,
        }

    def on_request(
        self,
        req: DiscoveryRequest,
        version: str,
        now: float,
        control_plane: dict[str, str],
        *,
        ready: bool = True,
    ) -> list[DiscoveryResponse]:
        """Handle one request; the responses to send back (subscriptions only).

        Before the registry is ready a subscription is only recorded; the first push answers it.
        """
        type_url = req.get("type_url")
        if not isinstance(type_url, str) or not type_url:
            raise ValueError("DiscoveryRequest without type_url")
        st = self.types.setdefault(type_url, TypeState())
        nonce = req.get("response_nonce") or ""
        if not st.sent_nonce:
            # a new subscription, or a proxy that reconnected carrying a previous stream's nonce
            st.subscribed = True
            if req.get("version_info"):
                st.acked_version = str(req.get("version_info"))
            if not ready:
                return []
            return [self._response(type_url, version, now, control_plane)]
        if nonce != st.sent_nonce:
            return []  # an answer to a response that was superseded: Envoy semantics say ignore
        if "error_detail" in req:
            detail = req["error_detail"]
            st.nacked_nonce = nonce
            st.error = str(detail.get("message", "")) if isinstance(detail, dict) else str(detail)
            self.events.append(Event("nack", type_url))
            return []
        st.acked_nonce = nonce
        st.acked_version = str(req.get("version_info") or st.sent_version)
        st.error = ""
        self.events.append(Event("ack", type_url, max(0.0, now - st.sent_at)))
        return []

    def push(
        self, types: list[str], version: str, now: float, control_plane: dict[str, str]
    ) -> list[DiscoveryResponse]:
        """Responses for the changed types this proxy subscribed to."""
        wanted = [t for t, st in self.types.items() if st.subscribed and (t in types or not st.sent_nonce)]
        return [self._response(t, version, now, control_plane) for t in _in_push_order(wanted)]

    def syncz(self) -> dict[str, Any]:
        per_type: dict[str, Any] = {}
        for type_url in XDS_TYPES:
            st = self.types.get(type_url, TypeState())
            per_type[SHORT_NAMES[type_url].lower()] = {
                "type_url": type_url,
                "status": self.status(type_url),
                "sent_version": st.sent_version,
                "sent_nonce": st.sent_nonce,
                "acked_version": st.acked_version,
                "acked_nonce": st.acked_nonce,
                "nacked_nonce": st.nacked_nonce,
                "error": st.error,
                "pushes": st.pushes,
            }
        return per_type
