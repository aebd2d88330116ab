"""Istio's networking.istio.io kinds: VirtualService, DestinationRule, ServiceEntry, Gateway,
Sidecar, WorkloadEntry, WorkloadGroup and EnvoyFilter.

The fields, enums, bounds and "only one of" rules are those of Istio 1.30's CRD schemas
(including their CEL rules); one model serves v1, v1beta1 and v1alpha3, which share one schema.
Beyond the schema we check what Istio's validating webhook checks and users trip over most: route
weights are 0..100 and a split needs a positive total.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from meshpilot.api.istio_common import (
    IstioObject,
    PolicyTargetReference,
    WorkloadLabels,
    check_port_map,
)
from meshpilot.api.types import (
    Duration,
    Duration1ms,
    Int32,
    Model,
    NonNegInt,
    Number,
    Percent,
    Port,
    UInt32,
    expected,
    int_range,
    invalid,
    only_one_of,
)

if TYPE_CHECKING:
    Weight = int
else:
    Weight = int_range(0, 100)

# ---------------------------------------------------------------------------------------------
# shared pieces


class PortSelector(Model):
    number: UInt32 | None = None


class Destination(Model):
    host: str
    subset: str | None = None
    port: PortSelector | None = None


class StringMatch(Model):
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one(self) -> StringMatch:
        only_one_of(self, "exact", "prefix", "regex")
        return self


class Percentage(Model):
    value: Number | None = None


class HeaderOperations(Model):
    set: dict[str, str] | None = None
    add: dict[str, str] | None = None
    remove: list[str] | None = None


class Headers(Model):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class ConnectionPoolTCPKeepalive(Model):
    probes: UInt32 | None = None
    time: Duration1ms | None = None
    interval: Duration1ms | None = None


class ConnectionPoolTCP(Model):
    maxConnections: Int32 | None = None
    connectTimeout: Duration1ms | None = None
    tcpKeepalive: ConnectionPoolTCPKeepalive | None = None
    maxConnectionDuration: Duration1ms | None = None
    idleTimeout: Duration | None = None


class ConnectionPoolHTTP(Model):
    http1MaxPendingRequests: Int32 | None = None
    http2MaxRequests: Int32 | None = None
    maxRequestsPerConnection: Int32 | None = None
    maxRetries: Int32 | None = None
    idleTimeout: Duration1ms | None = None
    h2UpgradePolicy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    useClientProtocol: bool | None = None
    maxConcurrentStreams: Int32 | None = None


class ConnectionPoolSettings(Model):
    tcp: ConnectionPoolTCP | None = None
    http: ConnectionPoolHTTP | None = None


# ---------------------------------------------------------------------------------------------
# VirtualService


class HTTPMatchRequest(Model):
    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] | None = None
    port: UInt32 | None = None
    sourceLabels: dict[str, str] | None = None
    gateways: list[str] | None = None
    queryParams: dict[str, StringMatch] | None = None
    ignoreUriCase: bool | None = None
    withoutHeaders: dict[str, StringMatch] | None = None
    sourceNamespace: str | None = None
    statPrefix: str | None = None


class HTTPRouteDestination(Model):
    destination: Destination
    weight: Weight | None = None
    headers: Headers | None = None


class RouteDestination(Model):
    destination: Destination
    weight: Weight | None = None


class Delegate(Model):
    name: str | None = None
    namespace: str | None = None


class HTTPBody(Model):
    string: str | None = None
    bytes: str | None = None

    @model_validator(mode="after")
    def _one(self) -> HTTPBody:
        only_one_of(self, "string", "bytes")
        return self

    @field_validator("bytes")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", value):
            raise expected("base64-encoded bytes")
        return value


class HTTPDirectResponse(Model):
    status: UInt32
    body: HTTPBody | None = None


class HTTPRedirect(Model):
    uri: str | None = None
    authority: str | None = None
    port: UInt32 | None = None
    derivePort: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str | None = None
    redirectCode: UInt32 | None = None

    @model_validator(mode="after")
    def _one(self) -> HTTPRedirect:
        only_one_of(self, "port", "derivePort")
        return self


class RegexRewrite(Model):
    match: str | None = None
    rewrite: str | None = None


class HTTPRewrite(Model):
    uri: str | None = None
    authority: str | None = None
    uriRegexRewrite: RegexRewrite | None = None


class HTTPRetry(Model):
    attempts: Int32 | None = None
    perTryTimeout: Duration1ms | None = None
    retryOn: str | None = None
    retryRemoteLocalities: bool | None = None
    retryIgnorePreviousHosts: bool | None = None
    backoff: Duration1ms | None = None


class CorsPolicy(Model):
    allowOrigin: list[str] | None = None
    allowOrigins: list[StringMatch] | None = None
    allowMethods: list[str] | None = None
    allowHeaders: list[str] | None = None
    exposeHeaders: list[str] | None = None
    maxAge: Duration1ms | None = None
    allowCredentials: bool | None = None
    unmatchedPreflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None = None


class FaultDelay(Model):
    fixedDelay: Duration1ms | None = None
    exponentialDelay: Duration1ms | None = None
    percentage: Percentage | None = None
    percent: Int32 | None = None

    @model_validator(mode="after")
    def _one(self) -> FaultDelay:
        only_one_of(self, "fixedDelay", "exponentialDelay")
        return self


class FaultAbort(Model):
    httpStatus: Int32 | None = None
    grpcStatus: str | None = None
    http2Error: str | None = None
    percentage: Percentage | None = None

    @model_validator(mode="after")
    def _one(self) -> FaultAbort:
        only_one_of(self, "httpStatus", "grpcStatus", "http2Error")
        return self


class HTTPFaultInjection(Model):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class HTTPMirrorPolicy(Model):
    destination: Destination
    percentage: Percentage | None = None


def check_weights(routes: list[HTTPRouteDestination] | list[RouteDestination] | None) -> None:
    """Istio's webhook: with more than one destination, the weights may not all be zero."""
    if routes and len(routes) > 1 and sum(r.weight or 0 for r in routes) == 0:
        raise invalid("total destination weight is 0: give at least one destination a weight", ["route"])


