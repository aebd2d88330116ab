"""The configuration the control plane pushes to a proxy, and the stream that carries it.

This is the contract between ``meshpilot.controlplane`` (which writes it) and ``meshpilot.proxy``
(which reads it); neither imports the other, both import this. It is shaped after Envoy's v3 xDS
resources (Listener, RouteConfiguration, Cluster, ClusterLoadAssignment) with Envoy's field names
and Istio's naming conventions, as JSON rather than protobuf. Fields that later issues need
(retries, timeouts, fault injection, mirroring, connection pools, outlier detection, TLS,
authorization) have their place here already so they fit without a rewrite.

Naming conventions carried over from Istio:
- outbound cluster: ``outbound|<port>|<subset>|<fqdn>`` (subset empty when none)
- inbound cluster: ``inbound|<port>||``
- route configuration per outbound port: ``"<port>"``; virtual host ``"<fqdn>:<port>"``
- listeners: ``virtualOutbound`` (15001), ``virtualInbound`` (15006), ``<podIP>_<port>`` inbound
- special clusters: ``PassthroughCluster``, ``BlackHoleCluster``, ``InboundPassthroughClusterIpv4``
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

# Envoy's type URLs, so that a reader who knows xDS knows what each stream carries.
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

# Short names, as istioctl prints them (CDS, EDS, LDS, RDS, SDS), in Envoy's push order.
SHORT_NAMES: dict[str, str] = {
    CLUSTER_TYPE: "CDS",
    ENDPOINT_TYPE: "EDS",
    LISTENER_TYPE: "LDS",
    ROUTE_TYPE: "RDS",
    SECRET_TYPE: "SDS",
}
PUSH_ORDER = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE)


# --- matching ---------------------------------------------------------------------------------


class StringMatch(TypedDict, total=False):
    """Exactly one of exact / prefix / suffix / contains / safe_regex (RE2 syntax, full match)."""

    exact: str
    prefix: str
    suffix: str
    contains: str
    safe_regex: str
    ignore_case: bool


class HeaderMatcher(TypedDict):
    """Pseudo-headers ``:method``, ``:authority``, ``:path``, ``:scheme`` match like headers."""

    name: str
    string_match: NotRequired[StringMatch]
    present_match: NotRequired[bool]  # True: header present; False: header absent
    invert_match: NotRequired[bool]


class QueryParameterMatcher(TypedDict):
    name: str
    string_match: NotRequired[StringMatch]
    present_match: NotRequired[bool]


class RouteMatch(TypedDict, total=False):
    """One of prefix / path / safe_regex on the path (without the query string)."""

    prefix: str
    path: str
    safe_regex: str
    case_sensitive: bool  # default True
    headers: list[HeaderMatcher]
    query_parameters: list[QueryParameterMatcher]


# --- routing ----------------------------------------------------------------------------------


class HeaderValueOption(TypedDict):
    header: dict[str, str]  # {"key": ..., "value": ...}
    append_action: NotRequired[Literal["APPEND_IF_EXISTS_OR_ADD", "OVERWRITE_IF_EXISTS_OR_ADD"]]


class HeaderEdits(TypedDict, total=False):
    request_headers_to_add: list[HeaderValueOption]
    request_headers_to_remove: list[str]
    response_headers_to_add: list[HeaderValueOption]
    response_headers_to_remove: list[str]


class WeightedCluster(HeaderEdits):
    name: str
    weight: int


class HashPolicy(TypedDict, total=False):
    header: dict[str, str]  # {"header_name": ...}
    cookie: dict[str, Any]  # {"name": ..., "ttl": seconds, "path": ...}
    connection_properties: dict[str, bool]  # {"source_ip": True}
    query_parameter: dict[str, str]  # {"name": ...}


class RetryPolicy(TypedDict, total=False):
    retry_on: str  # Envoy's comma-separated conditions: "5xx,connect-failure,..."
    num_retries: int
    per_try_timeout: float  # seconds
    retriable_status_codes: list[int]


class FaultInjection(TypedDict, total=False):
    delay: dict[str, float]  # {"fixed_delay": seconds, "percentage": 0..100}
    abort: dict[str, float]  # {"http_status": code, "percentage": 0..100}


class RequestMirrorPolicy(TypedDict):
    cluster: str
    percentage: NotRequired[float]  # 0..100, default 100


class RouteAction(TypedDict, total=False):
    """Exactly one of cluster / weighted_clusters."""

    cluster: str
    weighted_clusters: list[WeightedCluster]
    prefix_rewrite: str
    regex_rewrite: dict[str, str]  # {"pattern": ..., "substitution": ...}
    host_rewrite_literal: str
    timeout: float  # seconds; 0 = none
    retry_policy: RetryPolicy
    hash_policy: list[HashPolicy]
    request_mirror_policies: list[RequestMirrorPolicy]


class RedirectAction(TypedDict, total=False):
    path_redirect: str
    prefix_rewrite: str
    host_redirect: str
    port_redirect: int
    scheme_redirect: str
    response_code: int  # 301 default, 302, 303, 307, 308


class DirectResponseAction(TypedDict):
    status: int
    body: NotRequired[str]


class Route(HeaderEdits, total=False):
    name: str
    match: RouteMatch
    route: RouteAction
    redirect: RedirectAction
    direct_response: DirectResponseAction
    fault: FaultInjection
    # {"istio": {"config": "/apis/networking.istio.io/v1/namespaces/<ns>/virtual-service/<name>"}}
    metadata: dict[str, Any]


class VirtualHost(HeaderEdits):
    name: str
    domains: list[str]  # exact names, "*.suffix", "prefix.*", "*", with and without ":port"
    routes: list[Route]


class RouteConfiguration(TypedDict):
    name: str
    virtual_hosts: list[VirtualHost]


# --- listeners --------------------------------------------------------------------------------


class AccessLog(TypedDict):
    path: str  # "/dev/stdout" or a file
    encoding: Literal["TEXT", "JSON"]
    format: NotRequired[str]  # Envoy command operators; Istio's default TEXT format when absent


class Listener(TypedDict):
    name: str
    address: str
    port: int
    # OUTBOUND: routes by host through ``route_config_name`` (or per-port route tables when
    # ``route_config_name`` is absent, as virtualOutbound does); INBOUND: to ``cluster``.
    traffic_direction: Literal["OUTBOUND", "INBOUND", "GATEWAY"]
    route_config_name: NotRequired[str]
    cluster: NotRequired[str]
    access_log: NotRequired[list[AccessLog]]
    # {"tls": {...}} when the listener terminates mTLS (security issue)
    transport_socket: NotRequired[dict[str, Any]]
    # authorization, peer authentication, telemetry knobs: filled by later issues
    filters: NotRequired[list[dict[str, Any]]]


# --- clusters and endpoints -------------------------------------------------------------------


class CircuitBreakers(TypedDict, total=False):
    max_connections: int
    max_pending_requests: int
    max_requests: int
    max_retries: int
    max_requests_per_connection: int


class OutlierDetection(TypedDict, total=False):
    consecutive_5xx: int
    consecutive_gateway_failure: int
    interval: float  # seconds
    base_ejection_time: float  # seconds
    max_ejection_percent: int


class Cluster(TypedDict):
    name: str
    type: Literal["EDS", "STATIC", "STRICT_DNS", "ORIGINAL_DST"]
    lb_policy: Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV", "CLUSTER_PROVIDED"]
    connect_timeout: NotRequired[float]  # seconds
    circuit_breakers: NotRequired[CircuitBreakers]
    outlier_detection: NotRequired[OutlierDetection]
    idle_timeout: NotRequired[float]
    transport_socket: NotRequired[dict[str, Any]]
    # {"istio": {"services": [{"host": fqdn, "name": svc, "namespace": ns}], "subset": "v1"}}
    metadata: NotRequired[dict[str, Any]]
    # STATIC and STRICT_DNS clusters carry their endpoints inline, as in Envoy (EDS clusters get
    # theirs from ClusterLoadAssignment resources of the same name; for STRICT_DNS, ``address``
    # is a host name resolved by the proxy).
    load_assignment: NotRequired[ClusterLoadAssignment]


class LbEndpoint(TypedDict):
    address: str
    port: int
    health_status: NotRequired[Literal["HEALTHY", "UNHEALTHY", "DRAINING"]]
    load_balancing_weight: NotRequired[int]
    # Istio's workload metadata, used for telemetry on the source side:
    # {"workload": ..., "namespace": ..., "app": ..., "version": ..., "service_account": ...,
    #  "cluster": ..., "labels": {...}}
    metadata: NotRequired[dict[str, Any]]


class LocalityLbEndpoints(TypedDict):
    locality: NotRequired[dict[str, str]]  # {"region", "zone", "sub_zone"}
    priority: NotRequired[int]
    lb_endpoints: list[LbEndpoint]


class ClusterLoadAssignment(TypedDict):
    cluster_name: str
    endpoints: list[LocalityLbEndpoints]


# --- the stream -------------------------------------------------------------------------------


class Node(TypedDict):
    """``id`` is Istio's ``sidecar~<podIP>~<pod>.<namespace>~<namespace>.svc.cluster.local``."""

    id: str
    cluster: NotRequired[str]  # cluster id, e.g. "Kubernetes"
    # ISTIO_VERSION, LABELS, NAMESPACE, POD_NAME, INSTANCE_IPS, SERVICE_ACCOUNT, WORKLOAD_NAME,
    # APP_CONTAINERS, INTERCEPTION_MODE ..., as Istio's proxy metadata
    metadata: NotRequired[dict[str, Any]]


class ErrorDetail(TypedDict):
    code: int  # gRPC status code; 3 = INVALID_ARGUMENT for a rejected config
    message: str


class DiscoveryRequest(TypedDict):
    """Proxy -> control plane. The first request of a type subscribes; later ones ACK or NACK.

    ACK: ``version_info`` and ``response_nonce`` of the response being accepted.
    NACK: ``response_nonce`` of the rejected response, ``version_info`` of the last one accepted,
    and ``error_detail``.
    """

    type_url: str
    node: NotRequired[Node]  # required on the first request of a stream
    version_info: NotRequired[str]
    response_nonce: NotRequired[str]
    resource_names: NotRequired[list[str]]
    error_detail: NotRequired[ErrorDetail]


class DiscoveryResponse(TypedDict):
    """Control plane -> proxy: the complete set of resources of one type (state of the world)."""

    type_url: str
    version_info: str
    nonce: str
    resources: list[Any]
    control_plane: NotRequired[dict[str, str]]  # {"identifier": "istiod-<pod>", "version": ...}