class HTTPRoute(Model):
    name: str | None = None
    match: list[HTTPMatchRequest] | None = None
    route: list[HTTPRouteDestination] | None = None
    redirect: HTTPRedirect | None = None
    directResponse: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration1ms | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] | None = None
    mirrorPercent: UInt32 | None = None
    mirror_percent: UInt32 | None = None
    mirrorPercentage: Percentage | None = None
    corsPolicy: CorsPolicy | None = None
    headers: Headers | None = None

    @model_validator(mode="after")
    def _check(self) -> HTTPRoute:
        check_weights(self.route)
        return self


class L4MatchAttributes(Model):
    destinationSubnets: list[str] | None = None
    port: UInt32 | None = None
    sourceLabels: dict[str, str] | None = None
    gateways: list[str] | None = None
    sourceNamespace: str | None = None
    sourceSubnet: str | None = None


class TCPRoute(Model):
    match: list[L4MatchAttributes] | None = None
    route: list[RouteDestination] | None = None

    @model_validator(mode="after")
    def _check(self) -> TCPRoute:
        check_weights(self.route)
        return self


class TLSMatchAttributes(Model):
    sniHosts: list[str]
    destinationSubnets: list[str] | None = None
    port: UInt32 | None = None
    sourceLabels: dict[str, str] | None = None
    gateways: list[str] | None = None
    sourceNamespace: str | None = None


class TLSRoute(Model):
    match: list[TLSMatchAttributes]
    route: list[RouteDestination] | None = None


class VirtualServiceSpec(Model):
    hosts: list[str] | None = None
    gateways: list[str] | None = None
    http: list[HTTPRoute] | None = None
    tls: list[TLSRoute] | None = None
    tcp: list[TCPRoute] | None = None
    exportTo: list[str] | None = None


class VirtualService(IstioObject):
    spec: VirtualServiceSpec | None = None


# ---------------------------------------------------------------------------------------------
# DestinationRule


class HTTPCookieAttribute(Model):
    name: str
    value: str | None = None


class HTTPCookie(Model):
    name: str
    path: str | None = None
    ttl: Duration | None = None
    attributes: list[HTTPCookieAttribute] | None = None


class RingHash(Model):
    minimumRingSize: NonNegInt | None = None


class MagLev(Model):
    tableSize: NonNegInt | None = None


class ConsistentHashLB(Model):
    httpHeaderName: str | None = None
    httpCookie: HTTPCookie | None = None
    useSourceIp: bool | None = None
    httpQueryParameterName: str | None = None
    ringHash: RingHash | None = None
    maglev: MagLev | None = None
    minimumRingSize: NonNegInt | None = None

    @model_validator(mode="after")
    def _one(self) -> ConsistentHashLB:
        only_one_of(self, "httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName")
        only_one_of(self, "ringHash", "maglev")
        return self


class LocalityDistribute(Model):
    from_: str | None = Field(default=None, alias="from")
    to: dict[str, UInt32] | None = None


class LocalityFailover(Model):
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None


class LocalityLoadBalancerSetting(Model):
    distribute: list[LocalityDistribute] | None = None
    failover: list[LocalityFailover] | None = None
    failoverPriority: list[str] | None = None
    enabled: bool | None = None


class WarmupConfiguration(Model):
    duration: Duration1ms
    minimumPercent: Percent | None = None
    aggression: Number | None = None

    @field_validator("aggression")
    @classmethod
    def _aggression(cls, value: float | None) -> float | None:
        if value is not None and value < 0:
            raise expected("number >= 0")
        return value


class LoadBalancerSettings(Model):
    simple: (
        Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"] | None
    ) = None
    consistentHash: ConsistentHashLB | None = None
    localityLbSetting: LocalityLoadBalancerSetting | None = None
    warmupDurationSecs: Duration1ms | None = None
    warmup: WarmupConfiguration | None = None

    @model_validator(mode="after")
    def _one(self) -> LoadBalancerSettings:
        only_one_of(self, "simple", "consistentHash")
        return self


class OutlierDetection(Model):
    splitExternalLocalOriginErrors: bool | None = None
    consecutiveLocalOriginFailures: UInt32 | None = None
    consecutiveGatewayErrors: UInt32 | None = None
    consecutive5xxErrors: UInt32 | None = None
    interval: Duration1ms | None = None
    baseEjectionTime: Duration1ms | None = None
    maxEjectionPercent: Int32 | None = None
    minHealthPercent: Int32 | None = None
    consecutiveErrors: Int32 | None = None


class ClientTLSSettings(Model):
    mode: Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"] | None = None
    clientCertificate: str | None = None
    privateKey: str | None = None
    caCertificates: str | None = None
    credentialName: str | None = None
    subjectAltNames: list[str] | None = None
    sni: str | None = None
    insecureSkipVerify: bool | None = None
    caCrl: str | None = None


class ProxyProtocol(Model):
    version: Literal["V1", "V2"] | None = None


class TunnelSettings(Model):
    targetHost: str
    targetPort: UInt32
    protocol: str | None = None


class RetryBudget(Model):
    percent: Percent | None = None
    minRetryConcurrency: UInt32 | None = None


class PortTrafficPolicy(Model):
    port: PortSelector | None = None
    loadBalancer: LoadBalancerSettings | None = None
    connectionPool: ConnectionPoolSettings | None = None
    outlierDetection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


class TrafficPolicy(Model):
    loadBalancer: LoadBalancerSettings | None = None
    connectionPool: ConnectionPoolSettings | None = None
    outlierDetection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    portLevelSettings: list[PortTrafficPolicy] | None = Field(default=None, max_length=4096)
    tunnel: TunnelSettings | None = None
    proxyProtocol: ProxyProtocol | None = None
    retryBudget: RetryBudget | None = None


class Subset(Model):
    name: str
    labels: dict[str, str] | None = None
    trafficPolicy: TrafficPolicy | None = None


class DestinationRuleSpec(Model):
    host: str
    trafficPolicy: TrafficPolicy | None = None
    subsets: list[Subset] | None = None
    exportTo: list[str] | None = None
    workloadSelector: SelectorMatchLabels | None = None


class SelectorMatchLabels(Model):
    matchLabels: dict[str, str] | None = Field(default=None, max_length=4096)

    @field_validator("matchLabels")
    @classmethod
    def _labels(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        from meshpilot.api.istio_common import no_wildcards

        return no_wildcards(value)


DestinationRuleSpec.model_rebuild()


class DestinationRule(IstioObject):
    spec: DestinationRuleSpec | None = None


# ---------------------------------------------------------------------------------------------
# ServiceEntry, WorkloadEntry, WorkloadGroup


def _uds_check(address: str | None) -> None:
    if address is not None and address.startswith("unix://"):
        if address[7:8] not in ("/", "@"):
            raise invalid("UDS must be an absolute path or abstract socket", ["address"])
        if address.endswith("/"):
            raise invalid("UDS may not be a dir", ["address"])


class WorkloadEntrySpec(Model):
    address: str | None = Field(default=None, max_length=256)
    ports: dict[str, UInt32] | None = Field(default=None, max_length=128)
    labels: dict[str, str] | None = Field(default=None, max_length=256)
    network: str | None = Field(default=None, max_length=2048)
    locality: str | None = Field(default=None, max_length=2048)
    weight: UInt32 | None = None
    serviceAccount: str | None = Field(default=None, max_length=253)

    _ports = field_validator("ports")(check_port_map)

    @model_validator(mode="after")
    def _check(self) -> WorkloadEntrySpec:
        _uds_check(self.address)
        if (self.address or "").startswith("unix://") and self.ports is not None:
            raise invalid("UDS may not include ports", ["ports"])
        return self


class WorkloadEntryRequired(WorkloadEntrySpec):
    """A WorkloadEntry (or ServiceEntry endpoint) needs an address or a network."""

    @model_validator(mode="after")
    def _address(self) -> WorkloadEntryRequired:
        if self.address is None and self.network is None:
            raise invalid("Address is required: set address (or network)", ["address"])
        return self


class ServicePortIstio(Model):
    number: Port
    name: str = Field(max_length=256)
    protocol: str | None = Field(default=None, max_length=256)
    targetPort: Port | None = None


class ServiceEntrySpec(Model):
    hosts: list[str] = Field(min_length=1, max_length=256)
    addresses: list[str] | None = Field(default=None, max_length=256)
    ports: list[ServicePortIstio] | None = Field(default=None, max_length=256)
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] | None = None
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"] | None = None
    endpoints: list[WorkloadEntryRequired] | None = Field(default=None, max_length=4096)
    workloadSelector: WorkloadLabels | None = None
    exportTo: list[str] | None = None
    subjectAltNames: list[str] | None = None

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for i, host in enumerate(value):
            if host == "*":
                raise invalid('hostname cannot be wildcard "*"', [i])
        return value

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: list[str] | None) -> list[str] | None:
        for i, address in enumerate(value or []):
            if len(address) > 64:
                raise invalid("address must be at most 64 characters", [i])
        return value

    @model_validator(mode="after")
    def _check(self) -> ServiceEntrySpec:
        if self.workloadSelector is not None and self.endpoints is not None:
            raise invalid("only one of workloadSelector or endpoints can be set", ["endpoints"])
        resolution = self.resolution or "NONE"
        if any("/" in a for a in self.addresses or []) and resolution not in ("STATIC", "NONE"):
            raise invalid("CIDR addresses are allowed only for NONE/STATIC resolution types", ["addresses"])
        if resolution == "NONE" and self.endpoints is not None:
            raise invalid("resolution NONE cannot set endpoints", ["endpoints"])
        if self.resolution == "DNS_ROUND_ROBIN" and len(self.endpoints or []) > 1:
            raise invalid("DNS_ROUND_ROBIN mode cannot have multiple endpoints", ["endpoints"])
        seen: set[int] = set()
        for i, port in enumerate(self.ports or []):
            if port.number in seen:
                raise invalid(f"port number {port.number} cannot be duplicated", ["ports", i, "number"])
            seen.add(port.number)
        return self


class ServiceEntry(IstioObject):
    spec: ServiceEntrySpec


class WorkloadEntry(IstioObject):
    spec: WorkloadEntryRequired


class ObjectMetaIstio(Model):
    labels: dict[str, str] | None = Field(default=None, max_length=256)
    annotations: dict[str, str] | None = Field(default=None, max_length=256)


class HTTPHeaderIstio(Model):
    name: str | None = None
    value: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[-_A-Za-z0-9]+", value):
            raise expected("header name (letters, digits, '-' and '_')")
        return value


class HTTPHealthCheckConfig(Model):
    port: Port
    path: str | None = None
    host: str | None = None
    scheme: str | None = None
    httpHeaders: list[HTTPHeaderIstio] | None = None

    @field_validator("scheme")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value not in (None, "", "HTTP", "HTTPS"):
            raise expected("one of HTTP, HTTPS")
        return value


class TCPHealthCheckConfig(Model):
    port: Port
    host: str | None = None


class ExecHealthCheckConfig(Model):
    command: list[str]

    @field_validator("command")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        for i, item in enumerate(value):
            if not item:
                raise invalid("must not be empty", [i])
        return value


class GrpcHealthCheckConfig(Model):
    port: Port | None = None
    service: str | None = None


if TYPE_CHECKING:
    NonNegInt32 = int
else:
    NonNegInt32 = int_range(0, 2**31 - 1)


class ReadinessProbe(Model):
    initialDelaySeconds: NonNegInt32 | None = None
    timeoutSeconds: NonNegInt32 | None = None
    periodSeconds: NonNegInt32 | None = None
    successThreshold: NonNegInt32 | None = None
    failureThreshold: NonNegInt32 | None = None
    httpGet: HTTPHealthCheckConfig | None = None
    tcpSocket: TCPHealthCheckConfig | None = None
    exec: ExecHealthCheckConfig | None = None
    grpc: GrpcHealthCheckConfig | None = None

    @model_validator(mode="after")
    def _one(self) -> ReadinessProbe:
        only_one_of(self, "httpGet", "tcpSocket", "exec", "grpc")
        return self


class WorkloadTemplate(WorkloadEntrySpec):
    pass


class WorkloadGroupSpec(Model):
    template: WorkloadTemplate
    metadata: ObjectMetaIstio | None = None
    probe: ReadinessProbe | None = None


class WorkloadGroup(IstioObject):
    spec: WorkloadGroupSpec


# ---------------------------------------------------------------------------------------------
# Gateway and Sidecar


class ServerTLSCertificate(Model):
    serverCertificate: str | None = None
    privateKey: str | None = None
    caCertificates: str | None = None


TLSVersion = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]


class ServerTLSSettings(Model):
    httpsRedirect: bool | None = None
    mode: (
        Literal["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"]
        | None
    ) = None
    serverCertificate: str | None = None
    privateKey: str | None = None
    caCertificates: str | None = None
    caCrl: str | None = None
    credentialName: str | None = None
    credentialNames: list[str] | None = Field(default=None, min_length=1, max_length=2)
    tlsCertificates: list[ServerTLSCertificate] | None = Field(default=None, min_length=1, max_length=2)
    caCertCredentialName: str | None = None
    subjectAltNames: list[str] | None = None
    verifyCertificateSpki: list[str] | None = None
    verifyCertificateHash: list[str] | None = None
    minProtocolVersion: TLSVersion | None = None
    maxProtocolVersion: TLSVersion | None = None
    cipherSuites: list[str] | None = None

    @model_validator(mode="after")
    def _one(self) -> ServerTLSSettings:
        only_one_of(self, "credentialNames", "tlsCertificates")
        only_one_of(self, "credentialName", "credentialNames")
        return self


class GatewayPort(Model):
    number: UInt32
    protocol: str
    name: str
    targetPort: UInt32 | None = None


class Server(Model):
    port: GatewayPort
    hosts: list[str]
    bind: str | None = None
    tls: ServerTLSSettings | None = None
    defaultEndpoint: str | None = None
    name: str | None = None


class GatewaySpec(Model):
    servers: list[Server] | None = None
    selector: dict[str, str] | None = None


class Gateway(IstioObject):
    spec: GatewaySpec | None = None


class SidecarPort(Model):
    number: UInt32 | None = None
    protocol: str | None = None
    name: str | None = None
    targetPort: UInt32 | None = None


CaptureMode = Literal["DEFAULT", "IPTABLES", "NONE"]


class IstioIngressListener(Model):
    port: SidecarPort
    bind: str | None = None
    captureMode: CaptureMode | None = None
    defaultEndpoint: str | None = None
    tls: ServerTLSSettings | None = None
    connectionPool: ConnectionPoolSettings | None = None


class IstioEgressListener(Model):
    hosts: list[str]
    port: SidecarPort | None = None
    bind: str | None = None
    captureMode: CaptureMode | None = None


class EgressProxy(Model):
    host: str
    subset: str | None = None
    port: PortSelector | None = None


class OutboundTrafficPolicy(Model):
    mode: Literal["REGISTRY_ONLY", "ALLOW_ANY"] | None = None
    egressProxy: EgressProxy | None = None


class SidecarSpec(Model):
    workloadSelector: WorkloadLabels | None = None
    ingress: list[IstioIngressListener] | None = None
    egress: list[IstioEgressListener] | None = None
    inboundConnectionPool: ConnectionPoolSettings | None = None
    outboundTrafficPolicy: OutboundTrafficPolicy | None = None


class Sidecar(IstioObject):
    spec: SidecarSpec | None = None


# ---------------------------------------------------------------------------------------------
# EnvoyFilter


class SubFilterMatch(Model):
    name: str | None = None


class FilterMatch(Model):
    name: str | None = None
    subFilter: SubFilterMatch | None = None


class FilterChainMatch(Model):
    name: str | None = None
    sni: str | None = None
    transportProtocol: str | None = None
    applicationProtocols: str | None = None
    filter: FilterMatch | None = None
    destinationPort: UInt32 | None = None


class ListenerMatch(Model):
    portNumber: UInt32 | None = None
    portName: str | None = None
    filterChain: FilterChainMatch | None = None
    listenerFilter: str | None = None
    name: str | None = None


class RouteMatch(Model):
    name: str | None = None
    action: Literal["ANY", "ROUTE", "REDIRECT", "DIRECT_RESPONSE"] | None = None


class VirtualHostMatch(Model):
    name: str | None = None
    domainName: str | None = None
    route: RouteMatch | None = None


class RouteConfigurationMatch(Model):
    portNumber: UInt32 | None = None
    portName: str | None = None
    gateway: str | None = None
    vhost: VirtualHostMatch | None = None
    name: str | None = None


class ClusterMatch(Model):
    portNumber: UInt32 | None = None
    service: str | None = None
    subset: str | None = None
    name: str | None = None


class WaypointRouteMatch(Model):
    name: str | None = None


class WaypointMatch(Model):
    filter: FilterMatch | None = None
    route: WaypointRouteMatch | None = None
    portNumber: Port | None = None


class ProxyMatch(Model):
    proxyVersion: str | None = None
    metadata: dict[str, str] | None = None


class EnvoyConfigObjectMatch(Model):
    context: Literal["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY", "WAYPOINT"] | None = None
    proxy: ProxyMatch | None = None
    listener: ListenerMatch | None = None
    routeConfiguration: RouteConfigurationMatch | None = None
    cluster: ClusterMatch | None = None
    waypoint: WaypointMatch | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvoyConfigObjectMatch:
        only_one_of(self, "listener", "routeConfiguration", "cluster", "waypoint")
        if self.context == "WAYPOINT" and self.waypoint is None:
            raise invalid("context WAYPOINT requires a waypoint match", ["waypoint"])
        if self.context != "WAYPOINT" and self.waypoint is not None:
            raise invalid("only support waypointMatch when context is WAYPOINT", ["waypoint"])
        return self


class Patch(Model):
    operation: (
        Literal[
            "INVALID", "MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"
        ]
        | None
    ) = None
    value: dict[str, Any] | None = None
    filterClass: Literal["UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"] | None = None


class EnvoyConfigObjectPatch(Model):
    applyTo: (
        Literal[
            "INVALID",
            "LISTENER",
            "FILTER_CHAIN",
            "NETWORK_FILTER",
            "HTTP_FILTER",
            "ROUTE_CONFIGURATION",
            "VIRTUAL_HOST",
            "HTTP_ROUTE",
            "CLUSTER",
            "EXTENSION_CONFIG",
            "BOOTSTRAP",
            "LISTENER_FILTER",
        ]
        | None
    ) = None
    match: EnvoyConfigObjectMatch | None = None
    patch: Patch | None = None


class EnvoyFilterSpec(Model):
    workloadSelector: WorkloadLabels | None = None
    targetRefs: list[PolicyTargetReference] | None = Field(default=None, max_length=16)
    configPatches: list[EnvoyConfigObjectPatch] | None = None
    priority: Int32 | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvoyFilterSpec:
        if self.workloadSelector is not None and self.targetRefs is not None:
            raise invalid("only one of targetRefs or workloadSelector can be set", ["targetRefs"])
        return self


class EnvoyFilter(IstioObject):
    spec: EnvoyFilterSpec | None = None
